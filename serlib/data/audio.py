"""Reading audio: any format soundfile reads, mono, 16 kHz, validated.

Bad files never crash a run: :func:`load_audio` raises :class:`AudioError` with a
short machine-readable ``reason`` (``unreadable``, ``bad-sample-rate``, ``too-long``, ``empty``,
``too-short``, ``non-finite``, ``silent``, ``absurd-amplitude``) that :mod:`serlib.features.frames` records in the
quarantine table. Anything that is not a regular file (a FIFO, a folder, a
dangling link) is ``unreadable`` and is never opened, so it cannot block.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from serlib.core.files import undecodable_reason, unreadable_reason

MIN_SECONDS = 0.2
SILENCE_PEAK = 1e-5  # a clip whose absolute peak stays below this is "silent"
MIN_RATE, MAX_RATE = 4000, 384000  # Hz: a header outside this range is refused before any sample is read
MAX_FILE_SECONDS = 600.0  # the longest clip the caches accept (preprocess.max_file_seconds for the frame cache)
MAX_PEAK = 100.0  # float audio lies within +-1; a peak beyond this is no recording (1e30, a DC offset of 1000)
STREAMED_SECONDS = 60.0  # a longer file is decoded and resampled a block at a time (memory: its 16 kHz copy only)


class AudioError(Exception):
    """An audio file cannot be used; ``reason`` is a short category, ``detail`` says why."""

    def __init__(self, path: str | Path, reason: str, detail: str) -> None:
        super().__init__(f"{path}: {reason}: {detail}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average channels of a ``(frames, channels)`` array; 1-D input is returned as is."""
    return wave.mean(axis=1) if wave.ndim == 2 else wave


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """High-quality (soxr VHQ) resampling of a 1-D float signal."""
    if orig_sr == target_sr:
        return wave
    return soxr.resample(wave, orig_sr, target_sr, quality="VHQ").astype(np.float32)


def validate(wave: np.ndarray, sample_rate: int, path: str | Path = "<array>") -> None:
    """Raise :class:`AudioError` when ``wave`` is empty, too short, non-finite or silent."""
    if wave.size == 0:
        raise AudioError(path, "empty", "no audio frames")
    if not np.all(np.isfinite(wave)):
        raise AudioError(path, "non-finite", "NaN or infinite samples")
    seconds = wave.shape[0] / sample_rate
    if seconds < MIN_SECONDS:
        raise AudioError(path, "too-short", f"{seconds:.3f} s < {MIN_SECONDS} s")
    peak = float(np.max(np.abs(wave)))
    if peak < SILENCE_PEAK:
        raise AudioError(path, "silent", "all samples are (near) zero")
    if peak > MAX_PEAK:
        raise AudioError(path, "absurd-amplitude", f"peak {peak:.3g}, far outside the +-1 of audio samples")


