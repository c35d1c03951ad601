"""Preprocessing: VAD trimming, level normalisation, Demucs loading and running."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from serlib.data.audio import load_audio
from serlib.config import PreprocessConfig
from serlib.features.preprocess import (
    DemucsDenoiser, DemucsUnavailable, load_pretrained_demucs, normalize_level, preprocess_wave, vad_trim,
)


def test_rms_normalisation_reaches_the_target_level_without_clipping():
    x = 0.01 * np.sin(np.linspace(0, 200, 16000)).astype(np.float32)
    y = normalize_level(x, "rms", -23.0)
    assert abs(20 * np.log10(np.sqrt(np.mean(y ** 2))) + 23.0) < 0.1
    loud = normalize_level(np.r_[np.ones(10), np.zeros(16000)].astype(np.float32), "rms", -3.0)
    assert np.max(np.abs(loud)) <= 0.99 + 1e-6


def test_vad_without_speech_keeps_the_whole_clip_and_flags_it():
    noise = (0.001 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    out, found = vad_trim(noise)
    assert not found and len(out) == len(noise)


@pytest.mark.realdata
def test_vad_trims_leading_silence_of_real_speech(shared_data):
    clip = next((shared_data / "ravdess" / "Actor_01").glob("*.flac"))
    wave = load_audio(clip)
    out, info = preprocess_wave(wave, PreprocessConfig())
    assert info.vad_found_speech
    assert 0.3 * len(wave) < len(out) < len(wave)


def test_missing_demucs_weights_fail_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import demucs.pretrained  # noqa: F401 - importing the library is not the lookup being timed

    start = time.perf_counter()
    with pytest.raises(DemucsUnavailable) as err:
        load_pretrained_demucs("htdemucs")
    assert time.perf_counter() - start < 1.0  # no download attempt, no retries: one look at the caches
    message = str(err.value)
    assert "not available offline" in message and "demucs_model" in message and "denoise: none" in message
    with pytest.raises(DemucsUnavailable):
        load_pretrained_demucs(str(tmp_path / "nowhere.th"))
    with pytest.raises(DemucsUnavailable):
        load_pretrained_demucs(str(tmp_path))  # an empty folder is no model


def small_random_demucs():
    from demucs.htdemucs import HTDemucs

    return HTDemucs(sources=["drums", "bass", "other", "vocals"], channels=8, depth=2, t_layers=1,
                    samplerate=44100, segment=2)


def test_demucs_denoiser_runs_a_small_random_model_and_keeps_length():
    import torch

    torch.manual_seed(0)
    denoiser = DemucsDenoiser(small_random_demucs())
    x = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    y = denoiser(x)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    out, info = preprocess_wave(x, PreprocessConfig(vad=False, denoise="demucs"), denoiser)
    assert info.denoise == "demucs" and len(out) == len(x)


def test_cached_legacy_demucs_weights_load_without_network(tmp_path, monkeypatch):
    """Weights in the torch hub cache, named as demucs names them, load through the offline repo."""
    from demucs.states import save_with_checksum, serialize_model
    from omegaconf import OmegaConf

    import yaml
    from demucs import pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    bag_yaml = Path(pretrained.__file__).parent / "remote" / "htdemucs.yaml"
    for sig in yaml.safe_load(bag_yaml.read_text())["models"]:
        save_with_checksum(serialize_model(small_random_demucs(), OmegaConf.create({})), checkpoints / f"{sig}.th")
    start = time.perf_counter()
    bag = load_pretrained_demucs("htdemucs")
    assert time.perf_counter() - start < 10
    assert "vocals" in list(bag.sources)


def test_demucs_checkpoint_file_round_trip(tmp_path):
    """A local .th file saved the way demucs saves models loads through the real loading code."""
    import torch
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    model = small_random_demucs()
    path = tmp_path / "tiny.th"
    torch.save(serialize_model(model, OmegaConf.create({})), path)
    loaded = load_pretrained_demucs(str(path))
    assert list(loaded.sources) == ["drums", "bass", "other", "vocals"]
