"""The batch behind ``make run``: bad arguments, an unreachable scheduler and Ctrl-C are one line each."""

from __future__ import annotations

import time

import pytest

from serlib.experiments import batch


@pytest.mark.parametrize("argv, why", [
    (["corpus", "ravdess", "--seeds", "-1"], "-1 is below 0"),
    (["corpus", "ravdess", "--epochs", "0"], "0 is below 1"),
    (["all", "--seeds", "x"], "'x' is not a whole number"),
], ids=["negative-seed", "zero-epochs", "not-a-number"])
def test_impossible_seeds_and_epochs_are_refused_before_anything_runs(argv, why, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        batch.main(argv)
    assert exit_.value.code == 2 and why in capsys.readouterr().err
    assert not any(tmp_path.rglob("seed-*"))


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_status_130_with_no_traceback_from_any_process(synthetic_ravdess, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "SERLIB_DATA": str(synthetic_ravdess.parent), "SERLIB_RESULTS": str(tmp_path / "results"),
           "SERLIB_CACHE": str(tmp_path / "cache")}
    def terminal_ctrl_c() -> None:  # a shell running the tests in the background ignores SIGINT, and a child
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # inherits that; a terminal's Ctrl-C is never ignored

    batch_run = subprocess.Popen([sys.executable, "-m", "serlib.experiments.batch", "corpus", "ravdess", "--smoke",
                                  "--models", "tier1", "baseline-svm", "--allow-dirty"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=terminal_ctrl_c)
    for line in batch_run.stdout:  # the grid's first line: its LocalCluster and workers are up
        if line.startswith("[grid]"):
            break
    os.killpg(batch_run.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
    out, err = batch_run.communicate(timeout=120)
    assert batch_run.returncode == 130
    assert "Traceback" not in err and "make: interrupted" in err


def test_an_unreachable_scheduler_is_one_line(synthetic_ravdess, tmp_path):
    from serlib.experiments.grid import RunSpec, run_grid

    spec = RunSpec(corpus="ravdess", model="baseline-svm", fold=0, seed=0, data_root=str(synthetic_ravdess),
                   results=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="no Dask scheduler answers there"):
        run_grid([spec], scheduler="tcp://127.0.0.1:9", progress=False)
    assert time.perf_counter() - start < 25


def test_a_grid_refuses_uncommitted_code_unless_allowed_and_then_records_it(monkeypatch, capsys, tmp_path):
    import serlib.core.runs as runs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runs, "git_commit", lambda: "0123abc+dirty")
    monkeypatch.delenv(runs.ALLOW_DIRTY_ENV, raising=False)
    assert batch.main(["corpus", "ravdess", "--smoke"]) == 2
    assert "uncommitted changes" in capsys.readouterr().err and not any(tmp_path.rglob("seed-*"))

    batch.require_clean_tree(allow_dirty=True)
    assert runs.provenance()["allow_dirty"] is True
    monkeypatch.setattr(runs, "git_commit", lambda: "0123abc")
    assert "allow_dirty" not in runs.provenance()


@pytest.mark.slow
def test_a_manifest_corpus_gets_its_runs_and_its_data_and_protocol_pages(tmp_path, monkeypatch):
    import json

    import numpy as np
    import soundfile as sf

    from serlib.data.synthetic import emotion_tone

    lines = ["path,label"]  # no speakers: stratified folds, labelled not speaker independent
    for k in range(16):
        label = ["ang", "happy", "Sad", "neutral"][k % 4]
        sf.write(tmp_path / f"c{k}.wav", emotion_tone({"ang": "angry", "Sad": "sad"}.get(label, label), 16000, 0.8,
                                                      np.random.default_rng(k)), 16000)
        lines.append(f"c{k}.wav,{label}")
    manifest = tmp_path / "home-clips.csv"
    manifest.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SERLIB_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    pages = batch.run_manifest(manifest, models=["baseline-svm"], folds=2, results=results,
                               cache_dir=tmp_path / "cache", progress=False)
    assert [p.name for p in pages] == ["home-clips-data.ipynb", "home-clips-stratified-cv.ipynb"]
    assert all(p.parent == results / "pages" / "corpora" for p in pages)
    assert len(list(results.glob("home-clips/stratified-cv/baseline-svm/fold-*/seed-0/metrics.json"))) == 2
    page = json.dumps(json.loads(pages[1].read_text())["cells"])
    assert "Not speaker independent" in page
