"""Whisper's log-mel spectrogram in numpy, and the input-length modes.

:func:`log_mel` reproduces ``whisper.audio.log_mel_spectrogram`` of openai/whisper:

- 16 kHz input, STFT with ``n_fft = 400`` (25 ms), hop 160 (10 ms), a periodic
  Hann window, centred frames (reflect padding of 200 samples on each side);
- power spectrum ``|X|^2``, the last frame dropped (so ``n_samples // 160`` frames);
- 80 mel bands from ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)``
  (Slaney mel scale and area normalisation, the filters Whisper ships);
- ``log10(max(mel, 1e-10))``, floored at its maximum minus 8, then ``(x + 4) / 4``.

Input-length modes (:data:`MODES`) decide what the encoder sees:

``own``
    the clip at its own length, zero-padded to a multiple of 320 samples (an even
    number of mel frames, one encoder frame per 20 ms); cheapest, but not
    Whisper's training condition.
``pad10`` / ``pad30``
    the clip zero-padded to 10 s / 30 s, as Whisper pads every segment to 30 s
    in training; costlier (attention is quadratic in the padded length).

Clips longer than a window are cut into consecutive windows (30 s for ``own``,
the pad length otherwise; the last one padded as above), each encoded alone.
The log-mel floor is computed once over the whole padded signal, as Whisper
does. Only the encoder frames that hold audio, ``ceil(n_samples / 320)``, are
kept for pooling.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
ENCODER_HOP = 2 * HOP  # samples per encoder frame (the second conv has stride 2): 50 frames/s
MAX_MEL_FRAMES = 3000  # 30 s: Whisper's positional table holds 1500 encoder frames
MODES: dict[str, float | None] = {"own": None, "pad10": 10.0, "pad30": 30.0}
"""Input-length mode -> padded window length in seconds (``None``: the clip's own length)."""


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    above = hz >= 1000.0
    mel[above] = 15.0 + np.log(hz[above] / 1000.0) / (np.log(6.4) / 27.0)
    return mel


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * (200.0 / 3)
    above = mel >= 15.0
    hz[above] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[above] - 15.0))
    return hz


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """The ``(80, 201)`` float32 Slaney mel filterbank Whisper uses.

    Computed here in numpy, exactly as ``librosa.filters.mel(sr=16000, n_fft=400,
    n_mels=80, htk=False, norm="slaney")`` does (a test holds them equal): importing
    librosa's filters pulls in scipy.signal, about 3 s of a one-clip prediction.
    """
    fft_hz = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_hz = _slaney_mel_to_hz(np.linspace(_hz_to_slaney_mel(np.array([0.0]))[0],
                                           _hz_to_slaney_mel(np.array([SAMPLE_RATE / 2]))[0], N_MELS + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:N_MELS + 2] - mel_hz[:N_MELS]))[:, None]  # Slaney: equal area per filter
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def hann_window() -> np.ndarray:
    """Periodic Hann window of 400 samples (``torch.hann_window(400)``)."""
    n = np.arange(N_FFT, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)


def power_spectrogram(wave: np.ndarray) -> np.ndarray:
    """Centred STFT power ``|X|^2`` of a 16 kHz signal: ``(n_samples // 160, 201)`` float32."""
    x = np.pad(np.asarray(wave, dtype=np.float32), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]  # 1 + n // 160 frames
    spec = scipy.fft.rfft(frames * hann_window(), axis=-1)
    power = spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2
    return power[:-1]  # Whisper drops the last frame


def log_mel(wave: np.ndarray) -> np.ndarray:
    """Whisper's normalised log-mel spectrogram of a 16 kHz mono signal.

    Parameters
    ----------
    wave
        1-D float signal at 16 kHz, at least 320 samples.

    Returns
    -------
    numpy.ndarray
        ``(80, n_samples // 160)`` float32, values in ``[max - 2, max]`` with
        ``max = (log10(peak mel power) + 4) / 4``.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.shape[0] < ENCODER_HOP:
        raise ValueError(f"log_mel needs a 1-D signal of at least {ENCODER_HOP} samples, got shape {wave.shape}")
    mel = power_spectrogram(wave) @ mel_filters().T  # (frames, 80)
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return np.ascontiguousarray(((log + 4.0) / 4.0).T, dtype=np.float32)


def _reflect_padded(wave: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Samples ``start:stop`` of ``np.pad(wave, N_FFT // 2, mode="reflect")``, without building the padded copy."""
    n = wave.shape[0]
    index = np.arange(start, stop) - N_FFT // 2
    index = np.abs(index)
    index = np.where(index >= n, 2 * (n - 1) - index, index)
    return wave[index]


