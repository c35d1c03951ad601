"""Frame-level encoder features: every layer's frames of the audio, downsampled, cached and resumable."""

from __future__ import annotations

import numpy as np
import pytest

from serlib.data.audio import load_audio
from serlib.features.encoders.frames import compute_frame_embeddings, downsample

import test_torch_encoder as encoder_tests

_StandIn = encoder_tests._StandIn
# the encoder tests' fixtures, used here by name
small_manifest, whisper_cache, torch_encoder = (encoder_tests.small_manifest, encoder_tests.whisper_cache,
                                               encoder_tests.torch_encoder)


def test_downsampling_averages_runs_of_frames_and_keeps_a_short_last_run():
    frames = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)  # (layers, time, dim)
    out = downsample(frames, 2)
    assert out.shape == (3, 2, 3)  # (ceil(5 / 2), layers, dim)
    np.testing.assert_allclose(out[0], frames[:, 0:2].mean(axis=1))
    np.testing.assert_allclose(out[2], frames[:, 4])  # the last run holds one frame
    np.testing.assert_array_equal(downsample(frames, 1), frames.transpose(1, 0, 2))


def test_frames_are_aligned_with_the_manifest_and_bad_clips_have_none(small_manifest, tmp_path):
    fs = compute_frame_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path, chunk_size=2)
    assert fs.manifest["utt_id"].tolist() == small_manifest["utt_id"].tolist()
    status = dict(zip(fs.manifest["utt_id"], fs.manifest["status"]))
    assert status == {"u0": "ok", "u1": "ok", "u2": "ok", "u3": "unreadable", "u4": "silent"}
    lengths = dict(zip(fs.manifest["utt_id"], fs.lengths))
    # 0.5 s = 25 encoder frames at 50 Hz -> 13 at stride 2; 0.6 s -> 15; 0.7 s -> 18
    assert lengths == {"u0": 13, "u1": 15, "u2": 18, "u3": 0, "u4": 0}
    assert fs.frames.dtype == np.float16 and fs.frames.shape[1:] == (7, 512) and fs.n_layers == 7
    row = fs.manifest["utt_id"].tolist().index("u1")
    expected = downsample(_StandIn().frames(load_audio(fs.manifest["path"][row])), 2)
    np.testing.assert_allclose(fs.clip(row), expected, rtol=2e-3, atol=1e-4)  # float16 storage


def test_a_second_call_reads_the_frame_cache_and_the_key_follows_the_stride(small_manifest, tmp_path):
    first = compute_frame_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path, chunk_size=2)
    enc = _StandIn()
    again = compute_frame_embeddings(small_manifest, encoder=enc, cache_dir=tmp_path, chunk_size=2)
    assert again.computed == 0 and enc.calls == 0 and again.key == first.key
    np.testing.assert_array_equal(again.frames, first.frames)
    finer = compute_frame_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path, stride=1)
    assert finer.key != first.key and finer.lengths.max() == 35
    assert first.path.parent.name == "whisper-frames"


def test_an_interrupted_frame_run_continues_from_the_finished_chunks(small_manifest, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        compute_frame_embeddings(small_manifest, encoder=_StandIn(fail_after=2), cache_dir=tmp_path, chunk_size=2)
    resumed = _StandIn()
    fs = compute_frame_embeddings(small_manifest, encoder=resumed, cache_dir=tmp_path, chunk_size=2)
    assert fs.computed == 3 and resumed.calls == 1
    full = compute_frame_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path / "fresh", chunk_size=2)
    np.testing.assert_array_equal(fs.frames, full.frames)


def test_frame_requests_are_checked_before_anything_runs(small_manifest, tmp_path):
    with pytest.raises(ValueError, match="stride must be >= 1"):
        compute_frame_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path, stride=0)
    with pytest.raises(ValueError, match="unknown input mode"):
        compute_frame_embeddings(small_manifest, encoder=_StandIn(), cache_dir=tmp_path, mode="full")


def test_real_encoder_frames_pool_to_the_cached_means(small_manifest, torch_encoder, tmp_path):
    from serlib.features.encoders.pooled import compute_embeddings

    fs = compute_frame_embeddings(small_manifest, encoder=torch_encoder, cache_dir=tmp_path, stride=1)
    pooled = compute_embeddings(small_manifest, encoder=torch_encoder, cache_dir=tmp_path)
    for row in np.flatnonzero(fs.ok):
        clip = fs.clip(row).astype(np.float64)
        assert np.isfinite(clip).all() and clip.shape[1:] == (7, 512)
        # the mean over the stored frames is the pooled mean (float16 storage: about 3 significant digits)
        np.testing.assert_allclose(clip.mean(axis=0), pooled.features[row, :, :512], rtol=0, atol=2e-2)