def load_audio(path: str | Path, sample_rate: int = 16000, *, max_seconds: float | None = None) -> np.ndarray:
    """Read ``path`` as float32 mono at ``sample_rate`` Hz and validate it.

    Any channel count, sample rate and sub-format soundfile can decode is
    accepted (WAV of any bit depth, FLAC, OGG, AIFF...), at a header rate of
    4 to 384 kHz. The header is checked before any sample is read, so a file
    claiming 1 Hz (which would resample to hours of audio) costs nothing.

    Parameters
    ----------
    max_seconds
        Refuse a file longer than this (by its header); ``None``: no limit.

    Raises
    ------
    AudioError
        With reason ``unreadable`` when ``path`` is not a regular file (a FIFO,
        a folder, a dangling link: checked before opening, so nothing blocks) or
        cannot be decoded, ``bad-sample-rate``, ``too-long``, or one of the
        reasons of :func:`validate`.
    """
    rate, _, seconds = audio_info(path)
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(path, "bad-sample-rate", f"{rate} Hz in the header (accepted: {MIN_RATE // 1000}-"
                                                  f"{MAX_RATE // 1000} kHz)")
    if max_seconds and seconds > max_seconds:
        raise AudioError(path, "too-long", f"{seconds:.0f} s > {max_seconds:g} s (preprocess.max_file_seconds)")
    if seconds > STREAMED_SECONDS:  # a long recording: never its whole native-rate, multi-channel decoding at once
        return _load_streamed(path, sample_rate, seconds)
    try:
        wave, sr = sf.read(_sf_path(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(path, "unreadable", f"{type(exc).__name__}: {exc}".strip()) from None
    wave = to_mono(wave)
    # Validate before resampling: the resampler would smear NaNs and hide empties.
    validate(wave, sr, path)
    wave = resample(np.ascontiguousarray(wave, dtype=np.float32), sr, sample_rate)
    return wave.astype(np.float32, copy=False)


def read_blocks(path: str | Path, block_seconds: float = 60.0,
                sample_rate: int = 16000) -> Iterator[tuple[float, np.ndarray]]:
    """(start in seconds, mono float32 block at ``sample_rate``) over the whole file, one block in memory at a time.

    Resampling is soxr's (VHQ) as a stream, so block edges leave no seams.
    """
    try:
        handle = sf.SoundFile(_sf_path(path))
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(path, "unreadable", f"{type(exc).__name__}: {exc}".strip()) from None
    with handle:
        rate = handle.samplerate
        stream = (soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="VHQ")
                  if rate != sample_rate else None)
        frames = max(1, int(block_seconds * rate))
        done = 0
        while True:
            raw = handle.read(frames, dtype="float32", always_2d=True)
            last = len(raw) < frames
            mono = raw.mean(axis=1) if len(raw) else np.zeros(0, np.float32)
            block = stream.resample_chunk(mono, last=last) if stream is not None else mono
            if len(block):
                yield done / sample_rate, np.asarray(block, dtype=np.float32)
                done += len(block)
            if last:
                return


def _load_streamed(path: str | Path, sample_rate: int, seconds: float) -> np.ndarray:
    """A long file at ``sample_rate``, mono, filled block by block into one array, then validated."""
    wave = np.empty(int(np.ceil(seconds * sample_rate)) + sample_rate, dtype=np.float32)
    filled = 0
    for _, block in read_blocks(path, 10.0, sample_rate):
        if filled + len(block) > len(wave):  # a header that undercounts: grow, rarely
            wave = np.concatenate([wave, np.empty(len(block) + sample_rate, dtype=np.float32)])
        wave[filled:filled + len(block)] = block
        filled += len(block)
    wave = wave[:filled]
    validate(wave, sample_rate, path)
    return wave


def _sf_path(path: str | Path) -> str | bytes:
    """The path for soundfile: bytes for a non-UTF-8 name (soundfile would re-encode a str strictly)."""
    text = str(path)
    return text if undecodable_reason(text) is None else os.fsencode(text)


def _require_regular_file(path: str | Path) -> None:
    problem = unreadable_reason(path)
    if problem:
        raise AudioError(path, "unreadable", problem.removeprefix("unreadable: "))
    if not os.access(path, os.R_OK):  # soundfile would only say "System error."
        raise AudioError(path, "unreadable", "no permission to read it")


def audio_info(path: str | Path) -> tuple[int, int, float]:
    """Return ``(sample_rate, channels, seconds)`` from the header, without decoding.

    Raises
    ------
    AudioError
        ``unreadable`` when ``path`` is not a regular file or has no audio header.
    """
    _require_regular_file(path)
    try:
        info = sf.info(_sf_path(path))
    except Exception as exc:
        raise AudioError(path, "unreadable", f"{type(exc).__name__}: {exc}".strip()) from None
    return info.samplerate, info.channels, info.frames / max(info.samplerate, 1)


_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"RIFF"), (0, b"RIFX"), (0, b"RF64"), (0, b"fLaC"), (0, b"OggS"), (0, b"FORM"), (0, b"ID3"),
    (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xf2"), (0, b"caff"), (0, b".snd"),
)
"""(offset, bytes) that open the audio containers libsndfile reads."""


def looks_like_audio(path: str | Path) -> bool:
    """Whether ``path``'s first bytes are those of an audio container (content, not the file name, decides)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return any(head[offset:offset + len(magic)] == magic for offset, magic in _SIGNATURES)


def audio_in_folder(folder: str | Path) -> Iterator[str]:
    """Every audio file below ``folder`` (recursively, hidden entries skipped), sorted by path."""
    found = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(here, f) for f in files if not f.startswith(".")]
    yield from (p for p in sorted(found) if looks_like_audio(p))



