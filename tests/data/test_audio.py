"""Reading and validating audio: bad files get a reason, never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from serlib.data.audio import AudioError, load_audio

SR = 16000


def tone(seconds: float = 0.5, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["empty"] = tmp_path / "empty.wav"
    files["empty"].write_bytes(b"")
    files["header-only"] = tmp_path / "header_only.wav"
    sf.write(files["header-only"], np.zeros(0), SR)
    files["random-bytes"] = tmp_path / "random.wav"
    files["random-bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["nan"] = tmp_path / "nan.wav"
    x = tone().astype(np.float32)
    x[100:200] = np.nan
    sf.write(files["nan"], x, SR, subtype="FLOAT")
    files["silence"] = tmp_path / "silence.wav"
    sf.write(files["silence"], np.zeros(SR), SR)
    files["too-short"] = tmp_path / "short.wav"
    sf.write(files["too-short"], tone(0.1), SR)
    return files


@pytest.mark.parametrize("name,reason", [
    ("empty", "unreadable"), ("header-only", "empty"), ("random-bytes", "unreadable"),
    ("nan", "non-finite"), ("silence", "silent"), ("too-short", "too-short"),
])
def test_bad_audio_raises_audio_error_with_a_reason(bad_files, name, reason):
    with pytest.raises(AudioError) as err:
        load_audio(bad_files[name])
    assert err.value.reason == reason
    assert str(bad_files[name]) in str(err.value)


def test_stereo_48k_becomes_mono_16k(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(path, tone(1.0, 48000, channels=2), 48000)
    wave = load_audio(path, 16000)
    assert wave.ndim == 1 and wave.dtype == np.float32
    assert abs(len(wave) - 16000) <= 2


def test_8_bit_and_flac_files_are_read(tmp_path):
    u8 = tmp_path / "u8.wav"
    sf.write(u8, tone(0.5), SR, subtype="PCM_U8")
    flac = tmp_path / "x.flac"
    sf.write(flac, tone(0.5), SR)
    assert np.max(np.abs(load_audio(u8))) > 0.2
    assert np.allclose(load_audio(flac), tone(0.5), atol=1e-3)


def test_resampling_preserves_a_tone(tmp_path):
    path = tmp_path / "t44.wav"
    sf.write(path, tone(1.0, 44100), 44100)
    wave = load_audio(path, SR)
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * SR / len(wave) - 220) < 3


def test_a_header_rate_outside_4_to_384_khz_is_refused_before_any_sample_is_read(tmp_path):
    import time

    bomb = tmp_path / "bomb.wav"
    sf.write(bomb, np.zeros(60000, dtype=np.int16), 1, subtype="PCM_16")  # 120 KB that claim 16.7 hours
    start = time.perf_counter()
    with pytest.raises(AudioError) as err:
        load_audio(bomb)
    assert err.value.reason == "bad-sample-rate" and "1 Hz" in err.value.detail
    assert time.perf_counter() - start < 1.0
    sf.write(tmp_path / "fast.wav", tone(0.5, 768000), 768000)
    with pytest.raises(AudioError, match="bad-sample-rate"):
        load_audio(tmp_path / "fast.wav")


def test_a_file_longer_than_the_limit_is_refused_by_its_header(tmp_path):
    sf.write(tmp_path / "long.wav", tone(3.0), SR)
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "long.wav", max_seconds=2.0)
    assert err.value.reason == "too-long" and "max_file_seconds" in err.value.detail
    assert load_audio(tmp_path / "long.wav").shape == (3 * SR,)  # no limit unless asked


@pytest.mark.parametrize("samples", [np.full(SR, 1e30, dtype=np.float32), 1000.0 + tone(1.0).astype(np.float32)],
                         ids=["1e30", "dc-offset-1000"])
def test_float_audio_far_outside_plus_minus_one_is_refused(tmp_path, samples):
    sf.write(tmp_path / "loud.wav", samples, SR, subtype="FLOAT")
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "loud.wav")
    assert err.value.reason == "absurd-amplitude"


def test_prepare_quarantines_a_sample_rate_bomb_and_keeps_the_rest(synthetic_ravdess, fast_config, tmp_path):
    import shutil

    from serlib.data.corpora import read_corpus
    from serlib.features.frames import prepare_features

    data = tmp_path / "ravdess"
    shutil.copytree(synthetic_ravdess, data)
    victim = sorted(data.glob("Actor_01/*.wav"))[0]
    sf.write(victim, np.zeros(60000, dtype=np.int16), 1, subtype="PCM_16")
    features = prepare_features(read_corpus("ravdess", data).manifest, fast_config, cache_dir=tmp_path / "cache",
                                workers=1, progress=False)
    reasons = dict(zip(features.quarantine["utt_id"], features.quarantine["reason"]))
    assert list(reasons.values()) == ["bad-sample-rate"] and len(features.usable) == len(features.manifest) - 1


def test_predict_refuses_a_sample_rate_bomb_in_one_line(tier1_run, tmp_path, capsys):
    from serlib.cli import main

    bomb = tmp_path / "bomb.wav"
    sf.write(bomb, np.zeros(3000, dtype=np.int16), 1, subtype="PCM_16")
    assert main(["predict", str(next(tier1_run.glob("best_uar_*.pt"))), str(bomb)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad-sample-rate" in err[0] and "Traceback" not in err[0]


def test_a_file_without_read_permission_says_so(tmp_path, monkeypatch):
    import os

    sf.write(tmp_path / "locked.wav", tone(0.5), SR)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a user without the permission (root has all)
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "locked.wav")
    assert err.value.reason == "unreadable" and err.value.detail == "no permission to read it"


def test_a_long_recording_is_read_a_block_at_a_time_and_equals_the_whole_file_read(tmp_path):
    import tracemalloc

    from serlib.data.audio import STREAMED_SECONDS, resample

    seconds = 3 * STREAMED_SECONDS
    path = tmp_path / "long.wav"
    sf.write(path, tone(seconds, sr=48000, channels=2), 48000, subtype="PCM_16")
    tracemalloc.start()
    wave = load_audio(path, SR)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole, _ = sf.read(path, dtype="float32", always_2d=True)
    expected = resample(whole.mean(axis=1), 48000, SR)
    assert wave.shape == expected.shape
    assert np.abs(wave - expected).max() < 1e-3  # one soxr stream: no seams at the block edges
    native = whole.nbytes  # what decoding the whole file at once would hold (69 MB)
    assert peak < native / 2, f"peak {peak / 1e6:.0f} MB"
