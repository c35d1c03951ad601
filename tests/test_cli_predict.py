"""``serlib predict`` and ``serlib models`` as a user runs them: shipped names, output formats, mistakes."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import serlib.serve.shipped
from serlib.cli import main


@pytest.fixture(scope="module")
def run(tier1_run) -> Path:
    return tier1_run


@pytest.fixture
def shipped(shipped_tiny) -> Path:
    """The run shipped as ``tiny`` in a models folder that replaces the package's."""
    return shipped_tiny


@pytest.fixture
def no_shipped(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(serlib.serve.shipped, "MODELS_DIR", tmp_path / "empty")
    return tmp_path / "empty"


@pytest.fixture
def clips(synthetic_ravdess, tmp_path) -> list[Path]:
    """Two readable clips, one with a tab, a newline, a comma and a quote in its name."""
    source = sorted(synthetic_ravdess.glob("Actor_05/*.wav"))[:2]
    plain = tmp_path / "plain.wav"
    odd = tmp_path / 'odd\tname,\n"x".wav'
    shutil.copy(source[0], plain)
    shutil.copy(source[1], odd)
    return [plain, odd]


@pytest.fixture(scope="module")
def labels(run) -> list[str]:
    """The model's classes, in its order."""
    return json.loads((run / "metrics.json").read_text())["labels"]


def test_predict_with_a_shipped_name_writes_json_lines(shipped, clips, labels, capsys):
    assert main(["predict", "--model", "tiny", *map(str, clips), "--format", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [r["path"] for r in records] == [str(c) for c in clips]
    for r in records:
        assert list(r["probabilities"]) == labels
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)


def test_csv_has_a_header_and_one_probability_column_per_class_and_quotes_odd_names(shipped, clips, labels, capsys):
    assert main(["predict", "--model", "tiny", *map(str, clips), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["path", "label"] + [f"p_{lab}" for lab in labels]
    assert [r[0] for r in rows[1:]] == [str(c) for c in clips]
    assert all(r[1] in labels and sum(float(p) for p in r[2:]) == pytest.approx(1.0, abs=1e-4) for r in rows[1:])


def test_the_table_keeps_one_line_per_file_by_escaping_tabs_and_newlines_in_names(shipped, clips, capsys):
    assert main(["predict", "--model", "tiny", *map(str, clips)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.count("\t") == 2 for line in lines)
    assert lines[1].startswith(str(clips[1]).replace("\t", "\\t").replace("\n", "\\n") + "\t")


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_unreadable_inputs_are_one_error_line_each_and_the_exit_status_says_some_failed(fmt, shipped, clips, tmp_path,
                                                                                       capsys):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    odd_bad = tmp_path / "bad\nname.wav"
    odd_bad.write_bytes(b"")
    assert main(["predict", "--model", "tiny", str(bad), str(clips[0]), str(odd_bad), "--format", fmt]) == 2
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"error: {bad}: unreadable")
    assert errors[1].startswith(f"error: {tmp_path}/bad\\nname.wav: ")
    assert str(clips[0]) in captured.out and "bad.wav" not in captured.out
    assert main(["predict", "--model", "tiny", str(clips[0]), "--format", fmt]) == 0


def test_a_checkpoint_path_still_works_as_the_first_argument_or_as_model(run, no_shipped, clips, capsys):
    checkpoint = str(next(run.glob("best_uar_*.pt")))
    assert main(["predict", checkpoint, str(clips[0]), "--format", "json"]) == 0
    assert main(["predict", "--model", checkpoint, str(clips[0]), "--format", "json"]) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert json.loads(first) == json.loads(second)


def test_a_glob_that_matched_several_checkpoints_is_named_instead_of_read_as_audio(run, no_shipped, clips, tmp_path,
                                                                                 capsys):
    best = next(run.glob("best_uar_*.pt"))
    other = tmp_path / "best_uar_0.1000.pt"
    shutil.copy(best, other)
    assert main(["predict", str(best), str(other), str(clips[0])]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.startswith("serlib predict: error: 2 checkpoint(s) given") and err.count("\n") == 1
    assert str(best) in err and str(other) in err and "matched several" in err


def test_a_folder_as_model_is_named_and_a_folder_as_audio_is_searched(run, no_shipped, clips, capsys):
    assert main(["predict", str(run), str(clips[0])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder, not a model" in err and "best_uar_" in err
    checkpoint = str(next(run.glob("best_uar_*.pt")))
    assert main(["predict", checkpoint, str(clips[0].parent), str(clips[0]), "--format", "json"]) == 0
    paths = [json.loads(line)["path"] for line in capsys.readouterr().out.splitlines()]
    in_folder = sorted(str(p) for p in clips[0].parent.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert paths == in_folder + [str(clips[0])]


def test_an_unknown_model_name_says_so_and_lists_the_shipped_ones(shipped, clips, capsys):
    assert main(["predict", "--model", "ravdess", str(clips[0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("serlib predict: error: no shipped model named 'ravdess' (shipped: tiny")
    assert err.count("\n") == 1


def test_with_no_shipped_models_the_error_says_none_are_shipped(no_shipped, clips, capsys):
    assert main(["predict", "--model", "ravdess", str(clips[0]), "--format", "json"]) == 2
    assert "none are shipped" in capsys.readouterr().err


def test_a_model_without_audio_files_is_refused(shipped, capsys):
    assert main(["predict", "--model", "tiny"]) == 2
    assert "no audio files given" in capsys.readouterr().err
    assert main(["predict", "tiny"]) == 2
    assert "no audio files given" in capsys.readouterr().err
    assert main(["predict"]) == 2
    assert "no model given" in capsys.readouterr().err


def test_models_lists_each_shipped_model_with_its_systems_figures_over_the_whole_protocol(shipped, run, labels,
                                                                                          capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["name", "system", "corpus", "protocol"] and "pooled UAR % [95 % CI]" in out[0]
    uar = json.loads((run / "metrics.json").read_text())["test"]["uar"]
    assert out[1].split()[:4] == ["tiny", "tier1", "ravdess", "speaker-split"]
    # the only run of its system is this one fold: the whole-protocol figures are that fold's, pooled with its CI
    assert f"{uar * 100:.1f}" in out[1] and "(n = " in out[1] and ", ".join(labels) in out[1]
    assert main(["models", "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["name"] == "tiny" and record["classes"] == labels and record["fold_test_uar"] == uar
    assert record["folds"] == 1 and record["mean_of_folds"] == pytest.approx(uar)
    assert record["pooled_ci95"][0] <= record["pooled_uar"] <= record["pooled_ci95"][1]


def test_models_with_none_shipped_says_so(no_shipped, capsys):
    assert main(["models"]) == 0
    assert "no shipped models" in capsys.readouterr().out
    assert main(["models", "--format", "json"]) == 0
    assert capsys.readouterr().out == ""


def test_predict_reads_any_rate_stereo_audio_with_a_shipped_model(shipped, labels, tmp_path, capsys):
    t = np.arange(44100) / 44100
    clip = tmp_path / "stereo.flac"
    sf.write(clip, np.stack([0.3 * np.sin(2 * np.pi * 180 * t)] * 2, axis=1), 44100)
    assert main(["predict", "--model", "tiny", str(clip), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in labels


def _edit_sidecar(models: Path, change) -> None:
    sidecar = models / "tiny.json"
    meta = json.loads(sidecar.read_text())
    change(meta)
    sidecar.write_text(json.dumps(meta))


@pytest.mark.parametrize("change, why", [
    (lambda m: m.pop("weights_sha256"), "records no weights_sha256"),
    (lambda m: m.update(labels=[m["labels"][0]] * len(m["labels"])), "name a class twice"),
    (lambda m: m.update(labels=[]), "non-empty list"),
    (lambda m: m.update(layers=[99]), "layers must be encoder layer numbers"),
], ids=["no-sha256", "duplicate-labels", "no-labels", "layer-out-of-range"])
def test_a_sidecar_with_bad_fields_is_one_line_and_listed_as_broken(shipped, clips, capsys, change, why):
    _edit_sidecar(shipped, change)
    assert main(["predict", "--model", "tiny", str(clips[0])]) == 2
    err = capsys.readouterr().err
    assert why in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert "tiny is broken" in captured.err and why in captured.err


def test_non_finite_model_outputs_are_an_error_line_and_json_output_goes_on(shipped, clips, monkeypatch, capsys):
    from serlib.systems.tier1.predictor import Predictor

    real = Predictor.predict_arrays
    calls = []

    def first_nan(self, arrays):
        calls.append(1)
        out = real(self, arrays)
        return np.full_like(out, np.nan) if len(calls) == 1 else out

    monkeypatch.setattr(Predictor, "predict_arrays", first_nan)
    assert main(["predict", "--model", "tiny", str(clips[0]), str(clips[1]), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert "non-finite-output" in captured.err and len(captured.out.strip().splitlines()) == 1
    assert json.loads(captured.out)["label"]  # the second file still gets its line


def test_an_empty_model_name_is_refused_instead_of_falling_back(shipped, clips, capsys):
    assert main(["predict", "--model", "", str(clips[0])]) == 2
    assert "--model ''" in capsys.readouterr().err


def test_a_folder_is_searched_recursively_and_audio_is_recognised_by_content(shipped, synthetic_ravdess, tmp_path,
                                                                              capsys):
    folder = tmp_path / "recordings"
    (folder / "day1" / "deeper").mkdir(parents=True)
    source = sorted(synthetic_ravdess.glob("Actor_05/*.wav"))
    shutil.copy(source[0], folder / "day1" / "a.wav")
    shutil.copy(source[1], folder / "day1" / "deeper" / "no-extension")  # audio by its bytes, not its name
    (folder / "day1" / "notes.wav").write_text("not audio, whatever its name")
    (folder / ".hidden").mkdir()
    shutil.copy(source[2], folder / ".hidden" / "skipped.wav")
    assert main(["predict", "--model", "tiny", str(folder), "--format", "json"]) == 0
    paths = [json.loads(line)["path"] for line in capsys.readouterr().out.splitlines()]
    assert paths == [str(folder / "day1" / "a.wav"), str(folder / "day1" / "deeper" / "no-extension")]


def test_a_list_file_and_an_output_file_in_csv_or_json_lines(shipped, clips, labels, tmp_path, capsys):
    listing = tmp_path / "lists" / "todo.txt"
    listing.parent.mkdir()
    shutil.copy(clips[0], listing.parent / "here.wav")
    listing.write_text(f"# my clips\nhere.wav\n\n{clips[0]}\nmissing.wav\n")
    for suffix in ("csv", "jsonl"):
        out = tmp_path / f"predictions.{suffix}"
        assert main(["predict", "--model", "tiny", "--list", str(listing), "--output", str(out)]) == 2  # one missing
        captured = capsys.readouterr()
        assert captured.err.splitlines() == [f"error: {listing.parent / 'missing.wav'}: not found: no such file or folder"]
        assert captured.out.count("\n") == 2  # stdout as well, in --format (table)
        if suffix == "csv":
            with out.open() as handle:
                rows = list(csv.DictReader(handle))
            assert [r["path"] for r in rows] == [str(listing.parent / "here.wav"), str(clips[0])]
            assert set(rows[0]) == {"path", "label"} | {f"p_{lab}" for lab in labels}
        else:
            records = [json.loads(line) for line in out.read_text().splitlines()]
            assert len(records) == 2 and set(records[0]["probabilities"]) == set(labels)
    assert main(["predict", "--model", "tiny", str(clips[0]), "--output", str(tmp_path / "p.txt")]) == 2
    assert "give a .csv or a .jsonl" in capsys.readouterr().err


def test_many_files_show_a_progress_bar_on_stderr_only(shipped, clips, tmp_path, capsys):
    many = tmp_path / "many"
    many.mkdir()
    for i in range(22):
        shutil.copy(clips[0], many / f"{i:02d}.wav")
    assert main(["predict", "--model", "tiny", str(many), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 23 and "/22 [" in captured.err and "file/s" in captured.err


def test_models_card_prints_what_a_shipped_model_was_trained_on(shipped, capsys):
    assert main(["models", "--card", "tiny"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("### `tiny`") and "RAVDESS: English" in text and "Intended use" in text
    assert main(["models", "--card", "nothing"]) == 2
    assert "no shipped model named 'nothing'" in capsys.readouterr().err


def test_own_statistics_is_refused_in_one_line_for_a_model_without_input_statistics(shipped, clips, capsys):
    assert main(["predict", "--model", "tiny", "--own-statistics", *map(str, clips)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only the Whisper-base heads" in err


def test_own_statistics_needs_enough_files_and_never_applies_to_segments(shipped, clips, capsys):
    assert main(["predict", "--model", "tiny", "--own-statistics", "--segments", str(clips[0])]) == 2
    assert "not the segments" in capsys.readouterr().err
