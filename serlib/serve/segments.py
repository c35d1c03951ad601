"""Long recordings as a timeline: speech segments found by Silero VAD, each labelled on its own.

``serlib predict --segments`` reads a recording of any length in blocks, so
memory stays bounded whatever its length:

1. :func:`speech_segments` streams the file in blocks of ``block_seconds``
   (resampled to 16 kHz as a stream), runs Silero VAD on each block, and joins
   the speech it finds into segments: a pause shorter than ``min_pause`` does
   not end a segment (also across block edges), speech shorter than
   ``min_speech`` is dropped, and a segment longer than ``max_segment`` (the
   model's trained clip length) is cut into equal parts no longer than it;
2. :func:`label_segments` reads each segment's span, with up to a second of
   the audio around it as training clips have, from the file (a seek, not the
   whole file) and scores it with the model's own file pipeline, so a segment
   is processed like a training clip;
3. :func:`plot_timeline` draws the class probabilities over time, with the
   segments shaded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

SAMPLE_RATE = 16000
Detector = Callable[[np.ndarray, int], list[tuple[float, float]]]
"""A voice-activity detector: (16 kHz mono block, rate) -> speech (start, end) in seconds within the block."""


@dataclass(frozen=True)
class Segment:
    """A stretch of speech, in seconds from the start of the recording."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        """The segment's length in seconds."""
        return self.end - self.start


def silero_detector(threshold: float = 0.5) -> Detector:
    """Silero VAD (the model shipped in the silero-vad wheel) as a :data:`Detector`."""

    def detect(block: np.ndarray, rate: int) -> list[tuple[float, float]]:
        import torch
        from silero_vad import get_speech_timestamps

        from serlib.features.preprocess import silero_vad_model

        stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(block)), silero_vad_model(),
                                       threshold=threshold, sampling_rate=rate)
        return [(s["start"] / rate, s["end"] / rate) for s in stamps]

    return detect


def join_speech(stamps: Sequence[tuple[float, float]], *, min_pause: float = 0.5, min_speech: float = 0.25,
                max_segment: float = 8.0) -> list[Segment]:
    """Speech stamps (seconds, in order) -> segments: short pauses bridged, short speech dropped, long cut evenly."""
    merged: list[list[float]] = []
    for start, end in sorted(stamps):
        if merged and start - merged[-1][1] < min_pause:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[Segment] = []
    for start, end in merged:
        if end - start < min_speech:
            continue
        parts = int(np.ceil((end - start) / max_segment - 1e-9))
        edges = np.linspace(start, end, parts + 1)
        out += [Segment(round(float(a), 3), round(float(b), 3)) for a, b in zip(edges[:-1], edges[1:])]
    return out


def speech_segments(path: str | Path, *, detector: Detector | None = None, min_pause: float = 0.5,
                    min_speech: float = 0.25, max_segment: float = 8.0,
                    block_seconds: float = 60.0) -> list[Segment]:
    """The speech segments of a recording (see the module docstring), reading it block by block."""
    detect = detector or silero_detector()
    stamps: list[tuple[float, float]] = []
    from serlib.data.audio import read_blocks

    for offset, block in read_blocks(path, block_seconds):
        stamps += [(offset + a, offset + b) for a, b in detect(block, SAMPLE_RATE)]
    return join_speech(stamps, min_pause=min_pause, min_speech=min_speech, max_segment=max_segment)


def read_span(path: str | Path, segment: Segment, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The samples of one segment, read by seeking (never the whole file), mono at ``sample_rate``."""
    import soundfile as sf

    from serlib.data.audio import resample

    with sf.SoundFile(str(path)) as handle:
        rate = handle.samplerate
        handle.seek(min(int(segment.start * rate), handle.frames))
        raw = handle.read(max(0, int(round(segment.seconds * rate))), dtype="float32", always_2d=True)
    mono = raw.mean(axis=1)
    return resample(mono, rate, sample_rate) if rate != sample_rate else mono


def with_context(segments: Sequence[Segment], context: float, duration: float) -> list[Segment]:
    """Each segment widened by ``context`` seconds on both sides, never past the recording or halfway to a neighbour.

    Training clips hold some silence around their speech (about a second in
    RAVDESS), so a segment is scored with the audio around it, as a clip would be.
    """
    out = []
    for k, seg in enumerate(segments):
        before = segments[k - 1].end if k else 0.0
        after = segments[k + 1].start if k + 1 < len(segments) else duration
        start = max(seg.start - context, (before + seg.start) / 2 if k else 0.0)
        end = min(seg.end + context, (seg.end + after) / 2 if k + 1 < len(segments) else duration)
        out.append(Segment(round(start, 3), round(end, 3)))
    return out


def label_segments(predictor: Any, path: str | Path, segments: Sequence[Segment], *, context: float = 1.0,
                   duration: float | None = None) -> Iterator[tuple[Segment, np.ndarray | None, str | None]]:
    """(segment, probabilities or scores, None) per segment, or (segment, None, why) when one cannot be scored.

    Each segment, widened by ``context`` seconds of the audio around it
    (:func:`with_context`), goes through the model's own file pipeline (the
    same preprocessing as its training clips), from a 16 kHz scratch WAV that
    holds that span only.
    """
    import soundfile as sf

    from serlib.data.audio import AudioError, audio_info

    duration = duration if duration is not None else audio_info(path)[2]
    spans = with_context(segments, context, duration)
    with tempfile.TemporaryDirectory(prefix="serlib-segments-") as scratch:
        clip = Path(scratch) / "segment.wav"
        for segment, span in zip(segments, spans):
            sf.write(str(clip), read_span(path, span), SAMPLE_RATE, subtype="FLOAT")
            try:
                probs = predictor.predict_file(clip)
            except AudioError as err:
                yield segment, None, f"{err.reason}: {err.detail}"
                continue
            if not np.all(np.isfinite(probs)):
                yield segment, None, "non-finite-output: the model gave NaN or infinite outputs"
                continue
            yield segment, probs, None


def plot_timeline(rows: Sequence[dict[str, Any]], labels: Sequence[str], out: str | Path, *, title: str = "",
                  duration: float | None = None) -> Path:
    """Class probabilities over time (one step per segment) with the segments shaded; saved as PNG at ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 3.6))
    for row in rows:
        ax.axvspan(row["start"], row["end"], color="0.92", zorder=0)
    for k, label in enumerate(labels):
        xs, ys = [], []
        for row in rows:
            xs += [row["start"], row["end"], np.nan]
            ys += [row["probabilities"][label]] * 2 + [np.nan]
        ax.plot(xs, ys, color=f"C{k % 10}", lw=2, label=label)
    ax.set_xlim(0, duration or (max((r["end"] for r in rows), default=1.0)))
    ax.set_ylim(0, 1)
    ax.set_xlabel("time, s (grey: speech segments)")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(len(labels), 8), frameon=False, fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


__all__ = ["Segment", "Detector", "silero_detector", "join_speech", "speech_segments", "read_span",
           "with_context",
           "label_segments", "plot_timeline", "SAMPLE_RATE"]
