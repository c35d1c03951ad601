"""Preparation throughput on the shared RAVDESS copy: cold cache vs warm cache.

    .venv/bin/python benchmarks/prepare_throughput.py [--data-root ../shared/data] [--workers 2]

Cold: an empty cache folder, every clip read, resampled, VAD-trimmed, normalised and turned into
40 MFCC (no denoising; base features, then the cached augmented copies separately). Warm: the
same call again. Prints clips/s and the real-time factor (audio seconds per wall-clock second).
Targets on 2 cores: cold at least 60x real time (under 60 s for 1434 clips / 57 min), warm under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from serlib.config import load_config
from serlib.experiment import prepare
from serlib.runs import default_results_dir, save_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("SERLIB_DATA", "../shared/data"))
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=str(default_results_dir() / "benchmarks" / "prepare_throughput.json"),
                        help="JSON written with the numbers and their provenance (commit, machine, threads, date)")
    args = parser.parse_args()
    config = load_config(f"configs/{args.corpus}.yaml")
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        cold = prepare(config, data_root=args.data_root, cache_dir=cache, workers=args.workers, augment=False, progress=False)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepare(config, data_root=args.data_root, cache_dir=cache, workers=args.workers, progress=False)
        t_aug = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = prepare(config, data_root=args.data_root, cache_dir=cache, workers=args.workers, progress=False)
        t_warm = time.perf_counter() - t0
    s = cold.features.summary()
    audio_s = s["hours"] * 3600
    out = {
        "corpus": args.corpus, "clips": s["usable"], "audio_minutes": round(audio_s / 60, 1), "workers": args.workers,
        "cold_seconds": round(t_cold, 2), "cold_clips_per_s": round(s["usable"] / t_cold, 1),
        "cold_realtime_factor": round(audio_s / t_cold, 1),
        "augmented_copies": config.wave_augment.copies, "augment_seconds": round(t_aug, 2),
        "warm_seconds": round(t_warm, 3), "warm_recomputed": warm.features.computed,
    }
    print(json.dumps(out, indent=2))
    save_benchmark(args.out, out)


if __name__ == "__main__":
    main()
