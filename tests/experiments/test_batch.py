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


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "_run", interrupted)
    assert batch.main(["summary"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resume" in err and "Traceback" not in err


def test_an_unreachable_scheduler_is_one_line(synthetic_ravdess, tmp_path):
    from serlib.experiments.grid import RunSpec, run_grid

    spec = RunSpec(corpus="ravdess", model="baseline-svm", fold=0, seed=0, data_root=str(synthetic_ravdess),
                   results=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="no Dask scheduler answers there"):
        run_grid([spec], scheduler="tcp://127.0.0.1:9", progress=False)
    assert time.perf_counter() - start < 25
