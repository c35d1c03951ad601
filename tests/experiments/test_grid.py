"""The experiment grid on Dask: real worker processes, a separate scheduler, a worker killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from serlib.experiments.grid import RunSpec, failures, local_cluster_size, run_grid

from conftest import fast_overrides

pytestmark = pytest.mark.slow


def specs(data: Path, results: Path, cache: Path, *, models=("tier1", "baseline-svm"), extra=()):
    common = dict(corpus="ravdess", protocol="speaker-split", data_root=str(data), cache_dir=str(cache),
                  results=str(results), overrides=tuple(fast_overrides()) + tuple(extra))
    return [RunSpec(model=m, fold=0, seed=s, **common) for m in models for s in (0, 1)]


def test_the_local_cluster_is_sized_from_the_cores_and_serlib_threads(monkeypatch):
    monkeypatch.setenv("SERLIB_THREADS", "1")
    workers, threads = local_cluster_size()
    assert threads == 1 and workers == (os.cpu_count() or 1)


def test_a_grid_runs_on_a_local_cluster_of_two_worker_processes(synthetic_ravdess, tmp_path):
    grid = specs(synthetic_ravdess, tmp_path / "results", tmp_path / "cache")
    grid.append(RunSpec(corpus="ravdess", model="no-such-model", fold=0, seed=0, data_root=str(synthetic_ravdess),
                        cache_dir=str(tmp_path / "cache"), results=str(tmp_path / "results"),
                        overrides=tuple(fast_overrides()), protocol="speaker-split"))
    table = run_grid(grid, n_workers=2, threads_per_worker=1, progress=False)
    assert list(table["status"]) == ["done"] * 4 + ["failed"]
    assert failures(table) == [f"{grid[-1].label}: ValueError: unknown model 'no-such-model'; registered models: "
                               + table["error"].iloc[-1].split("registered models: ")[1]]
    assert table["worker"].iloc[:4].str.startswith("tcp://127.0.0.1").all()
    for path in table["path"].iloc[:4]:
        prov = json.loads((Path(path) / "provenance.json").read_text())
        assert prov["worker"].startswith("tcp://127.0.0.1")
    again = run_grid(grid[:4], n_workers=2, threads_per_worker=1, progress=False)
    assert set(again["status"]) == {"cached"}


def _start(*args: str, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "dask"
    return subprocess.Popen([str(exe), *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{path} did not appear in {seconds} s")
        time.sleep(0.2)


def test_a_separate_scheduler_retries_a_run_whose_worker_was_killed_and_it_resumes(synthetic_ravdess, tmp_path):
    cache, results = tmp_path / "cache", tmp_path / "results"
    file = tmp_path / "scheduler.json"
    scheduler = _start("scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                       "--scheduler-file", str(file), log=tmp_path / "scheduler.log")
    workers = []
    try:
        _wait_for(file, 60)
        address = json.loads(file.read_text())["address"]
        worker_args = ("worker", address, "--nthreads", "1", "--nworkers", "1", "--no-nanny", "--host", "127.0.0.1")
        workers.append(_start(*worker_args, log=tmp_path / "worker-1.log"))
        grid = specs(synthetic_ravdess, results, cache, models=("tier1",),
                     extra=("train.epochs=40", "train.patience=40"))[:1]
        outcome: dict = {}
        thread = threading.Thread(target=lambda: outcome.update(table=run_grid(grid, scheduler=address, progress=False)))
        thread.start()
        run_folder = results / "ravdess" / "speaker-split" / "tier1" / "fold-1" / "seed-0"
        _wait_for(run_folder / "last.pt", 240)
        os.kill(workers[0].pid, signal.SIGKILL)  # the worker dies mid-run
        workers[0].wait(30)
        assert not (run_folder / "metrics.json").exists()
        workers.append(_start(*worker_args, log=tmp_path / "worker-2.log"))
        thread.join(600)
        table = outcome["table"]
        assert list(table["status"]) == ["done"]
        prov = json.loads((run_folder / "provenance.json").read_text())
        assert prov["resumed"] is True
    finally:
        for p in workers + [scheduler]:
            if p.poll() is None:
                p.kill()


def test_make_run_sends_a_corpus_grid_to_a_local_cluster(synthetic_ravdess, tmp_path):
    from serlib.experiments import batch

    outcome = batch.run_corpus_grid("ravdess", protocol="speaker-split", models=("tier1", "baseline-svm"), seeds=[0],
                             smoke=True, root=synthetic_ravdess, results=tmp_path / "results",
                             cache_dir=tmp_path / "cache", progress=False, scheduler="local")
    assert list(outcome.runs["status"]) == ["done", "done"] and not outcome.failed and not outcome.skipped
    assert all((Path(p) / "metrics.json").is_file() for p in outcome.runs["path"])


def test_a_stale_run_stops_the_dask_grid_before_any_worker_starts(synthetic_ravdess, tmp_path, monkeypatch):
    from serlib.experiments import grid
    from serlib.systems.reuse import StaleRunError

    grid_specs = specs(synthetic_ravdess, tmp_path / "results", tmp_path / "cache", models=("baseline-svm",))[:1]
    run_grid(grid_specs, n_workers=1, threads_per_worker=1, progress=False)
    changed = [RunSpec(**{**vars(grid_specs[0]), "overrides": grid_specs[0].overrides + ("features.n_mfcc=20",)})]
    monkeypatch.setattr("distributed.LocalCluster", lambda *a, **k: pytest.fail("a cluster was started"))
    with pytest.raises(StaleRunError, match="features.n_mfcc: 40 -> 20"):
        run_grid(changed, progress=False)
    grid.check_stale([RunSpec(**{**vars(changed[0]), "retrain": True})])  # retrain: nothing to refuse


def test_in_process_grid_checks_every_system_before_the_first_trains(synthetic_ravdess, tmp_path, monkeypatch):
    from serlib.experiments import batch, protocol as experiment
    from serlib.systems.reuse import StaleRunError

    kwargs = dict(protocol="speaker-split", seeds=[0], smoke=True, root=synthetic_ravdess, results=tmp_path / "r",
                  cache_dir=tmp_path / "cache", progress=False)
    batch.run_corpus_grid("ravdess", models=("tier1",), **kwargs)  # 2 epochs (smoke)
    trained = []
    monkeypatch.setattr(experiment, "run_protocol", lambda *a, **k: trained.append(k["models"]))
    with pytest.raises(StaleRunError, match="tier1/fold-1/seed-0 holds a finished run of another request"):
        batch.run_corpus_grid("ravdess", models=("baseline-svm", "tier1"), **{**kwargs, "smoke": False})
    assert trained == []  # the baseline, first in line, did not train before tier1's stale folder was found


def test_make_ablations_runs_every_ablation_as_a_task_on_the_local_cluster(synthetic_ravdess, tmp_path):
    from serlib.experiments.batch import run_ablations
    from serlib.config import ConfigError

    results = tmp_path / "results"
    common = dict(protocol="speaker-split", seeds=[0], smoke=True, root=synthetic_ravdess, results=str(results),
                  cache_dir=str(tmp_path / "cache"), out_dir=tmp_path / "pages", scheduler="local")
    with pytest.raises(ConfigError, match="no-such-overlay"):  # a typo stops the batch before any work
        run_ablations("ravdess", ablations=["no-class-weights", "no-such-overlay"], **common)
    assert not results.exists()
    run_ablations("ravdess", ablations=["no-class-weights"], **common)
    for name in ("tier1", "tier1-no-class-weights"):
        run = results / "ravdess" / "speaker-split" / name / "fold-1" / "seed-0"
        prov = json.loads((run / "provenance.json").read_text())
        assert prov["worker"].startswith("tcp://127.0.0.1")  # trained by a Dask worker process
    assert (tmp_path / "pages" / "studies" / "ablations-ravdess.ipynb").is_file()


def test_make_cross_corpus_trains_on_the_local_cluster_and_scores_from_the_run_folders(tmp_path):
    from serlib.experiments.batch import run_cross_corpus
    from serlib.data.synthetic import write_synthetic_corpus

    data = tmp_path / "data"
    for corpus in ("ravdess", "emodb"):
        write_synthetic_corpus(corpus, data / corpus, per_class=2, seconds=0.8)
    results = tmp_path / "results"
    run_cross_corpus({"ravdess-emodb": ["ravdess", "emodb"]}, seeds=[0], smoke=True, root=data, results=str(results),
                     cache_dir=str(tmp_path / "cache"), out_dir=tmp_path / "pages", scheduler="local",
                     protocol="speaker-split")
    runs = sorted(results.glob("*/speaker-split/tier1-x-*/fold-1/seed-0"))
    assert [r.parts[-5] for r in runs] == ["emodb", "ravdess"]
    for run in runs:
        assert json.loads((run / "provenance.json").read_text())["worker"].startswith("tcp://127.0.0.1")
        assert len(list(run.glob("cross-*.json"))) == 1  # scored on the other corpus after the grid
    assert (tmp_path / "pages" / "studies" / "cross-corpus.ipynb").is_file()
