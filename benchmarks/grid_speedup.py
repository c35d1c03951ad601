"""Grid wall time, sequential vs a Dask LocalCluster, for one protocol of real data, as `make run` runs it.

    .venv/bin/python benchmarks/grid_speedup.py --corpus ravdess
    .venv/bin/python benchmarks/grid_speedup.py --corpus ravdess --results results --sequential-seed 1 --dask-seed 2

Times the Tier-1 runs of every fold of the corpus's primary protocol, one seed
per phase: first in one process (``make run SCHEDULER=none``: every core to
that process unless ``--sequential-threads``), then on a LocalCluster of
2 workers x 1 thread (``make run``). The feature cache is shared, so warm it
first (``serlib prepare``). With ``--results`` the run folders are kept there
(use seeds that do not exist yet, so both phases train); without it they go to
a scratch folder. Early stopping makes epochs differ between seeds, so the
speed-up is reported per wall time and per epoch trained.
Saves ``results/benchmarks/grid_speedup.json`` with the provenance.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from serlib.experiments import batch
from serlib.core.runs import PROJECT_ROOT, save_benchmark


def epochs_trained(results: Path, corpus: str, seed: int) -> int:
    """Epochs in the ``history.csv`` of every Tier-1 run folder of one seed."""
    histories = results.glob(f"{corpus}/*/tier1/fold-*/seed-{seed}/history.csv")
    return sum(len(pd.read_csv(path)) for path in histories)


def timed(scheduler: str | None, seed: int, threads: int, results: Path, corpus: str) -> dict:
    """Run the grid of one seed; wall seconds and epochs trained."""
    os.environ["SERLIB_THREADS"] = str(threads)
    t0 = time.perf_counter()
    outcome = batch.run_corpus_grid(corpus, models=("tier1",), seeds=[seed], results=results, progress=False,
                             scheduler=scheduler)
    seconds = time.perf_counter() - t0
    if outcome.failed:
        raise SystemExit(f"grid failed: {outcome.failed}")
    epochs = epochs_trained(results, corpus, seed)
    return {"seed": seed, "threads": threads, "seconds": round(seconds, 1), "epochs_trained": epochs,
            "seconds_per_epoch": round(seconds / max(epochs, 1), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--results", type=Path, help="keep the run folders here (default: a scratch folder)")
    parser.add_argument("--sequential-seed", type=int, default=0)
    parser.add_argument("--dask-seed", type=int, default=0)
    parser.add_argument("--sequential-threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads of the one sequential process (default: every core)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sequential_root = args.results or Path(scratch) / "sequential"
        dask_root = args.results or Path(scratch) / "dask"
        sequential = timed(None, args.sequential_seed, args.sequential_threads, sequential_root, args.corpus)
        local = timed("local", args.dask_seed, 1, dask_root, args.corpus)
    numbers = {"corpus": args.corpus, "model": "tier1", "workers": 2, "threads_per_worker": 1,
               "sequential": sequential, "dask_local_cluster": local,
               "speedup_wall": round(sequential["seconds"] / local["seconds"], 2),
               "speedup_per_epoch": round(sequential["seconds_per_epoch"] / local["seconds_per_epoch"], 2),
               "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    print(numbers)
    save_benchmark(PROJECT_ROOT / "results" / "benchmarks" / "grid_speedup.json", numbers)


if __name__ == "__main__":
    main()
