"""Throughput of the frozen Whisper-base encoder, as the report's feature step runs it.

For each backend (torch: every layer; ct2: CTranslate2 int8, last layer) and each
input length (own, pad10, pad30) it encodes the same sample of real clips into a
fresh cache with :func:`serlib.features.encoders.pooled.compute_embeddings` (cold), then loads
them again (cached), and reports clips/s and times real time. With ``--whole``
it also times the whole corpus in the report's mode, cold into a scratch cache
and then cached. Results go to ``results/benchmarks/encoder_throughput.json``
with the provenance of the machine that measured them.

    .venv/bin/python benchmarks/encoder_throughput.py --corpus ravdess --clips 30 [--whole]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from serlib.data.corpora import read_corpus
from serlib.features.encoders.pooled import compute_embeddings
from serlib.features.prepared import locate_corpus
from serlib.core.runs import PROJECT_ROOT, save_benchmark

SETTINGS = [("torch", "own"), ("ct2", "own"), ("torch", "pad10"), ("ct2", "pad10"), ("ct2", "pad30")]


def timed(manifest, backend: str, mode: str, cache: Path, threads: int) -> dict:
    t0 = time.perf_counter()
    es = compute_embeddings(manifest, backend=backend, mode=mode, cache_dir=cache, threads=threads)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    compute_embeddings(manifest, backend=backend, mode=mode, cache_dir=cache, threads=threads)
    cached = time.perf_counter() - t0
    audio = float(np.nansum(es.audio_seconds))
    return {"backend": backend, "mode": mode, "clips": len(manifest), "audio_seconds": round(audio, 1),
            "cold_seconds": round(cold, 2), "cached_seconds": round(cached, 3),
            "clips_per_second": round(len(manifest) / cold, 2), "times_real_time": round(audio / cold, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--clips", type=int, default=30, help="clips in the per-setting sample")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("SERLIB_THREADS", 1)))
    parser.add_argument("--whole", action="store_true", help="also time the whole corpus (torch, own length)")
    args = parser.parse_args()
    manifest = read_corpus(args.corpus, locate_corpus(args.corpus)).manifest
    sample = manifest.iloc[np.linspace(0, len(manifest) - 1, args.clips).astype(int)].reset_index(drop=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for backend, mode in SETTINGS:
            rows.append(timed(sample, backend, mode, Path(scratch) / f"{backend}-{mode}", args.threads))
            print(rows[-1], flush=True)
        if args.whole:
            whole = timed(manifest, "torch", "own", Path(scratch) / "whole", args.threads)
            rows.append({**whole, "whole_corpus": True})
            print(rows[-1], flush=True)
    out = PROJECT_ROOT / "results" / "benchmarks" / "encoder_throughput.json"
    save_benchmark(out, {"corpus": args.corpus, "threads": args.threads, "settings": rows,
                         "load_average_1min_at_end": round(os.getloadavg()[0], 2)})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
