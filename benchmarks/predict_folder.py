"""Throughput of ``serlib predict`` on a folder of clips against the encoder's own throughput on the same clips.

    .venv/bin/python benchmarks/predict_folder.py [--clips 500] [--model ravdess-mlp] [--data-root ../shared/data]

1. The encoder alone: :func:`serlib.features.encoders.pooled.compute_embeddings` on the
   first ``--clips`` RAVDESS clips into a fresh scratch cache (the report's feature
   step: audio read, log-mel, every layer pooled), in this process, clips/s.
2. The command a user runs: ``serlib predict --model <model> <folder> --output labels.csv``
   on a folder of links to the same clips, a new process, timed end to end (start-up,
   weights check, every clip read, encoded and labelled, the CSV written), clips/s.

The ratio of the two says what predict adds around the encoder. The machine's load
average is recorded with the figures. Saved with :func:`serlib.core.runs.save_benchmark`
to ``results/benchmarks/predict_folder.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serlib.core.runs import PROJECT_ROOT, save_benchmark
from serlib.data.corpora import read_corpus
from serlib.features.encoders.pooled import compute_embeddings
from serlib.features.prepared import locate_corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=500)
    parser.add_argument("--model", default="ravdess-mlp")
    parser.add_argument("--data-root", default=os.environ.get("SERLIB_DATA"))
    args = parser.parse_args()
    manifest = read_corpus("ravdess", locate_corpus("ravdess", args.data_root)).manifest.head(args.clips)
    threads = int(os.environ.get("SERLIB_THREADS") or os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="serlib-bench-") as tmp:
        t0 = time.perf_counter()
        compute_embeddings(manifest, backend="torch", mode="own", cache_dir=Path(tmp) / "cache", threads=threads)
        encoder_seconds = time.perf_counter() - t0
        folder = Path(tmp) / "clips"
        folder.mkdir()
        for path in manifest["path"]:
            (folder / Path(path).name).symlink_to(path)
        serlib = Path(sys.executable).parent / "serlib"
        t0 = time.perf_counter()
        done = subprocess.run([str(serlib), "predict", "--model", args.model, str(folder), "--output",
                               str(Path(tmp) / "labels.csv")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        predict_seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"serlib predict failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        labelled = sum(1 for _ in open(Path(tmp) / "labels.csv")) - 1
    encoder_rate, predict_rate = len(manifest) / encoder_seconds, len(manifest) / predict_seconds
    numbers = {
        "clips": len(manifest), "model": args.model, "threads": threads,
        "encoder_alone": {"what": "compute_embeddings, torch backend, own length, fresh cache, in-process",
                          "seconds": round(encoder_seconds, 1), "clips_per_second": round(encoder_rate, 2)},
        "serlib_predict_folder": {"command": f"serlib predict --model {args.model} FOLDER --output labels.csv",
                                  "seconds": round(predict_seconds, 1), "clips_per_second": round(predict_rate, 2),
                                  "clips_labelled": labelled},
        "predict_over_encoder": round(predict_rate / encoder_rate, 3),
        "required": "predict within 20 % of the encoder's own throughput (ratio >= 0.8)",
        "meets_required": bool(predict_rate / encoder_rate >= 0.8),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    out = save_benchmark(PROJECT_ROOT / "results" / "benchmarks" / "predict_folder.json", numbers)
    print(f"{out}: encoder {encoder_rate:.1f} clips/s, predict {predict_rate:.1f} clips/s "
          f"(ratio {predict_rate / encoder_rate:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
