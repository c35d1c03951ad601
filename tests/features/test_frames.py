"""The feature cache: computed once, recomputed when anything changes, never half-written."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from serlib.config import load_config
from serlib.data.corpora import read_corpus
from serlib.features.frames import (FeatureExtractor, Normalizer, center_clip, center_each_clip, prepare_features,
                             standardize_by_speaker)
from serlib.data.synthetic import write_synthetic_corpus

from conftest import fast_overrides


@pytest.fixture
def corpus(tmp_path):
    root = write_synthetic_corpus("emodb", tmp_path / "emodb", per_class=1, seconds=0.5)
    return root, read_corpus("emodb", root).manifest


@pytest.fixture
def config():
    return load_config(overrides=fast_overrides() + ["data.corpus=emodb"])


def test_forty_mfcc_per_10_ms_frame():
    from serlib.config import FeatureConfig

    extractor = FeatureExtractor(FeatureConfig())
    x = extractor(np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    assert x.shape == (101, 40) and x.dtype == np.float32
    assert FeatureExtractor(FeatureConfig(deltas=True)).dim == 120


def test_opensmile_descriptors_follow_the_log_mel_values_of_every_frame_before_the_deltas():
    pytest.importorskip("opensmile")
    from serlib.config import FeatureConfig

    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    plain = FeatureExtractor(FeatureConfig(kind="logmel", n_mels=64, deltas=True))
    with_llds = FeatureExtractor(FeatureConfig(kind="logmel", n_mels=64, deltas=True, lld="egemaps"))
    x = with_llds(wave)
    assert x.shape == (101, with_llds.dim) == (101, (64 + 25) * 3) and np.isfinite(x).all()
    np.testing.assert_array_equal(x[:, :64], plain(wave)[:, :64])  # the log-mel part is untouched


def test_caches_made_before_the_descriptor_and_file_length_settings_keep_their_keys(corpus, config):
    from serlib.features.frames import CACHE_VERSION, cache_key, content_signature

    _, manifest = corpus
    before = config.to_dict()
    del before["features"]["lld"]  # what a config recorded before the settings existed
    del before["preprocess"]["max_file_seconds"]
    legacy = hashlib.sha256(json.dumps([CACHE_VERSION, before["preprocess"], before["features"],
                                        content_signature(manifest)], sort_keys=True, default=list).encode())
    assert cache_key(manifest, config) == legacy.hexdigest()[:16]
    with_llds = load_config(overrides=fast_overrides() + ["data.corpus=emodb", "features.lld=egemaps"])
    assert cache_key(manifest, with_llds) != cache_key(manifest, config)
    shorter = load_config(overrides=fast_overrides() + ["data.corpus=emodb", "preprocess.max_file_seconds=60"])
    assert cache_key(manifest, shorter) != cache_key(manifest, config)


def test_second_run_recomputes_nothing(corpus, config, tmp_path):
    _, manifest = corpus
    first = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert first.computed == len(manifest)
    again = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert again.computed == 0
    assert again.key == first.key
    for u, arr in first.features.items():
        np.testing.assert_array_equal(again.features[u], arr)
    assert set(again.augmented) == set(first.features) and all(len(v) == 1 for v in again.augmented.values())


def test_changing_the_config_or_a_file_recomputes(corpus, config, tmp_path):
    root, manifest = corpus
    base = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    other = load_config(overrides=fast_overrides() + ["features.n_mfcc=20"])
    changed = prepare_features(manifest, other, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    assert changed.key != base.key and changed.computed == len(manifest)
    assert next(iter(changed.features.values())).shape[1] == 20
    path = manifest["path"].iloc[0]
    data, rate = sf.read(path)
    sf.write(path, data[::-1], rate)  # other audio of the same length is a change
    edited = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    assert edited.key != base.key and edited.computed == len(manifest)


def test_a_copied_or_touched_corpus_keeps_its_cache(corpus, config, tmp_path):
    root, manifest = corpus
    base = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    copy = tmp_path / "elsewhere"
    shutil.copytree(root, copy)  # new paths and modification times, the same bytes
    time.sleep(0.01)
    for path in copy.rglob("*.wav"):
        os.utime(path, None)
    moved = read_corpus("emodb", copy).manifest
    again = prepare_features(moved, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    assert again.key == base.key and again.computed == 0
    assert all(str(p).startswith(str(copy)) for p in again.manifest["path"])


def test_a_cache_made_under_the_older_path_and_mtime_key_is_adopted_not_recomputed(corpus, config, tmp_path):
    _, manifest = corpus
    base = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    older = base.path.with_name("0123456789abcdef")
    base.path.rename(older)
    meta = json.loads((older / "meta.json").read_text())
    del meta["content"]  # what caches recorded before the key hashed the content
    (older / "meta.json").write_text(json.dumps({**meta, "key": older.name}))
    other = load_config(overrides=fast_overrides() + ["features.n_mfcc=20"])
    assert prepare_features(manifest, other, cache_dir=tmp_path / "c", workers=1, augment=False,
                            progress=False).computed == len(manifest)  # other settings: not adopted
    again = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    assert again.computed == 0 and again.path == base.path and not older.exists()
    assert json.loads((base.path / "meta.json").read_text())["adopted_from"] == older.name


def test_a_killed_run_never_leaves_a_cache_that_loads(corpus, config, tmp_path):
    _, manifest = corpus
    fs = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    (fs.path / "meta.json").unlink()  # as if killed before the final write
    (fs.path / "features.npz").write_bytes(b"truncated")
    again = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    assert again.computed == len(manifest)
    assert json.loads((again.path / "meta.json").read_text())["key"] == again.key
    assert not list(again.path.glob(".*.tmp"))


def test_bad_files_are_quarantined_with_reasons_and_recorded_in_the_manifest(corpus, config, tmp_path):
    root, manifest = corpus
    victims = manifest["path"].iloc[:3].tolist()
    open(victims[0], "wb").close()  # empty
    sf.write(victims[1], np.zeros(16000), 16000)  # silent
    with open(victims[2], "wb") as fh:
        fh.write(os.urandom(2000))  # random bytes
    manifest = read_corpus("emodb", root).manifest
    fs = prepare_features(manifest, config, cache_dir=tmp_path / "c", workers=1, augment=False, progress=False)
    reasons = dict(zip(fs.quarantine["utt_id"], fs.quarantine["reason"]))
    ids = manifest.set_index("path").loc[victims, "utt_id"].tolist()
    assert [reasons[i] for i in ids] == ["unreadable", "silent", "unreadable"]
    status = fs.manifest.set_index("utt_id")["status"]
    assert (status.loc[ids] != "ok").all() and (status.drop(ids) == "ok").all()
    assert len(fs.usable) == len(manifest) - 3 and not set(ids) & set(fs.features)
    assert fs.summary()["quarantined"] == 3


def test_two_worker_processes_give_the_same_features_as_one(corpus, config, tmp_path):
    _, manifest = corpus
    manifest = manifest.head(6)
    one = prepare_features(manifest, config, cache_dir=tmp_path / "a", workers=1, augment=False, progress=False)
    two = prepare_features(manifest, config, cache_dir=tmp_path / "b", workers=2, augment=False, progress=False)
    for u in one.features:
        np.testing.assert_allclose(one.features[u], two.features[u], rtol=1e-5, atol=1e-4)


def test_normaliser_is_fitted_on_the_arrays_it_is_given():
    rng = np.random.default_rng(0)
    train = [rng.normal(5.0, 2.0, size=(50, 3)) for _ in range(4)]
    norm = Normalizer.fit(train)
    z = np.concatenate([norm(a) for a in train])
    assert np.allclose(z.mean(0), 0, atol=1e-5) and np.allclose(z.std(0), 1, atol=1e-3)
    assert Normalizer.from_dict(norm.to_dict()).mean.tolist() == norm.mean.tolist()


def test_per_speaker_standardisation_uses_each_speakers_clean_clips_for_all_its_versions():
    rng = np.random.default_rng(0)
    clips = {"a": [rng.normal(5.0, 2.0, size=(40, 3)) for _ in range(3)],
             "b": [rng.normal(-3.0, 0.5, size=(30, 3)) for _ in range(2)]}
    speakers = ["a", "b", "a", "b", "a"]
    order = {"a": iter(clips["a"]), "b": iter(clips["b"])}
    variants = [[x, x + 100.0] for x in (next(order[s]) for s in speakers)]  # clean clip, then a shifted copy
    out = standardize_by_speaker(variants, speakers)
    for speaker in "ab":
        clean = np.concatenate([v[0] for v, s in zip(out, speakers) if s == speaker])
        assert np.allclose(clean.mean(0), 0, atol=1e-4) and np.allclose(clean.std(0), 1, atol=1e-3)
    a_stats = Normalizer.fit(clips["a"])  # the copy is scaled with the clean clips' statistics, not its own
    np.testing.assert_allclose(out[0][1], a_stats(variants[0][1]), rtol=1e-5)
    with pytest.raises(ValueError, match="speaker ids"):
        standardize_by_speaker(variants, speakers[:-1])


def test_sentence_normalisation_removes_each_clips_own_mean_frame_and_nothing_else():
    rng = np.random.default_rng(1)
    clip = rng.normal(size=(50, 4)).astype(np.float32)
    centred = center_clip(clip)
    assert centred.shape == clip.shape and centred.dtype == np.float32
    np.testing.assert_allclose(centred.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(np.diff(centred, axis=0), np.diff(clip, axis=0), atol=1e-5)  # dynamics kept
    tilt = np.array([3.0, -1.0, 0.5, 10.0], np.float32)  # a constant gain / spectral tilt on every frame
    np.testing.assert_allclose(center_clip(clip + tilt), centred, atol=1e-5)
    copy = clip * 2 + 7  # an augmented copy is centred on its own mean, not on the clean clip's
    out = center_each_clip([[clip, copy]])
    np.testing.assert_allclose(out[0][1], center_clip(copy), atol=1e-6)
    np.testing.assert_allclose(out[0][1].mean(0), 0, atol=1e-5)
