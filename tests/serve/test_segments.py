"""Long recordings as a timeline: speech joined into segments, read in blocks, scored one segment at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serlib.data.audio import read_blocks
from serlib.serve.segments import Segment, join_speech, speech_segments, with_context

RATE = 16000


def energy_detector(block: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """A stand-in voice-activity detector for generated signals: runs of 10 ms frames above a level."""
    frame = rate // 100
    loud = np.abs(block[: len(block) // frame * frame].reshape(-1, frame)).max(axis=1) > 0.05
    stamps, start = [], None
    for k, on in enumerate(list(loud) + [False]):
        if on and start is None:
            start = k
        elif not on and start is not None:
            stamps.append((start * frame / rate, k * frame / rate))
            start = None
    return stamps


def recording(tmp_path: Path, spans: list[tuple[float, float]], seconds: float, rate: int = 44100) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    wave = np.zeros_like(t, dtype=np.float32)
    for a, b in spans:
        on = (t >= a) & (t < b)
        wave[on] = 0.3 * np.sin(2 * np.pi * 220 * t[on])
    path = tmp_path / "long.wav"
    sf.write(path, wave, rate)
    return path


def test_short_pauses_are_bridged_short_speech_dropped_and_long_speech_cut_evenly():
    stamps = [(1.0, 2.0), (2.3, 3.0), (5.0, 5.1), (10.0, 27.0)]
    assert join_speech(stamps, min_pause=0.5, min_speech=0.25, max_segment=8.0) == [
        Segment(1.0, 3.0), Segment(10.0, 15.667), Segment(15.667, 21.333), Segment(21.333, 27.0)]
    assert join_speech(stamps, min_pause=2.5, min_speech=0.0, max_segment=100) == [Segment(1.0, 5.1),
                                                                                  Segment(10.0, 27.0)]


def test_a_recording_is_read_in_blocks_and_speech_across_a_block_edge_stays_one_segment(tmp_path):
    known = [(1.0, 2.5), (3.6, 6.4), (9.0, 9.8)]  # the second crosses the 5 s block edge
    path = recording(tmp_path, known, 12.0)
    blocks = list(read_blocks(path, block_seconds=5.0))
    assert len(blocks) == 3 and blocks[0][0] == 0.0  # a block's start is the time of its first sample
    assert all(abs(start - (prev + len(b) / RATE)) < 1e-9 for (prev, b), (start, _) in zip(blocks, blocks[1:]))
    assert abs(sum(len(b) for _, b in blocks) - 12 * RATE) <= 64  # the whole recording, resampled to 16 kHz
    assert max(len(b) for _, b in blocks) <= 5.1 * RATE  # one block in memory at a time
    found = speech_segments(path, detector=energy_detector, block_seconds=5.0, min_speech=0.1)
    assert len(found) == 3
    for seg, (a, b) in zip(found, known):
        assert abs(seg.start - a) < 0.03 and abs(seg.end - b) < 0.03


def test_a_segment_is_scored_with_the_audio_around_it_but_never_a_neighbours():
    segs = [Segment(1.0, 2.0), Segment(2.6, 4.0), Segment(9.0, 9.5)]
    assert with_context(segs, 1.0, 10.0) == [Segment(0.0, 2.3), Segment(2.3, 5.0), Segment(8.0, 10.0)]


def test_predict_segments_says_when_a_recording_holds_no_speech(shipped_tiny, tmp_path, capsys):
    from serlib.cli import main

    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(RATE * 3, np.float32) + 1e-4 * np.sin(np.arange(RATE * 3)), RATE)
    assert main(["predict", "--model", "tiny", "--segments", str(silent)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {silent}: no-speech: Silero VAD found no speech"]
    assert main(["predict", "--model", "tiny", str(silent), "--plot", str(tmp_path / "x.png")]) == 2
    assert "give it with --segments" in capsys.readouterr().err


@pytest.mark.realdata
def test_a_long_real_recording_gets_one_timed_row_per_utterance_and_a_plot(shared_data, tmp_path, capsys):
    from serlib.cli import main

    clips = sorted((shared_data / "ravdess").glob("Actor_0[12]/*.flac"))[:8]
    parts, spans, t = [], [], 0.0
    for clip in clips:
        wave, rate = sf.read(clip, dtype="float32")
        parts += [np.zeros(int(1.5 * rate), np.float32), wave]
        spans.append((t + 1.5, t + 1.5 + len(wave) / rate))
        t += 1.5 + len(wave) / rate
    long = tmp_path / "session.flac"
    sf.write(long, np.concatenate(parts), rate)
    plot = tmp_path / "timeline.png"
    assert main(["predict", "--model", "ravdess-mlp", "--segments", str(long), "--format", "json",
                 "--plot", str(plot)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(clips) and plot.stat().st_size > 10_000
    for row, (a, b) in zip(rows, spans):  # each segment is the speech inside one clip
        assert a - 0.15 <= row["start"] < row["end"] <= b + 0.15
        assert set(row) == {"path", "start", "end", "label", "probabilities"}
