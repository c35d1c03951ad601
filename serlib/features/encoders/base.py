"""What every Whisper encoder backend shares: windows in, audio frames out, mean + std pooling."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from serlib.features.encoders.logmel import HOP, MAX_MEL_FRAMES, long_mel_windows, mel_windows

D_MODEL = 512
POOLED_DIM = 2 * D_MODEL


def resolve_threads(threads: int | None) -> int:
    """``threads`` if positive, else ``$SERLIB_THREADS`` if set, else every core."""
    return int(threads or 0) or int(os.environ.get("SERLIB_THREADS", 0) or 0) or os.cpu_count() or 1


def pool_stats(frames: np.ndarray) -> np.ndarray:
    """Mean and (population) standard deviation over time.

    Parameters
    ----------
    frames
        ``(layers, time, dim)``.

    Returns
    -------
    numpy.ndarray
        ``(layers, 2 * dim)`` float32: ``[mean, std]`` per layer.
    """
    x = np.asarray(frames, dtype=np.float64)
    return np.concatenate([x.mean(axis=1), x.std(axis=1)], axis=1).astype(np.float32)


class WhisperBackend(ABC):
    """A frozen Whisper-base encoder.

    Subclasses implement :meth:`encode_mel`; :meth:`frames` and :meth:`pooled`
    apply an input-length mode (:data:`serlib.features.encoders.logmel.MODES`), keep only
    the encoder frames that hold audio and pool them.
    """

    name: str = ""
    n_layers: int = 1  # hidden states returned per frame
    sha256: str = ""  # of the model.bin the weights came from

    @abstractmethod
    def encode_mel(self, mel: np.ndarray) -> np.ndarray:
        """``(80, frames)`` log-mel (even ``frames`` <= 3000) -> ``(n_layers, frames // 2, 512)`` float32."""

    def frames(self, wave: np.ndarray, mode: str = "own") -> np.ndarray:
        """Encoder frames of the audio of a 16 kHz clip: ``(n_layers, ceil(n_samples / 320), 512)`` float32."""
        parts = [self.encode_mel(w.mel)[:, : w.audio_frames] for w in mel_windows(wave, mode)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def pooled(self, wave: np.ndarray, mode: str = "own") -> np.ndarray:
        """Mean + std of the audio frames of a 16 kHz clip: ``(n_layers, 1024)`` float32.

        A clip of up to 30 s is one encoder window, pooled as it always was. A
        longer one in ``own`` mode is encoded one 30 s window at a time and pooled
        from running sums, so memory stays that of one window whatever its length.
        """
        if mode != "own" or wave.shape[0] <= MAX_MEL_FRAMES * HOP:
            return pool_stats(self.frames(wave, mode))
        total = squares = None
        count = 0
        for window in long_mel_windows(wave):
            x = self.encode_mel(window.mel)[:, : window.audio_frames].astype(np.float64)
            total = x.sum(axis=1) if total is None else total + x.sum(axis=1)
            squares = (x * x).sum(axis=1) if squares is None else squares + (x * x).sum(axis=1)
            count += x.shape[1]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
        return np.concatenate([mean, std], axis=1).astype(np.float32)

    def describe(self) -> dict:
        """What identifies this encoder's outputs (for cache keys and provenance)."""
        return {"backend": self.name, "sha256": self.sha256, "n_layers": self.n_layers}
