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
