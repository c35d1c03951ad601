"""The Whisper-base encoder run by CTranslate2 (last layer only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serlib.features.encoders.base import WhisperBackend, resolve_threads
from serlib.features.encoders.weights import WhisperUnavailable, locate_whisper

COMPUTE_TYPES = ("int8", "int8_float32", "int16", "float32")


class CT2Whisper(WhisperBackend):
    """``ctranslate2.models.Whisper(...).encode``: the output of the last encoder layer (after its final LayerNorm).

    Parameters
    ----------
    compute_type
        ``int8`` (default, fastest; weights quantised at load) or ``float32``
        (the stored float16 weights in float32 arithmetic; the reference the
        torch encoder is tested against).
    threads
        CTranslate2 ``intra_threads`` (default: :func:`resolve_threads`).
    cache_dir
        Cache root used to find/join the weights (see :func:`locate_whisper`).
    """

    name = "ct2"
    n_layers = 1

    def __init__(self, compute_type: str = "int8", threads: int | None = None, cache_dir: str | Path | None = None) -> None:
        if compute_type not in COMPUTE_TYPES:
            raise ValueError(f"unknown compute_type {compute_type!r}; expected one of {', '.join(COMPUTE_TYPES)}")
        try:
            import ctranslate2
        except ImportError:
            raise WhisperUnavailable("ctranslate2 is not installed; run `make env` (or `pip install ctranslate2`)") from None
        weights = locate_whisper(cache_dir)
        self._ct2 = ctranslate2
        self.compute_type = compute_type
        self.threads = resolve_threads(threads)
        self.sha256 = weights.sha256
        self.model = ctranslate2.models.Whisper(
            str(weights.path), device="cpu", compute_type=compute_type, intra_threads=self.threads, inter_threads=1
        )

    def encode_mel(self, mel: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(mel, dtype=np.float32)[None])
        out = self.model.encode(self._ct2.StorageView.from_array(x), to_cpu=True)
        return np.array(out, dtype=np.float32)  # a copy; (1, frames // 2, 512): the batch axis is the single layer

    def describe(self) -> dict:
        return {**super().describe(), "compute_type": self.compute_type}
