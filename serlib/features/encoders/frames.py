"""Frame-level frozen-encoder features per clip (Whisper-base, every layer), cached on disk.

What the attentive head (:mod:`serlib.systems.whisper_attention`) reads: instead of
pooling each clip to mean + std as :mod:`serlib.features.encoders.pooled` does, the encoder
frames that hold audio are kept, every hidden state of the torch backend
(front end + 6 blocks), averaged over ``stride`` consecutive frames (50 Hz /
``stride``) and stored as float16::

    <cache>/<corpus>/whisper-frames/<key>/
        chunk-00000.npz ...   utt_ids, lengths, frames (sum of lengths, layers, 512), seconds, failed clips
        meta.json             written last

The key hashes what :func:`serlib.features.encoders.pooled.embedding_key` hashes plus the
stride and storage type. Chunks, resumption and quarantine work as for the
pooled cache (the helpers are shared). Full-length RAVDESS at stride 2 takes
about 1 GB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serlib.features.encoders import WhisperBackend, locate_whisper, make_encoder
from serlib.features.encoders.pooled import (
    LAYERS,
    cache_folder,
    cache_root,
    check_request,
    chunk_arrays,
    chunk_status,
    encode_rows,
    encoder_identity,
    fill_chunks,
    manifest_fingerprint,
    write_meta,
)

FRAME_DIM = 512
STORAGE = "float16"


@dataclass
class FrameSet:
    """Encoder frames of a manifest: clip ``i`` is ``frames[offsets[i]:offsets[i + 1]]`` (empty when quarantined)."""

    manifest: pd.DataFrame  # the input rows in their order, plus ``status``
    frames: np.ndarray  # (total frames, n_layers, 512) float16
    offsets: np.ndarray  # (n_clips + 1,) int64
    quarantine: pd.DataFrame
    encoder: dict[str, Any]
    path: Path | None = None
    key: str = ""
    seconds: float = 0.0
    computed: int = 0

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the usable rows."""
        return (self.manifest["status"] == "ok").to_numpy()

    @property
    def lengths(self) -> np.ndarray:
        """Frames per clip (0 for quarantined clips)."""
        return np.diff(self.offsets)

    @property
    def n_layers(self) -> int:
        return int(self.frames.shape[1])

    def clip(self, i: int) -> np.ndarray:
        """``(frames, n_layers, 512)`` of manifest row ``i``."""
        return self.frames[self.offsets[i] : self.offsets[i + 1]]


def downsample(frames: np.ndarray, stride: int) -> np.ndarray:
    """``(layers, time, dim)`` -> ``(ceil(time / stride), layers, dim)``: the mean of each run of ``stride`` frames."""
    steps = frames.shape[1]
    starts = np.arange(0, steps, stride)
    counts = np.minimum(stride, steps - starts).astype(np.float32)
    sums = np.add.reduceat(np.asarray(frames, dtype=np.float32), starts, axis=1)
    return np.ascontiguousarray((sums / counts[None, :, None]).transpose(1, 0, 2))


def _encode_frames_chunk(rows: pd.DataFrame, encoder: WhisperBackend, mode: str, stride: int,
                         bar) -> dict[str, np.ndarray]:
    encoded = encode_rows(rows, lambda wave: downsample(encoder.frames(wave, mode), stride), bar)
    clips = encoded["outputs"]
    frames = (np.concatenate(clips).astype(STORAGE) if clips
              else np.zeros((0, encoder.n_layers, FRAME_DIM), STORAGE))
    return chunk_arrays(encoded, frames=frames, lengths=np.array([len(c) for c in clips], dtype=np.int64))


def compute_frame_embeddings(
    manifest: pd.DataFrame,
    *,
    mode: str = "own",
    stride: int = 2,
    cache_dir: str | Path | None = None,
    encoder: WhisperBackend | None = None,
    chunk_size: int = 200,
    threads: int | None = None,
    progress: bool = False,
) -> FrameSet:
    """Every layer's encoder frames of every clip of ``manifest`` (torch backend), from the cache when present.

    Parameters
    ----------
    manifest
        Rows with ``utt_id`` and ``path`` (``corpus`` names the cache folder).
    mode
        Input length, one of :data:`serlib.features.encoders.MODES`.
    stride
        Consecutive 50 Hz frames averaged into one stored frame (1: keep 50 Hz).
    cache_dir, encoder, chunk_size, threads, progress
        As for :func:`serlib.features.encoders.pooled.compute_embeddings`.

    Raises
    ------
    ValueError
        Unknown mode, a stride below 1, a non-torch ``encoder``, or a bad manifest.
    serlib.features.encoders.WhisperUnavailable
        The encoder weights are missing or do not verify.
    """
    start = time.perf_counter()
    check_request(manifest, "torch", mode, encoder, chunk_size)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    root = cache_root(cache_dir)
    sha = encoder.sha256 if encoder is not None else locate_whisper(root).sha256
    identity = {**encoder_identity("torch", sha, None, mode), "frames": {"stride": stride, "storage": STORAGE}}
    key, corpus, folder = cache_folder(manifest, root, "whisper-frames", identity)

    def encode_chunk(rows: pd.DataFrame, bar) -> dict[str, np.ndarray]:
        nonlocal encoder
        if encoder is None:
            encoder = make_encoder("torch", threads=threads, cache_dir=root)
        return _encode_frames_chunk(rows, encoder, mode, stride, bar)

    chunks, computed = fill_chunks(manifest, folder, chunk_size, encode_chunk,
                                   progress_desc=f"whisper frames {mode}" if progress else None)
    frames, offsets = _assemble(manifest, chunks)
    status, quarantine = chunk_status(manifest, chunks)
    write_meta(folder, computed, key=key, corpus=corpus, encoder=identity, fingerprint=manifest_fingerprint(manifest),
               clips=int(len(manifest)), usable=int((status == "ok").sum()), quarantined=len(quarantine),
               frames=int(len(frames)))
    return FrameSet(manifest=manifest.assign(status=status), frames=frames, offsets=offsets, quarantine=quarantine,
                    encoder=identity, path=folder, key=key, seconds=time.perf_counter() - start, computed=computed)


def _assemble(manifest: pd.DataFrame, chunks: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """One frame array in manifest order and its offsets, from the chunks (in ``utt_id`` order)."""
    where: dict[str, tuple[int, int, int]] = {}  # utt_id -> (chunk, start, length)
    for c, chunk in enumerate(chunks):
        starts = np.concatenate([[0], np.cumsum(chunk["lengths"])])
        for u, s, n in zip(chunk["utt_ids"], starts, chunk["lengths"]):
            where[str(u)] = (c, int(s), int(n))
    lengths = np.array([where.get(str(u), (0, 0, 0))[2] for u in manifest["utt_id"]], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n_layers = next((ch["frames"].shape[1] for ch in chunks if len(ch["frames"])), LAYERS["torch"])
    frames = np.empty((int(offsets[-1]), n_layers, FRAME_DIM), dtype=STORAGE)
    for i, u in enumerate(manifest["utt_id"]):
        if str(u) in where:
            c, s, n = where[str(u)]
            frames[offsets[i] : offsets[i] + n] = chunks[c]["frames"][s : s + n]
    return frames, offsets


__all__ = ["FrameSet", "compute_frame_embeddings", "downsample"]
