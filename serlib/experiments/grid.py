"""The experiment grid on Dask distributed: local by default, a cluster when given.

Every (corpus, protocol, model, fold, seed) run of a target becomes one
:class:`RunSpec`; each is one Dask task that writes its own run folder through
:func:`serlib.experiments.protocol.run_protocol`, so the rules of a single run hold on any
worker: a finished run is reused only for the same request, an interrupted one
resumes from ``last.pt``.

* **Local by default.** Without a scheduler, :func:`run_grid` starts an embedded
  ``LocalCluster``: one process per GPU when CUDA devices exist, else
  ``cores // $SERLIB_THREADS`` processes of one thread each (2 x 1 on 2 cores).
* **A cluster when given.** ``SERLIB_SCHEDULER=tcp://host:8786`` (or
  ``scheduler=``) sends the same tasks to a running scheduler (see the README for
  ``dask scheduler`` / ``dask worker`` and a SLURM example with dask-jobqueue).
* **Caches first.** The feature cache of each distinct (corpus, config) is built
  by one task before the runs that read it, so two workers never build the same cache.
* **Faults.** A task whose worker dies is re-run by Dask on another worker and
  resumes from ``last.pt``. A run that raises is recorded with its error and the
  grid goes on; :func:`run_grid` returns every row (``status`` ``failed`` with the
  error) and the command exits non-zero listing the failures. Ctrl-C cancels the
  grid; every run folder stays resumable.
* **Provenance** of each run records the worker (``SERLIB_WORKER``) and host.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from serlib.config import load_config
from serlib.core.runs import PROJECT_ROOT


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: what to train and where its inputs and outputs live (0-based ``fold``)."""

    corpus: str
    model: str
    fold: int
    seed: int
    protocol: str | None = None
    config_path: str | None = None
    overlays: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    name: str | None = None  # run-folder model name (default: the model's)
    data_root: str | None = None
    cache_dir: str | None = None
    results: str | None = None
    retrain: bool = False

    @property
    def label(self) -> str:
        return f"{self.corpus}/{self.protocol or 'primary'}/{self.name or self.model}/fold-{self.fold + 1}/seed-{self.seed}"

    @property
    def recipe(self) -> tuple[str, ...]:
        """The model's recipe overlay (Tier-1+), applied before this run's own overlays.

        An unknown model has none here: its task fails on its own, recorded like any failed run.
        """
        from serlib.systems.registry import REGISTRY, recipe_overlays

        return recipe_overlays(self.model) if self.model in REGISTRY else ()

    def config(self):
        """The resolved config of this run."""
        overrides = ([f"data.protocol={self.protocol}"] if self.protocol else []) + list(self.overrides)
        path = self.config_path or PROJECT_ROOT / "configs" / f"{self.corpus}.yaml"
        return load_config(path, *self.recipe, *self.overlays, overrides=overrides)

    def cache_task(self) -> tuple:
        """Runs with equal keys read the same feature cache (see :func:`prepare_task`)."""
        return (self.corpus, self.protocol, self.config_path, self.recipe, self.overlays, self.overrides,
                self.data_root, self.cache_dir)


def prepare_task(spec: RunSpec) -> str:
    """Build (or load) the feature cache a group of runs reads; returns its data fingerprint."""
    from serlib.features.prepared import prepare

    return prepare(spec.config(), data_root=spec.data_root, cache_dir=spec.cache_dir, workers=1,
                   progress=False).fingerprint