def _log_mel_frames(wave: np.ndarray, first: int, last: int) -> np.ndarray:
    """``log10`` mel power of STFT frames ``first:last`` of ``wave`` (as :func:`power_spectrogram` frames them)."""
    x = _reflect_padded(np.asarray(wave, dtype=np.float32), first * HOP, (last - 1) * HOP + N_FFT)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    spec = scipy.fft.rfft(frames * hann_window(), axis=-1)
    power = spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2
    return np.log10(np.maximum(power @ mel_filters().T, 1e-10))


def long_mel_windows(wave: np.ndarray) -> Iterator["MelWindow"]:
    """The ``own``-mode windows of a clip longer than 30 s, made one at a time in bounded memory.

    Whisper's log-mel clamps every value to 8 decades below the clip's loudest
    one, so a first pass finds that maximum 30 s at a time; the second yields
    each window's normalised log-mel. A window's memory is that of 30 s, whatever
    the clip's length (:func:`log_mel` of the whole clip needs about 200 MB a minute).
    """
    wave = np.asarray(wave, dtype=np.float32)
    n = wave.shape[0]
    total = -(-max(n, 1) // ENCODER_HOP) * ENCODER_HOP
    padded = np.zeros(total, dtype=np.float32)
    padded[:n] = wave
    frames = total // HOP
    starts = range(0, frames, MAX_MEL_FRAMES)
    peak = max(float(_log_mel_frames(padded, s, min(s + MAX_MEL_FRAMES, frames)).max()) for s in starts)
    audio = encoder_frames(n)
    for start in starts:
        log = _log_mel_frames(padded, start, min(start + MAX_MEL_FRAMES, frames))
        mel = np.ascontiguousarray(((np.maximum(log, peak - 8.0) + 4.0) / 4.0).T, dtype=np.float32)
        window = MelWindow(mel, int(min(max(audio - start // 2, 0), mel.shape[1] // 2)))
        if window.audio_frames > 0:
            yield window


@dataclass(frozen=True)
class MelWindow:
    """One encoder input: ``mel`` ``(80, frames)`` and how many of its encoder frames hold audio."""

    mel: np.ndarray
    audio_frames: int


def encoder_frames(n_samples: int) -> int:
    """Encoder frames (50 per second) that hold audio: ``ceil(n_samples / 320)``."""
    return -(-int(n_samples) // ENCODER_HOP)


def mel_windows(wave: np.ndarray, mode: str = "own") -> list[MelWindow]:
    """Cut a 16 kHz clip into the encoder inputs of an input-length ``mode``.

    Parameters
    ----------
    wave
        1-D float signal at 16 kHz.
    mode
        One of :data:`MODES`.

    Returns
    -------
    list of MelWindow
        One window for clips up to the window length; every window's ``mel`` has
        an even number of frames (at most 3000) and ``audio_frames >= 1``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown input mode {mode!r}; expected one of {', '.join(MODES)}")
    wave = np.asarray(wave, dtype=np.float32)
    n = wave.shape[0]
    seconds = MODES[mode]
    window = MAX_MEL_FRAMES * HOP if seconds is None else int(round(seconds * SAMPLE_RATE))
    step = ENCODER_HOP if seconds is None else window
    total = -(-max(n, 1) // step) * step
    padded = np.zeros(total, dtype=np.float32)
    padded[:n] = wave
    mel = log_mel(padded)
    audio = encoder_frames(n)
    per_window = window // HOP
    out = []
    for start in range(0, mel.shape[1], per_window):
        chunk = mel[:, start : start + per_window]
        first = start // 2
        out.append(MelWindow(np.ascontiguousarray(chunk), int(min(max(audio - first, 0), chunk.shape[1] // 2))))
    return [w for w in out if w.audio_frames > 0]
