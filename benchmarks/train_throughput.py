"""Training and inference throughput of the base Tier-1 config on two CPU cores.

    .venv/bin/python benchmarks/train_throughput.py [--epochs 3] [--cremad-scale]

1. RAVDESS (shared copy), EmoBox fold 1, base config: seconds per epoch over a few epochs,
   projected to a 30-epoch fold, and inference throughput (clips/s) on the test speakers.
2. With --cremad: the real CREMA-D copy, fold 1 of its actor-independent 5-fold protocol, base
   Tier-1 config: seconds per epoch (median over --epochs) and the projected 30-epoch run.
3. With --cremad-scale: generated audio at CREMA-D scale (all 91 actors x 6 emotions x 12 sentences,
   2.5 s each, in the CREMA-D layout), seconds per epoch, projected to 5,500 training clips, seconds per epoch and the projected 30-epoch run.
Targets: < 15 s per RAVDESS epoch, a fold < 8 min, >= 200 clips/s inference, a 30-epoch
CREMA-D-scale run < 30 min.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from serlib.config import load_config
from serlib.features.prepared import prepare, split_for
from serlib.systems.tier1.predictor import Predictor
from serlib.core.runs import default_results_dir, save_benchmark
from serlib.data.synthetic import write_synthetic_corpus
from serlib.systems.tier1.trainer import fit


def epoch_timing(prepared, config, epochs: int, out: Path) -> dict:
    config.train.epochs = epochs
    assignment = split_for(prepared.features, config, 0)
    t0 = time.perf_counter()
    metrics = fit(prepared.features, assignment, config, out, progress=False)
    wall = time.perf_counter() - t0
    import pandas as pd

    hist = pd.read_csv(out / "history.csv")
    per_epoch = float(hist["seconds"].median())
    return {"train_clips": metrics["sizes"]["train"], "epochs_timed": epochs, "seconds_per_epoch": round(per_epoch, 2),
            "projected_30_epoch_minutes": round(30 * per_epoch / 60, 1), "wall_seconds": round(wall, 1),
            "checkpoint": str(next(out.glob("best_uar_*.pt"))), "test_ids": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("SERLIB_DATA", "../shared/data"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cremad", action="store_true", help="also time epochs on the real CREMA-D copy")
    parser.add_argument("--cremad-scale", action="store_true")
    parser.add_argument("--out", default=str(default_results_dir() / "benchmarks" / "train_throughput.json"),
                        help="JSON written with the numbers and their provenance (commit, machine, threads, date)")
    args = parser.parse_args()
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = load_config("configs/ravdess.yaml")
        prepared = prepare(config, data_root=args.data_root, progress=False)
        r = epoch_timing(prepared, config, args.epochs, tmp / "ravdess")
        predictor = Predictor.load(r.pop("checkpoint"))
        arrays = list(prepared.features.features.values())
        predictor.predict_arrays(arrays[:64])  # warm-up
        t0 = time.perf_counter()
        predictor.predict_arrays(arrays)
        r["inference_clips_per_s"] = round(len(arrays) / (time.perf_counter() - t0), 1)
        r.pop("test_ids")
        report["ravdess_emobox_fold1"] = r
        if args.cremad:
            cfg = load_config("configs/cremad.yaml")
            t0 = time.perf_counter()
            prep = prepare(cfg, data_root=args.data_root, progress=False)
            prep_s = time.perf_counter() - t0
            c = epoch_timing(prep, cfg, args.epochs, tmp / "cremad-real")
            c.pop("checkpoint"), c.pop("test_ids")
            c["prepare_warm_seconds"] = round(prep_s, 1)
            c["previous_system_hours"] = 54
            report["cremad_real_fold1"] = c
        if args.cremad_scale:
            t0 = time.perf_counter()
            root = write_synthetic_corpus("cremad", tmp / "data" / "cremad", n_speakers=91, per_class=12, seconds=2.5)
            cfg = load_config("configs/cremad.yaml")
            prep = prepare(cfg, data_root=root, cache_dir=tmp / "cache", progress=False)
            prep_s = time.perf_counter() - t0
            c = epoch_timing(prep, cfg, 2, tmp / "cremad")
            c.pop("checkpoint"), c.pop("test_ids")
            c["generate_and_prepare_seconds"] = round(prep_s, 1)
            # CREMA-D's real speaker split trains on about 5,500 clips: scale the measured epoch to that
            c["projected_30_epoch_minutes_at_5500_clips"] = round(30 * c["seconds_per_epoch"] * 5500 / c["train_clips"] / 60, 1)
            c["previous_system_hours"] = 54
            c["speedup_vs_previous"] = round(54 * 60 / c["projected_30_epoch_minutes_at_5500_clips"], 0)
            report["cremad_scale_generated"] = c
    print(json.dumps(report, indent=2))
    save_benchmark(args.out, report)


if __name__ == "__main__":
    main()
