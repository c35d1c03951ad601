"""openSMILE functionals: read through serlib's audio loader, cached in chunks, bad clips quarantined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

pytest.importorskip("opensmile")

from serlib.features import functionals
from serlib.features.functionals import (  # noqa: E402
    LLD_DIMS, FunctionalsError, extract_functionals, extract_llds, make_smile, prepare_functionals,
    resolve_feature_set,
)


def tone(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A voiced-like harmonic signal with a little noise (openSMILE finds F0 in it)."""
    t = np.arange(int(16000 * seconds)) / 16000
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    return (0.2 * wave + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture()
def corpus(tmp_path: Path) -> pd.DataFrame:
    """Six clips: four good (WAV, FLAC, Opus OGG, 48 kHz WAV), one unreadable, one too short."""
    folder = tmp_path / "audio"
    folder.mkdir()
    rows = []

    def add(name: str, speaker: str, label: str) -> Path:
        rows.append({"utt_id": name, "path": str(folder / name), "speaker": speaker, "label": label, "corpus": "toy"})
        return folder / name

    sf.write(add("a1.wav", "a", "happy"), tone(1.0, 180, 1), 16000)
    sf.write(add("a2.flac", "a", "sad"), tone(1.2, 120, 2), 16000)
    sf.write(add("b1.ogg", "b", "happy"), tone(1.0, 220, 3), 16000, format="OGG", subtype="OPUS")
    t48 = np.arange(48000) / 48000
    sf.write(add("b2.wav", "b", "sad"), (0.2 * np.sin(2 * np.pi * 110 * t48)).astype(np.float32), 48000)
    add("c1.wav", "c", "happy").write_bytes(b"RIFF....not audio")
    sf.write(add("c2.wav", "c", "sad"), tone(0.05, 150, 4), 16000)
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def fresh_memo():
    functionals._MEMO.clear()
    yield
    functionals._MEMO.clear()


def test_egemaps_gives_88_and_compare_6373_finite_values_per_clip():
    wave = tone(1.0, 200, 0)
    for name, dims in (("egemaps", 88), ("compare", 6373)):
        values = extract_functionals(wave, make_smile(name))
        assert values.shape == (dims,) and values.dtype == np.float32 and np.isfinite(values).all()


def test_low_level_descriptors_land_on_the_10_ms_frames_nearest_in_time():
    wave = np.concatenate([np.zeros(8000, np.float32), tone(0.5, 200, 0)])  # silence, then a 200 Hz voice at 0.5 s
    llds = extract_llds(wave, make_smile("egemaps", level="lld"), n_frames=101, hop_seconds=0.01)
    assert llds.shape == (101, LLD_DIMS["egemaps"]) and llds.dtype == np.float32 and np.isfinite(llds).all()
    loudness, f0_semitones = llds[:, 0], llds[:, 10]
    assert loudness[:47].max() < 0.01 and loudness[51:].min() > 0.5  # the onset within a frame or two of 0.5 s
    assert (f0_semitones[:46] == 0).all()  # unvoiced: openSMILE's 0
    np.testing.assert_allclose(f0_semitones[52:], 12 * np.log2(200 / 27.5), atol=0.5)


def test_a_clip_too_short_for_opensmile_gives_zero_descriptors_not_nan():
    llds = extract_llds(tone(0.01, 200, 0), make_smile("compare", level="lld"), n_frames=2, hop_seconds=0.01)
    assert llds.shape == (2, LLD_DIMS["compare"]) and not llds.any()


def test_an_unknown_opensmile_level_is_refused():
    with pytest.raises(FunctionalsError, match="unknown openSMILE level"):
        make_smile("egemaps", level="frames")


def test_feature_sets_are_named_by_short_or_opensmile_name_and_unknown_ones_are_refused():
    assert resolve_feature_set("eGeMAPSv02") == "egemaps" and resolve_feature_set("ComParE_2016") == "compare"
    with pytest.raises(FunctionalsError, match="unknown functional set"):
        resolve_feature_set("is09")


def test_bad_clips_are_quarantined_with_a_reason_and_every_format_serlib_reads_is_processed(corpus, tmp_path):
    fs = prepare_functionals(corpus, "egemaps", cache_dir=tmp_path / "cache", progress=False)
    assert sorted(fs.utt_ids) == ["a1.wav", "a2.flac", "b1.ogg", "b2.wav"]  # Opus and 48 kHz included
    assert dict(zip(fs.quarantine["utt_id"], fs.quarantine["reason"])) == {"c1.wav": "unreadable", "c2.wav": "too-short"}
    assert fs.values.shape == (4, 88) and len(fs.names) == 88 and fs.computed == 6


def test_a_second_preparation_loads_the_cache_without_extracting(corpus, tmp_path):
    first = prepare_functionals(corpus, "egemaps", cache_dir=tmp_path / "cache", progress=False)
    functionals._MEMO.clear()  # force a read from disk
    again = prepare_functionals(corpus, "egemaps", cache_dir=tmp_path / "cache", progress=False)
    assert again.computed == 0 and again.utt_ids == first.utt_ids
    np.testing.assert_array_equal(again.values, first.values)
    assert (again.path / "meta.json").is_file() and again.key == first.key


def test_an_interrupted_extraction_recomputes_only_the_missing_or_truncated_chunks(corpus, tmp_path):
    first = prepare_functionals(corpus, "egemaps", cache_dir=tmp_path / "cache", chunk_size=2, progress=False)
    chunks = sorted(first.path.glob("chunk-*.npz"))
    assert len(chunks) == 3
    chunks[0].unlink()
    chunks[2].write_bytes(chunks[2].read_bytes()[:50])  # a torn write
    (first.path / "meta.json").unlink()
    functionals._MEMO.clear()
    again = prepare_functionals(corpus, "egemaps", cache_dir=tmp_path / "cache", chunk_size=2, progress=False)
    assert again.computed == 4
    np.testing.assert_array_equal(again.values, first.values)


def test_the_cache_depends_on_the_feature_set_and_the_corpus_copy(corpus, tmp_path):
    e = prepare_functionals(corpus.iloc[:2], "egemaps", cache_dir=tmp_path / "c", progress=False)
    c = prepare_functionals(corpus.iloc[:2], "compare", cache_dir=tmp_path / "c", progress=False)
    assert e.path != c.path and c.values.shape == (2, 6373)
    relabelled = corpus.iloc[:2].assign(label="angry")
    assert prepare_functionals(relabelled, "egemaps", cache_dir=tmp_path / "c", progress=False).path != e.path


def test_matrix_returns_rows_in_the_requested_order_with_nan_rows_for_clips_without_functionals(corpus, tmp_path):
    fs = prepare_functionals(corpus, "egemaps", cache_dir=tmp_path / "cache", progress=False)
    m = fs.matrix(["b1.ogg", "c1.wav", "a1.wav"])
    np.testing.assert_array_equal(m[0], fs.values[fs.utt_ids.index("b1.ogg")])
    assert np.isnan(m[1]).all() and np.isfinite(m[2]).all()


def test_cache_files_load_without_pickle(corpus, tmp_path):
    fs = prepare_functionals(corpus, "egemaps", cache_dir=tmp_path / "cache", progress=False)
    for chunk in fs.path.glob("chunk-*.npz"):
        with np.load(chunk, allow_pickle=False) as z:
            assert {"utt_ids", "values", "bad_ids", "bad_reasons", "bad_details"} <= set(z.files)
