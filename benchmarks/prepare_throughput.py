"""Preparation throughput on the shared RAVDESS copy: cold cache vs warm cache, as a function and as a command.

    .venv/bin/python benchmarks/prepare_throughput.py [--data-root ../shared/data] [--workers 2] [--no-cold-command]

The function (:func:`serlib.features.prepared.prepare`, in this process). Cold: an empty cache folder,
every clip read, resampled, VAD-trimmed, normalised and turned into 40 MFCC (no denoising;
base features, then the cached augmented copies separately). Warm: the same call again.

The command, as a user runs it: ``serlib prepare <corpus> --config configs/<corpus>.yaml``,
each run a new process, so its times include starting Python and importing what the command
needs. Warm: the median of ``--repeats`` runs on the cache the function built. Cold: one run on
another empty cache folder (base features and augmented copies together, as the command does
them; ``--no-cold-command`` skips it, it costs as much as the function's cold runs).

Prints clips/s and the real-time factor (audio seconds per wall-clock second).
Targets on 2 cores: cold at least 60x real time (under 60 s for 1434 clips / 57 min), warm under 2 s
(function), warm command under 1.5 s end to end (issue 13).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serlib.config import load_config
from serlib.features.prepared import prepare
from serlib.core.runs import default_results_dir, save_benchmark


def serlib_command() -> list[str]:
    """The console script beside this interpreter (what ``make env`` installs), else ``python -m serlib.cli``."""
    script = Path(sys.executable).parent / "serlib"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "serlib.cli"]


def time_command(argv: list[str]) -> float:
    """Wall-clock seconds of one run of ``serlib`` ``argv`` in a new process (raises when it fails)."""
    t0 = time.perf_counter()
    done = subprocess.run(serlib_command() + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"serlib {' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("SERLIB_DATA", "../shared/data"))
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=5, help="runs of the warm command (the median is recorded)")
    parser.add_argument("--no-cold-command", action="store_true", help="skip timing the command on an empty cache")
    parser.add_argument("--command-only", action="store_true",
                        help="time only the command, as a user runs it: once on an empty cache, then warm")
    parser.add_argument("--out", default=str(default_results_dir() / "benchmarks" / "prepare_throughput.json"),
                        help="JSON written with the numbers and their provenance (commit, machine, threads, date)")
    args = parser.parse_args()
    config_path = f"configs/{args.corpus}.yaml"
    config = load_config(config_path)
    if args.command_only:
        return command_only(args, config_path)
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as cold_cache:
        t0 = time.perf_counter()
        cold = prepare(config, data_root=args.data_root, cache_dir=cache, workers=args.workers, augment=False, progress=False)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepare(config, data_root=args.data_root, cache_dir=cache, workers=args.workers, progress=False)
        t_aug = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = prepare(config, data_root=args.data_root, cache_dir=cache, workers=args.workers, progress=False)
        t_warm = time.perf_counter() - t0

        command = ["prepare", args.corpus, "--config", config_path, "--data-root", args.data_root,
                   "--workers", str(args.workers), "--quiet"]
        warm_runs = [time_command(command + ["--cache-dir", cache]) for _ in range(args.repeats)]
        cold_command = None if args.no_cold_command else time_command(command + ["--cache-dir", cold_cache])
    s = cold.features.summary()
    audio_s = s["hours"] * 3600
    out = {
        "corpus": args.corpus, "clips": s["usable"], "audio_minutes": round(audio_s / 60, 1), "workers": args.workers,
        "cold_seconds": round(t_cold, 2), "cold_clips_per_s": round(s["usable"] / t_cold, 1),
        "cold_realtime_factor": round(audio_s / t_cold, 1),
        "augmented_copies": config.wave_augment.copies, "augment_seconds": round(t_aug, 2),
        "warm_seconds": round(t_warm, 3), "warm_recomputed": warm.features.computed,
        "command": f"serlib prepare {args.corpus} --config {config_path} --workers {args.workers} --quiet",
        "command_warm_median_seconds": round(statistics.median(warm_runs), 3),
        "command_warm_seconds": [round(t, 3) for t in warm_runs],
        "command_cold_seconds": None if cold_command is None else round(cold_command, 2),
        "command_cold_includes": "base features and augmented copies, process start and imports",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=2))
    save_benchmark(args.out, out)


def command_only(args: argparse.Namespace, config_path: str) -> None:
    """``serlib prepare`` cold (empty cache: base features and augmented copies) and warm, each a new process."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as cache:
        command = ["prepare", args.corpus, "--config", config_path, "--data-root", args.data_root,
                   "--workers", str(args.workers), "--quiet", "--cache-dir", cache]
        cold = time_command(command)
        warm_runs = [time_command(command) for _ in range(args.repeats)]
        manifest = pd.read_csv(next(Path(cache).glob(f"{args.corpus}/*/manifest.csv")))
    out = {
        "corpus": args.corpus, "clips": int(len(manifest)), "workers": args.workers,
        "command": f"serlib prepare {args.corpus} --config {config_path} --workers {args.workers} --quiet",
        "command_cold_seconds": round(cold, 1), "command_cold_clips_per_s": round(len(manifest) / cold, 1),
        "command_cold_includes": f"base features and {load_config(config_path).wave_augment.copies} augmented "
                                 "copies per clip, process start and imports",
        "command_warm_median_seconds": round(statistics.median(warm_runs), 3),
        "command_warm_seconds": [round(t, 3) for t in warm_runs],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=2))
    save_benchmark(args.out, out)


if __name__ == "__main__":
    main()