def run_task(spec: RunSpec, _cache_ready: Any = None) -> dict[str, Any]:
    """Train and test one run on whichever worker Dask chose; never raises (errors become a row)."""
    worker = _worker_name()
    os.environ["SERLIB_WORKER"] = worker
    t0 = time.perf_counter()
    row = {"run": spec.label, "worker": worker, "host": platform.node()}
    try:
        from serlib.experiments.protocol import run_protocol

        config = spec.config()
        prepared = _prepared(spec, config)
        table = run_protocol(config, prepared, folds=[spec.fold], seeds=[spec.seed], models=(spec.model,),
                             results=spec.results, tier1_name=spec.name or "tier1", retrain=spec.retrain,
                             progress=False)
        first = table.iloc[0]
        row.update(status="cached" if first["status"] == "cached" else "done", test_uar=float(first["test_uar"]),
                   path=first["path"])
    except Exception as err:  # recorded, the grid goes on
        from serlib.systems.reuse import StaleRunError
        from serlib.experiments.grid import missing_dependency

        if isinstance(err, StaleRunError):  # never a plain failure: the batch must stop before any page
            row.update(status="stale", error=" ".join(str(err).split()))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            return row

        row.update(status="failed", error=f"{type(err).__name__}: {' '.join(str(err).split())[:500]}",
                   missing_dependency=missing_dependency(err))
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def check_stale(specs: Sequence[RunSpec]) -> None:
    """Raise :class:`serlib.systems.reuse.StaleRunError` for the first run folder made from another request.

    Runs in the client before any task is submitted, from the scan alone (the
    data fingerprint is the scan's), so a stale folder stops the grid before
    any work; ``retrain`` specs are not checked (their folders are replaced).
    """
    from serlib.systems.reuse import make_request, reusable_run
    from serlib.core.runs import default_results_dir, run_dir
    from serlib.data.corpora import read_corpus
    from serlib.features.cache import data_fingerprint
    from serlib.features.prepared import locate_corpus
    from serlib.systems.registry import get_model

    fingerprints: dict[tuple, str] = {}
    for spec in specs:
        if spec.retrain:
            continue
        config = spec.config()
        config.seed = spec.seed
        key = (spec.corpus, spec.data_root, config.data.include_song)
        if key not in fingerprints:
            scan = read_corpus(spec.corpus, locate_corpus(spec.corpus, spec.data_root),
                               include_song=config.data.include_song)
            fingerprints[key] = data_fingerprint(scan.manifest)
        try:
            model = get_model(spec.model)
        except ValueError:
            continue  # an unknown system fails as its own row, like any other failing run
        name = spec.name or ("tier1" if spec.model == "tier1" else spec.model)
        folder = run_dir(spec.results or default_results_dir(), config.data.corpus, config.data.protocol, name,
                         spec.fold, spec.seed)
        reusable_run(folder, make_request(config.to_dict(), fingerprints[key], fold=spec.fold + 1,
                                          sections=model.sections, version=model.version), sections=model.sections)


_PREPARED: dict[tuple, Any] = {}
"""Prepared corpora of this worker process, by :meth:`RunSpec.cache_task`: loaded once per worker, not per run."""


def _prepared(spec: RunSpec, config) -> Any:
    from serlib.features.prepared import prepare

    key = spec.cache_task()
    if key not in _PREPARED:
        _PREPARED.clear()  # one corpus at a time per worker keeps memory bounded
        _PREPARED[key] = prepare(config, data_root=spec.data_root, cache_dir=spec.cache_dir, workers=1, progress=False)
    return _PREPARED[key]


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"local:{os.getpid()}"


def local_cluster_size() -> tuple[int, int]:
    """(workers, threads per worker) for a LocalCluster: one per GPU, else cores // $SERLIB_THREADS."""
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:  # pragma: no cover
        gpus = 0
    if gpus:
        return gpus, 1
    threads = max(1, int(os.environ.get("SERLIB_THREADS", 1) or 1))
    return max(1, (os.cpu_count() or 1) // threads), threads


@dataclass
class GridProgress:
    """Counts shown on the progress line."""

    total: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)

    def line(self, running: int) -> str:
        minutes = (time.perf_counter() - self.started) / 60
        return (f"[grid] {self.done + self.failed}/{self.total} finished ({self.failed} failed), {running} running, "
                f"{minutes:.1f} min")


