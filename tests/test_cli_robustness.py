"""The command line answers mistakes with one line, before any long work (issue 9, item 11).

Every project error becomes ``serlib COMMAND: error: ...`` and exit status 2;
fold numbers are 1-based everywhere; arguments that cannot work are refused
before a corpus is prepared or a model evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import serlib.features.prepared
from serlib.cli import main
from serlib.data.synthetic import write_synthetic_corpus

from conftest import fast_overrides


def sets(*extra: str) -> list[str]:
    return [a for o in [*fast_overrides(), "wave_augment.enabled=false", *extra] for a in ("--set", o)]


@pytest.fixture
def emodb(tmp_path: Path) -> Path:
    return write_synthetic_corpus("emodb", tmp_path / "emodb", per_class=1, seconds=0.3)


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"serlib {command}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def project_errors():
    from serlib.data.audio import AudioError
    from serlib.config import ConfigError
    from serlib.data.corpora import CorpusLayoutError
    from serlib.features.frames import FeatureError
    from serlib.core.files import DiskFullError
    from serlib.core.checkpoints import CheckpointError
    from serlib.features.preprocess import DemucsUnavailable
    from serlib.systems.reuse import StaleRunError
    from serlib.data.splits import SplitError

    return [ConfigError("bad key"), CorpusLayoutError("not the corpus"), CheckpointError("not a checkpoint"),
            DemucsUnavailable("no weights"), SplitError("no split"), AudioError("x.wav", "unreadable", "garbage"),
            StaleRunError("run made from another config"), FeatureError("a worker died"),
            DiskFullError("/cache", "the feature cache"), PermissionError(13, "Permission denied", "/results/x"),
            ValueError("bad value")]


@pytest.mark.parametrize("error", project_errors(), ids=lambda e: type(e).__name__)
def test_every_project_error_is_one_line_and_status_2(error, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(serlib.features.prepared, "prepare", fail)
    assert main(["prepare", "emodb"]) == 2
    one_error_line(capsys, "prepare")


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".", "/abs", ""])
def test_a_run_name_that_is_not_one_folder_name_is_refused_before_any_work(name, capsys):
    assert main(["train", "--config", "configs/emodb.yaml", "--name", name, "--data-root", "/nonexistent"]) == 2
    assert "must be a single folder name" in one_error_line(capsys, "train")


def test_fold_zero_is_refused_and_folds_count_from_one(capsys):
    assert main(["train", "--config", "configs/emodb.yaml", "--fold", "0", "--data-root", "/nonexistent"]) == 2
    assert "--fold 0: folds are numbered from 1" in one_error_line(capsys, "train")


def test_a_fold_past_the_last_names_the_1_based_range(emodb, tmp_path, capsys):
    code = main(["train", "--config", "configs/emodb.yaml", "--fold", "2", "--data-root", str(emodb),
                 "--cache-dir", str(tmp_path / "c"), "--results", str(tmp_path / "r"), "--workers", "1", "--quiet",
                 *sets("data.protocol=speaker-split")])
    assert code == 2
    assert "--fold 2: emodb speaker-split has 1 fold(s), numbered 1..1" in one_error_line(capsys, "train")
    assert not (tmp_path / "r").exists()


def test_the_split_library_names_both_the_0_based_index_and_the_1_based_fold():
    import pandas as pd

    from serlib.data.splits import SplitError, get_split

    manifest = pd.DataFrame({"utt_id": list("abcdef"), "speaker": list("abcdef"), "label": ["x", "y"] * 3})
    with pytest.raises(SplitError, match=r"fold index -1 \(fold 0 counting from 1\).*folds 1\.\.1"):
        get_split(manifest, "speaker-split", fold=-1)


def test_evaluate_protocol_without_fold_is_refused(capsys):
    assert main(["evaluate", "missing.pt", "--protocol", "speaker-split"]) == 2
    assert "--protocol only chooses whose test part --fold scores" in one_error_line(capsys, "evaluate")


def test_evaluate_out_onto_an_existing_file_is_refused_before_the_checkpoint_is_even_read(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    assert main(["evaluate", str(tmp_path / "missing.pt"), "--fold", "1", "--out", str(taken)]) == 2
    assert "exists and is not a folder" in one_error_line(capsys, "evaluate")
    assert taken.read_text() == "keep me"


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_workers_must_be_at_least_one(workers, capsys):
    assert main(["prepare", "emodb", "--workers", workers]) == 2
    assert "must be at least 1" in one_error_line(capsys, "prepare")


def test_a_corpus_name_in_any_spelling_uses_the_canonical_folder(emodb, tmp_path, capsys):
    assert main(["prepare", "EMO_DB", "--data-root", str(emodb), "--cache-dir", str(tmp_path / "c"),
                 "--workers", "1", "--quiet", "--no-augment", *sets()]) == 0
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["emodb"]
    assert "\nemodb: " in capsys.readouterr().out


@pytest.mark.parametrize("protocol", ["speaker-split", "speaker-cv", "emobox"])
def test_training_on_a_corpus_without_usable_clips_is_one_line(protocol, emodb, tmp_path, capsys):
    for clip in (emodb / "wav").glob("*.wav"):
        clip.write_bytes(b"")
    code = main(["train", "--config", "configs/emodb.yaml", "--data-root", str(emodb), "--cache-dir", str(tmp_path / "c"),
                 "--results", str(tmp_path / "r"), "--workers", "1", "--quiet", *sets(f"data.protocol={protocol}")])
    assert code == 2
    err = one_error_line(capsys, "train")
    assert "emodb: no usable clips (70 file(s): 70 unreadable)" in err



def test_an_unknown_model_name_is_refused_before_any_feature_is_computed(tmp_path, capsys, monkeypatch):
    from serlib.cli import main
    from serlib.features import prepared

    monkeypatch.setattr(prepared, "prepare", lambda *a, **k: pytest.fail("features were computed"))
    code = main(["train", "--config", "configs/ravdess.yaml", "--data-root", str(tmp_path), "--model", "tier9"])
    assert code == 2 and "unknown model 'tier9'" in capsys.readouterr().err
