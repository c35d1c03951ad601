"""Wall time of one RAVDESS fold of Tier-1+, timed as a user runs it (the command, not the function).

    .venv/bin/python benchmarks/tier1plus_fold.py [--fold 1] [--seed 0] [--threads N] [--results DIR]

Runs ``serlib train --config configs/ravdess.yaml --model tier1plus --fold F --seeds S``
in a subprocess with ``--threads`` torch threads (default: ``$SERLIB_THREADS``, else
every core, as ``serlib train`` does) and times it, after warming the feature
cache with ``serlib prepare`` (timed separately). The run goes into ``--results`` (default: a scratch folder, so the
project's results are untouched; pass ``results`` to keep the run as one of
the report's). Target: a fold in at most 5 minutes on 2 cores. Saves
``results/benchmarks/tier1plus_fold.json`` (``tier1plus_fold_threads<N>.json``
with ``--threads N``) with the provenance and the load average, since other
jobs on the machine slow it down.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serlib.core.runs import PROJECT_ROOT, save_benchmark

RECIPE = ("--config", "configs/ravdess.yaml", "--overlay", "configs/models/tier1plus.yaml")


def timed(args: list[str], env: dict[str, str]) -> float:
    """Seconds the command took; exits with its output when it fails."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "serlib.cli", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch threads (default: $SERLIB_THREADS, else every core); "
                                                    "saved as tier1plus_fold_threads<N>.json")
    parser.add_argument("--results", help="where the run goes (default: a scratch folder)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    threads = args.threads or int(env.get("SERLIB_THREADS") or os.cpu_count() or 1)
    env["SERLIB_THREADS"] = str(threads)
    prepare_s = timed(["prepare", "ravdess", *RECIPE, "--quiet"], env)
    with tempfile.TemporaryDirectory() as scratch:
        results = Path(args.results).resolve() if args.results else Path(scratch)
        run = results / "ravdess" / "emobox" / "tier1plus" / f"fold-{args.fold}" / f"seed-{args.seed}"
        if (run / "metrics.json").exists():
            raise SystemExit(f"{run} is already finished: timing it would time a cached run; choose another fold/seed")
        load_before = os.getloadavg()[0]
        train_s = timed(["train", "--config", "configs/ravdess.yaml", "--model", "tier1plus", "--fold",
                         str(args.fold), "--seeds", str(args.seed), "--results", str(results), "--quiet"], env)
        metrics = json.loads((run / "metrics.json").read_text())
    numbers = {
        "command": f"serlib train --config configs/ravdess.yaml --model tier1plus --fold {args.fold} --seeds {args.seed}",
        "torch_threads": threads, "prepare_warm_seconds": round(prepare_s, 1), "train_seconds": round(train_s, 1),
        "train_minutes": round(train_s / 60, 2), "epochs_run": metrics["epochs_run"],
        "train_clips": metrics["sizes"]["train"], "target_minutes": 5.0, "met": train_s <= 300,
        "load_average_1min_before": round(load_before, 2), "load_average_1min_after": round(os.getloadavg()[0], 2),
    }
    print(numbers)
    name = f"tier1plus_fold_threads{threads}.json" if args.threads else "tier1plus_fold.json"
    save_benchmark(PROJECT_ROOT / "results" / "benchmarks" / name, numbers)


if __name__ == "__main__":
    main()
