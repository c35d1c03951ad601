"""Every config value is checked when the config loads: one short line naming the key, or the file and line.

Issue 9, item 8 (and the corpus-name and device items of item 11): a value of
the wrong type or out of range never passes ``prepare`` to fail later with a
traceback, and a config file that is not a YAML mapping is one line.
"""

from __future__ import annotations

import glob
import os

import pytest

from serlib import config as config_module
from serlib.cli import main
from serlib.config import SMOKE_OVERRIDES, ConfigError, check_device_available, config_from_dict, load_config


@pytest.mark.parametrize("override, message", [
    ("train.epochs=abc", "train.epochs: expected an integer, got 'abc'"),
    ("train.epochs=-1", "train.epochs=-1: must be >= 1"),
    ("train.epochs=2.5", "train.epochs: expected an integer, got 2.5"),
    ("train.epochs=true", "train.epochs: expected an integer, got True"),
    ("train.batch_size=0", "train.batch_size=0: must be >= 1"),
    ("preprocess.vad=maybe", "preprocess.vad: expected true or false, got 'maybe'"),
    ("features.kind=bogus", "features.kind='bogus': must be one of mfcc, logmel"),
    ("features.lld=is09", "features.lld='is09': must be one of none, egemaps, compare"),
    ("data.protocol=random", "data.protocol='random': must be one of speaker-split, speaker-cv, emobox"),
    ("data.corpus=nowhere", "data.corpus: unknown corpus 'nowhere'"),
    ("data.classes=[happy, joy]", "unknown label(s) ['joy']"),
    ("data.val_fraction=1.5", "data.val_fraction=1.5: must be in [0, 1)"),
    ("train.lr=-0.1", "train.lr=-0.1: must be in (0, 10]"),
    ("train.device=gpu", "train.device='gpu': must be auto, cpu, cuda, cuda:N or mps"),
    ("model.conv_channels=[]", "model.conv_channels=[]: must be a non-empty list of positive integers"),
    ("model.attention_heads=3", "model.attention_dim=64 must be a multiple of model.attention_heads=3"),
    ("features.n_mfcc=80", "features.n_mfcc=80 must be <= features.n_mels=64"),
    ("wave_augment.time_stretch=[1.2, 0.9]", "must be (low, high) with low <= high"),
    ("wave_augment.pitch_shift=3", "wave_augment.pitch_shift: expected a pair of numbers, got 3"),
    ("train=5", "train: expected a mapping, got 5"),
])
def test_a_value_of_the_wrong_type_or_range_is_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_huge_wrong_value_gives_a_short_message():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["preprocess.max_seconds=" + "abc" * 16000])
    assert str(err.value).startswith("preprocess.max_seconds: expected a number")
    assert len(str(err.value)) < 200


@pytest.mark.parametrize("override, key, value", [
    ("train.lr=1e-3", ("train", "lr"), 0.001),  # YAML 1.1 reads 1e-3 as a string
    ("preprocess.max_seconds=4", ("preprocess", "max_seconds"), 4.0),  # an integer where a number is wanted
    ("data.classes=null", ("data", "classes"), None),
    ("wave_augment.pitch_shift=[-1, 1]", ("wave_augment", "pitch_shift"), (-1.0, 1.0)),
])
def test_values_of_the_right_kind_are_accepted_and_normalised(override, key, value):
    config = load_config(overrides=[override])
    assert getattr(getattr(config, key[0]), key[1]) == value


@pytest.mark.parametrize("name", ["EMO_DB", "EmoDB", "emo-db", " emodb "])
def test_the_corpus_name_is_canonicalised_when_the_config_loads(name):
    assert load_config(overrides=[f"data.corpus={name}"]).data.corpus == "emodb"


def test_every_shipped_config_and_ablation_overlay_is_valid():
    for base in sorted(glob.glob("configs/*.yaml")):
        for overlay in [None, *sorted(glob.glob("configs/ablations/*.yaml"))]:
            load_config(base, *([overlay] if overlay else []), overrides=list(SMOKE_OVERRIDES))


def test_a_saved_config_reads_back_through_the_validator():
    config = load_config("configs/ravdess.yaml")
    assert config_from_dict(config.to_dict()) == config


