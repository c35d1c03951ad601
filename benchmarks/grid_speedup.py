"""Grid wall time, sequential vs a Dask LocalCluster, for one protocol of real data, as `make run` runs it.

    .venv/bin/python benchmarks/grid_speedup.py --corpus ravdess --epochs 30

Times the Tier-1 runs of every fold of the corpus's primary protocol (seed 0),
first in one process (one thread), then on a LocalCluster of 2 workers x 1
thread, each into a fresh results folder (the feature cache is warmed first and
shared). Saves ``results/benchmarks/grid_speedup.json`` with the provenance.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from serlib import batch
from serlib.runs import PROJECT_ROOT, save_benchmark


def timed(scheduler: str | None, results: Path, args) -> float:
    t0 = time.perf_counter()
    outcome = batch.run_grid(args.corpus, models=("tier1",), seeds=[0], epochs=args.epochs, results=results,
                             progress=False, scheduler=scheduler)
    if outcome.failed:
        raise SystemExit(f"grid failed: {outcome.failed}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("SERLIB_THREADS", "1")
    with tempfile.TemporaryDirectory() as scratch:
        sequential = timed(None, Path(scratch) / "sequential", args)
        local = timed("local", Path(scratch) / "dask", args)
    numbers = {"corpus": args.corpus, "epochs": args.epochs, "seeds": 1, "threads_per_worker": 1,
               "sequential_seconds": round(sequential, 1), "dask_2_workers_seconds": round(local, 1),
               "speedup": round(sequential / local, 2), "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    print(numbers)
    save_benchmark(PROJECT_ROOT / "results" / "benchmarks" / "grid_speedup.json", numbers)


if __name__ == "__main__":
    main()