def run_grid(specs: Sequence[RunSpec], *, scheduler: str | None = None, n_workers: int | None = None,
             threads_per_worker: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Run every spec on Dask (a LocalCluster unless ``scheduler`` or ``$SERLIB_SCHEDULER`` names one).

    Returns one row per run (``run``, ``status`` done/cached/failed, ``test_uar``,
    ``error``, ``worker``, ``host``, ``seconds``), in the order of ``specs``.
    """
    from distributed import Client, LocalCluster, as_completed

    specs = list(specs)
    if not specs:
        return pd.DataFrame(columns=["run", "status"])
    check_stale(specs)  # a stale run folder stops the grid before any worker starts
    scheduler = scheduler or os.environ.get("SERLIB_SCHEDULER") or None
    cluster = None
    if scheduler is None:
        workers, threads = local_cluster_size()
        cluster = LocalCluster(n_workers=n_workers or workers, threads_per_worker=threads_per_worker or threads,
                               processes=True, dashboard_address=":0", silence_logs=logging.ERROR)
    if cluster is not None:
        client = Client(cluster)
    else:
        try:  # an unreachable address is one line after a short wait, not three tracebacks after 30 s
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as err:
            raise ValueError(f"--scheduler {scheduler}: no Dask scheduler answers there "
                             f"({type(err).__name__}); start one (dask scheduler) or leave --scheduler out") from None
    env = {"SERLIB_THREADS": str(threads_per_worker or local_cluster_size()[1]), "OMP_NUM_THREADS": "1"}
    client.run(_set_env, env)
    try:
        if progress:
            board = client.dashboard_link if cluster is not None else "(see the scheduler)"
            print(f"[grid] {len(specs)} run(s) on {len(client.scheduler_info()['workers'])} worker(s); "
                  f"dashboard {board}", flush=True)
        caches = {key: client.submit(prepare_task, spec, key=f"prepare-{abs(hash(key))}", pure=False)
                  for key, spec in {s.cache_task(): s for s in specs}.items()}
        futures = {client.submit(run_task, spec, caches[spec.cache_task()], key=f"run-{i}-{spec.label}",
                                 pure=False): i for i, spec in enumerate(specs)}
        state = GridProgress(len(specs))
        rows: dict[int, dict[str, Any]] = {}
        for future in as_completed(futures):
            i = futures[future]
            try:
                rows[i] = future.result()
            except Exception as err:  # the cache task failed, or a worker died too often
                rows[i] = {"run": specs[i].label, "status": "failed",
                           "error": f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"}
            state.failed += rows[i]["status"] in ("failed", "stale")
            state.done += rows[i]["status"] not in ("failed", "stale")
            if progress:
                running = sum(1 for f in futures if not f.done())
                print(f"{state.line(min(running, len(client.scheduler_info()['workers'])))}  "
                      f"{rows[i]['run']}: {rows[i]['status']}", flush=True)
        return pd.DataFrame([rows[i] for i in range(len(specs))])
    except KeyboardInterrupt:
        print("[grid] interrupted: cancelling; every run folder is resumable, re-run the same command", flush=True)
        client.cancel(list(futures) if "futures" in locals() else [])
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _set_env(values: dict[str, str]) -> None:
    """A worker's set-up: the thread settings, and Ctrl-C left to the process that started the grid.

    Ctrl-C reaches every process of the terminal's group; a worker that took it
    would print its own KeyboardInterrupt traceback while the grid cancels it anyway.
    """
    import signal
    import threading

    os.environ.update(values)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def corpus_specs(corpus: str, models: Iterable[str], *, network_seeds: Sequence[int] = (0, 1, 2),
                 deterministic_seeds: Sequence[int] = (0,), folds: Sequence[int] | None = None,
                 **common: Any) -> list[RunSpec]:
    """Every run of a corpus's protocol for ``models``: networks and seeded heads get ``network_seeds``,
    deterministic systems (classical, linear encoder heads) ``deterministic_seeds``. ``folds`` are 0-based."""
    from serlib.data.corpora import read_corpus
    from serlib.data.splits import n_folds
    from serlib.features.prepared import locate_corpus
    from serlib.systems.registry import get_model

    probe = RunSpec(corpus=corpus, model="tier1", fold=0, seed=0, **common)
    config = probe.config()
    if folds is None:
        scan = read_corpus(corpus, locate_corpus(corpus, probe.data_root))
        folds = range(n_folds(scan.manifest, config.data.protocol, corpus=corpus))
    specs = []
    for model in models:
        seeds = network_seeds if get_model(model).seeded else deterministic_seeds
        specs += [RunSpec(corpus=corpus, model=model, fold=f, seed=s, **common) for s in seeds for f in folds]
    return specs


def failures(table: pd.DataFrame) -> list[str]:
    """``run: error`` for every failed run."""
    if "status" not in table or not (table["status"] == "failed").any():
        return []
    return [f"{r.run}: {r.error}" for r in table[table["status"] == "failed"].itertuples()]


def data_root() -> Path | None:
    root = os.environ.get("SERLIB_DATA")
    return Path(root) if root else None


def missing_dependency(err: BaseException) -> str | None:
    """The one-line reason when ``err`` means a system cannot run here (weights or a package absent), else None."""
    from serlib.features.encoders.weights import WhisperUnavailable
    from serlib.features.functionals import FunctionalsError
    from serlib.features.preprocess import DemucsUnavailable

    if isinstance(err, (WhisperUnavailable, DemucsUnavailable, ImportError)):
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if isinstance(err, FunctionalsError) and "not installed" in str(err):
        return str(err).splitlines()[0]
    return None


__all__ = ["RunSpec", "prepare_task", "run_task", "run_grid", "corpus_specs", "local_cluster_size", "failures",
           "GridProgress"]