def test_every_range_rule_names_an_existing_key():
    config = load_config().to_dict()
    for key in config_module.RULES:
        section, _, name = key.rpartition(".")
        assert name in (config[section] if section else config), key


@pytest.mark.parametrize("content, where, what", [
    (b"data:\n  corpus: ravdess\n train: [\n", "line 3", "not valid YAML"),
    (b"- data\n- train\n", "line 1", "expected a mapping of sections"),
    (b"data:\n  corpus: !!python/object/apply:os.system ['touch PWNED']\n", "line 2",
     "the tag !!python/object/apply:os.system is not allowed"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "line 1", "not a text (UTF-8) file"),
    (b"name: x\ndata:\n  corpus: caf\xe9\n", "line 3", "not a text (UTF-8) file"),
    (b"data:\n  corpus: ravdess\x00\n", "line 2", "not valid YAML"),
])
def test_a_config_file_that_is_not_a_yaml_mapping_is_one_line_naming_the_file_and_line(tmp_path, content, where, what):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}, {where}: ") and what in message and "\n" not in message


def test_a_python_tag_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['touch PWNED']\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "evil.yaml")
    assert not (tmp_path / "PWNED").exists()


def test_an_overlay_and_an_override_that_are_not_yaml_are_named(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="overlay.yaml, line 1"):
        load_config("configs/ravdess.yaml", overlay)
    with pytest.raises(ConfigError, match=r"override 'train.epochs=\[': the value is not valid YAML"):
        load_config(overrides=["train.epochs=["])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        load_config(overrides=["train..epochs=3"])


@pytest.mark.parametrize("args", [
    ["train", "--config", "configs/emodb.yaml", "--set", "train.epochs=abc"],
    ["train", "--config", "configs/emodb.yaml", "--set", "features.kind=bogus"],
    ["prepare", "emodb", "--set", "preprocess.vad=maybe"],
])
def test_the_cli_stops_on_a_bad_value_before_any_work_with_one_line(args, capsys, tmp_path):
    assert main([*args, "--data-root", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"serlib {args[0]}: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_the_cli_names_a_config_file_that_is_not_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(os.urandom(64) + b"\xff")
    assert main(["train", "--config", str(bad)]) == 2
    assert f"serlib train: error: {bad}, line" in capsys.readouterr().err


def test_an_unavailable_gpu_is_one_line_before_training(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="train.device=cuda: no CUDA GPU is available here"):
        check_device_available("cuda")
    check_device_available("auto")
    check_device_available("cpu")
    assert main(["train", "--config", "configs/emodb.yaml", "--set", "train.device=cuda:0",
                 "--data-root", "/nonexistent"]) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err


def test_a_key_given_twice_is_an_error_naming_the_line(tmp_path):
    from serlib.config import ConfigError, read_yaml_file

    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  epochs: 3\n  batch_size: 8\n  epochs: 40\n")
    with pytest.raises(ConfigError, match=r"line 4: not valid YAML \(the key 'epochs' appears twice"):
        read_yaml_file(path)


def test_a_folder_given_as_config_says_so(tmp_path, capsys):
    from serlib.cli import main

    assert main(["train", "--config", str(tmp_path)]) == 2
    assert "is a folder, not a config file" in capsys.readouterr().err


def test_leaving_a_corpus_out_scores_the_shared_classes_unless_told_otherwise():
    assert load_config(overrides=["data.protocol=loco"]).data.classes == ["neutral", "happy", "sad", "angry"]
    assert load_config(overrides=["data.protocol=loco-6"]).data.classes[-2:] == ["fear", "disgust"]
    assert load_config(overrides=["data.protocol=loco", "data.classes=[angry, sad]"]).data.classes == ["angry", "sad"]


@pytest.mark.parametrize("override", ["encoder.extra_classes=keep", "encoder.corpus_norm=speaker",
                                      "encoder.corpus_weight=equal"])
def test_the_ways_of_joining_corpora_are_checked_when_the_config_loads(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config(overrides=[override])


def test_the_multi_corpus_recipe_never_lists_the_corpus_itself():
    config = load_config("configs/emodb.yaml", "configs/models/multi.yaml")
    assert "emodb" not in config.data.extra_train and len(config.data.extra_train) == 5
    assert config.model.recipe == "multi"
