"""The command line as a user runs it: prepare, train, evaluate, predict."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serlib.cli import main

from conftest import fast_overrides


def sets() -> list[str]:
    out = []
    for o in fast_overrides():
        out += ["--set", o]
    return out


@pytest.fixture(scope="module")
def trained(synthetic_ravdess, tmp_path_factory):
    """One tiny run trained through the CLI (speaker-split protocol, one seed)."""
    results = tmp_path_factory.mktemp("results")
    cache = tmp_path_factory.mktemp("clicache")
    code = main(["train", "--config", "configs/ravdess.yaml", "--data-root", str(synthetic_ravdess), "--cache-dir", str(cache),
                 "--results", str(results), "--set", "data.protocol=speaker-split", *sets(), "--workers", "1", "--quiet"])
    assert code == 0
    ckpt = next(results.glob("ravdess/speaker-split/tier1/fold-1/seed-0/best_uar_*.pt"))
    return ckpt, cache, results


def test_prepare_prints_a_summary_and_the_quarantine(synthetic_ravdess, tmp_path, capsys):
    corpus = tmp_path / "ravdess"
    shutil.copytree(synthetic_ravdess, corpus)
    open(next(corpus.glob("Actor_01/*.wav")), "wb").close()  # one broken file
    code = main(["prepare", "ravdess", "--data-root", str(corpus), "--cache-dir", str(tmp_path / "cache"),
                 "--workers", "1", "--no-augment", "--quiet", *sets()])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 quarantined" in out and "speakers" in out and "classes" in out and "unreadable" in out


def test_prepare_on_a_wrong_folder_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "ravdess").mkdir()
    (tmp_path / "ravdess" / "notes.txt").write_text("hi")
    assert main(["prepare", "ravdess", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Actor_" in err and "Traceback" not in err


def test_a_config_typo_is_a_clear_error(capsys):
    assert main(["train", "--config", "configs/ravdess.yaml", "--set", "train.epochz=3"]) == 2
    assert "epochz" in capsys.readouterr().err


def test_train_writes_both_models_run_folders(trained):
    _, _, results = trained
    for model in ("tier1", "baseline-svm"):
        assert (results / "ravdess" / "speaker-split" / model / "fold-1" / "seed-0" / "metrics.json").is_file()


def test_predict_labels_any_rate_stereo_file_and_rejects_garbage(trained, tmp_path, capsys):
    ckpt, _, _ = trained
    t = np.arange(44100 * 2) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 180 * t)] * 2, axis=1)
    good = tmp_path / "clip.wav"
    sf.write(good, stereo, 44100)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    code = main(["predict", str(ckpt), str(good), str(bad)])
    captured = capsys.readouterr()
    assert code == 2
    line = captured.out.strip().splitlines()[0]
    assert line.startswith(str(good)) and "neutral" in line
    assert "bad.wav: unreadable" in captured.err


def test_predict_with_a_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "none.pt"), "x.wav"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_evaluate_scores_a_checkpoint_on_a_fold(trained, synthetic_ravdess, tmp_path, capsys):
    ckpt, cache, _ = trained
    code = main(["evaluate", str(ckpt), "--data-root", str(synthetic_ravdess), "--cache-dir", str(cache), "--fold", "1",
                 "--protocol", "speaker-split", "--out", str(tmp_path / "ev"), "--quiet"])
    assert code == 0
    assert "UAR" in capsys.readouterr().out
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "serlib"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("prepare", "train", "evaluate", "predict"):
        assert cmd in out


@pytest.mark.parametrize("corpus", ["cremad", "savee", "tess", "iemocap"])
def test_each_unavailable_corpus_trains_from_its_own_config_on_files_in_its_official_layout(corpus, tmp_path):
    """What `make run CORPUS=<corpus>` does once a real copy exists, on generated files."""
    from serlib.config import load_config
    from serlib.data.synthetic import write_synthetic_corpus

    root = write_synthetic_corpus(corpus, tmp_path / "data" / corpus, per_class=2, seconds=0.8)
    results = tmp_path / "results"
    code = main(["train", "--config", f"configs/{corpus}.yaml", "--data-root", str(root), "--cache-dir", str(tmp_path / "cache"),
                 "--results", str(results), *sets(), "--fold", "1", "--workers", "1", "--quiet"])
    assert code == 0
    protocol = load_config(f"configs/{corpus}.yaml").data.protocol  # the corpus's primary protocol
    for model in ("tier1", "baseline-svm"):
        assert (results / corpus / protocol / model / "fold-1" / "seed-0" / "metrics.json").is_file()


def test_evaluate_on_the_training_corpus_needs_a_fold_or_all_clips(trained, synthetic_ravdess, capsys):
    ckpt, cache, _ = trained
    common = ["evaluate", str(ckpt), "--data-root", str(synthetic_ravdess), "--cache-dir", str(cache), "--quiet"]
    assert main(common) == 2
    err = capsys.readouterr().err
    assert "ravdess is the corpus this checkpoint was trained on" in err and "--all-clips" in err
    assert main(common + ["--all-clips"]) == 0
    captured = capsys.readouterr()
    assert "training clips are included, so the score is optimistic" in captured.err and "UAR" in captured.out


def test_an_ablation_trains_tier1_alone_beside_the_finished_baseline(trained, synthetic_ravdess, capsys):
    _, cache, results = trained
    baseline = results / "ravdess" / "speaker-split" / "baseline-svm" / "fold-1" / "seed-0" / "request.json"
    before = baseline.read_text()
    code = main(["train", "--config", "configs/ravdess.yaml", "--data-root", str(synthetic_ravdess), "--cache-dir",
                 str(cache), "--results", str(results), "--set", "data.protocol=speaker-split", *sets(),
                 "--set", "preprocess.normalize=peak", "--name", "tier1-peak", "--workers", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err  # the baseline's other preprocessing is not a stale-run error
    assert (results / "ravdess" / "speaker-split" / "tier1-peak" / "fold-1" / "seed-0" / "metrics.json").is_file()
    assert baseline.read_text() == before


def test_evaluate_a_fold_past_the_last_names_the_1_based_range(trained, synthetic_ravdess, capsys):
    ckpt, cache, _ = trained
    assert main(["evaluate", str(ckpt), "--data-root", str(synthetic_ravdess), "--cache-dir", str(cache), "--quiet",
                 "--fold", "2", "--protocol", "speaker-split"]) == 2
    assert "--fold 2: ravdess speaker-split has 1 fold(s), numbered 1..1" in capsys.readouterr().err


@pytest.mark.timeout(60)
def test_predict_on_a_fifo_reports_it_unreadable_and_never_hangs(trained, tmp_path, capsys):
    import os

    ckpt, _, _ = trained
    fifo = tmp_path / "clip.wav"
    os.mkfifo(fifo)
    assert main(["predict", str(ckpt), str(fifo), str(tmp_path / "missing.wav")]) == 2
    err = capsys.readouterr().err
    assert f"{fifo}: unreadable: a FIFO (named pipe), not a regular file" in err
    assert "missing.wav: not found: no such file or folder" in err
