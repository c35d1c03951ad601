"""Specifications of serlib.data.splits: speaker independence, folds, EmoBox fold files."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serlib.data import splits as S

LABELS = ["neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"]
EMOBOX_REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "emobox"


def make_manifest(n_speakers: int = 12, *, seed: int = 0, skewed: bool = True, corpus: str = "toy") -> pd.DataFrame:
    """A toy manifest: speakers S00.. with alternating gender and (optionally) uneven label mixes."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_speakers):
        for lab in LABELS:
            n = int(rng.integers(2, 9)) if skewed else 4
            for i in range(n):
                rows.append(
                    {
                        "utt_id": f"S{s:02d}_{lab}_{i}",
                        "path": f"/x/S{s:02d}_{lab}_{i}.wav",
                        "corpus": corpus,
                        "speaker": f"S{s:02d}",
                        "gender": "F" if s % 2 else "M",
                        "label": lab,
                    }
                )
    return pd.DataFrame(rows)


def speaker_of(corpus: str, utt_id: str) -> str:
    if corpus == "ravdess":
        return utt_id.split("-")[-1]
    if corpus == "iemocap":  # Ses01F_impro04_M003 -> Ses01M (the actor who speaks)
        return utt_id[:5] + utt_id.rsplit("_", 1)[1][0]
    if corpus == "emodb":
        return utt_id[:2]
    if corpus == "cremad":
        return utt_id[:4]
    return utt_id.split("_")[0]  # savee JE_n23, tess OAF_back_angry


def manifest_from_fold_file(corpus: str, drop: int = 0) -> pd.DataFrame:
    table = S.load_emobox_fold_file(corpus).drop_duplicates("utt_id").reset_index(drop=True)
    m = pd.DataFrame(
        {
            "utt_id": table["utt_id"],
            "corpus": corpus,
            "speaker": [speaker_of(corpus, u) for u in table["utt_id"]],
            "gender": None,
            "label": table["label"],
        }
    )
    return m.iloc[drop:].reset_index(drop=True)


def label_tv(manifest: pd.DataFrame, mask: pd.Series) -> float:
    whole = manifest["label"].value_counts(normalize=True)
    part = manifest.loc[mask, "label"].value_counts(normalize=True).reindex(whole.index, fill_value=0)
    return float(0.5 * (whole - part).abs().sum())


# ------------------------------------------------------------------ the required property

TOY = make_manifest(12)


def _speaker_independent_cases():
    for seed in (0, 1, 2):
        yield pytest.param(
            "speaker-split", lambda seed=seed: [S.speaker_split(TOY, seed=seed)], id=f"speaker-split-seed{seed}"
        )
    yield pytest.param("speaker-cv", lambda: S.speaker_cv_folds(TOY), id="speaker-cv-default")
    yield pytest.param("speaker-cv", lambda: S.speaker_cv_folds(TOY, n_folds=12, seed=3), id="speaker-cv-loso")
    for corpus in ("ravdess", "savee", "iemocap"):
        yield pytest.param(
            "emobox",
            lambda corpus=corpus: S.emobox_folds(corpus, manifest_from_fold_file(corpus)),
            id=f"emobox-{corpus}",
        )


@pytest.mark.parametrize(("protocol", "make_folds"), list(_speaker_independent_cases()))
def test_no_speaker_in_two_of_train_val_test_for_every_speaker_independent_protocol_and_fold(protocol, make_folds):
    folds = make_folds()
    assert folds
    for k, a in enumerate(folds):
        m = TOY if protocol != "emobox" else manifest_from_fold_file(a.attrs["corpus"])
        S.assert_speaker_independent(m, a)  # raises on any leak
        spk = {p: set(m.loc[a == p, "speaker"]) for p in S.SPLITS}
        assert not spk["train"] & spk["test"], (protocol, k)
        assert not spk["train"] & spk["val"], (protocol, k)
        assert not spk["val"] & spk["test"], (protocol, k)
        assert all(spk[p] for p in S.SPLITS), f"{protocol} fold {k}: an empty part"
        assert a.attrs["protocol"] == protocol


# ------------------------------------------------------------------ speaker_split


def test_speaker_split_is_deterministic_per_seed_and_differs_across_seeds():
    a0 = S.speaker_split(TOY, seed=0)
    assert a0.equals(S.speaker_split(TOY, seed=0))
    others = [S.speaker_split(TOY, seed=s) for s in (1, 2, 3)]
    assert any(not a0.equals(o) for o in others)
    assert a0.name == "split" and a0.index.equals(TOY.index)
    assert set(a0) == {"train", "val", "test"}


def test_speaker_split_sizes_labels_and_gender_are_balanced():
    a = S.speaker_split(TOY, val_fraction=0.15, test_fraction=0.2, seed=0)
    frac = a.value_counts(normalize=True)
    assert abs(frac["test"] - 0.2) < 0.08 and abs(frac["val"] - 0.15) < 0.08
    for p in S.SPLITS:
        assert label_tv(TOY, a == p) < 0.1, p
    # better stratified than a typical random choice of as many test speakers
    rng = np.random.default_rng(0)
    speakers = sorted(TOY["speaker"].unique())
    n_test = TOY.loc[a == "test", "speaker"].nunique()
    random_tv = [label_tv(TOY, TOY["speaker"].isin(rng.choice(speakers, n_test, replace=False))) for _ in range(50)]
    assert label_tv(TOY, a == "test") < np.median(random_tv)
    # both genders in test (6 M / 6 F speakers)
    assert set(TOY.loc[a == "test", "gender"]) == {"M", "F"}


def test_speaker_split_needs_one_speaker_per_part():
    with pytest.raises(S.SplitError, match="at least 3 speakers"):
        S.speaker_split(make_manifest(2))


# ------------------------------------------------------------------ speaker_cv


@pytest.mark.parametrize(("n_speakers", "n_folds", "expected"), [(12, None, 5), (7, None, 7), (12, 3, 3)])
def test_speaker_cv_tests_every_speaker_exactly_once(n_speakers, n_folds, expected):
    m = make_manifest(n_speakers, seed=n_speakers)
    folds = S.speaker_cv_folds(m, n_folds=n_folds)
    assert len(folds) == expected
    if n_folds is None:
        assert S.n_folds(m, "speaker-cv") == expected
    tested = pd.concat([m.loc[f == "test", "speaker"].drop_duplicates() for f in folds])
    assert sorted(tested) == sorted(m["speaker"].unique())  # each speaker once, none twice
    counts = [int((f == "test").sum()) for f in folds]
    assert max(counts) - min(counts) <= 0.5 * np.mean(counts)
    for f in folds:
        assert (f == "val").any()


# ------------------------------------------------------------------ carve_validation


def test_carve_validation_never_touches_test_and_moves_whole_speakers():
    def initial(s: str) -> str:
        return "test" if s in ("S00", "S01") else "unused" if s == "S11" else "train"

    base = TOY["speaker"].map(initial).rename("split")
    out = S.carve_validation(TOY, base, fraction=0.15, seed=0)
    assert (out[base == "test"] == "test").all()
    assert (out[base == "unused"] == "unused").all()
    assert set(out[base == "train"]) == {"train", "val"}
    assert ((out == "val") <= (base == "train")).all()
    assert out.attrs["val_level"] == "speaker"
    S.assert_speaker_independent(TOY, out)
    assert base.equals(TOY["speaker"].map(initial).rename("split"))  # the input is not modified


def test_carve_validation_falls_back_to_utterance_level_and_says_so():
    two = TOY[TOY["speaker"].isin(["S00", "S01", "S02"])].copy()
    base = two["speaker"].map(lambda s: "test" if s == "S00" else "train").rename("split")
    out = S.carve_validation(two, base, fraction=0.2, seed=0)
    assert "utterance level" in out.attrs["note"] and "2 training speaker" in out.attrs["note"]
    assert (out[base == "test"] == "test").all()
    assert 0.1 < (out == "val").sum() / (base == "train").sum() < 0.3
    assert set(two.loc[out == "val", "label"]) == set(LABELS)  # stratified by label
    # a split that already mixes speakers between train and test also falls back
    mixed = pd.Series(np.where(np.arange(len(TOY)) % 5 == 0, "test", "train"), index=TOY.index, name="split")
    out2 = S.carve_validation(TOY, mixed, seed=0)
    assert out2.attrs["val_level"] == "utterance" and (out2[mixed == "test"] == "test").all()


# ------------------------------------------------------------------ EmoBox fold files

EXPECTED = {  # corpus: (folds, train per fold or None, test per fold)
    "ravdess": (6, 1200, 240),
    "emodb": (5, 428, 107),
    "savee": (4, 360, 120),
    "iemocap": (5, None, None),
    "cremad": (1, 5586, 1856),
    "tess": (1, 2100, 700),
}


@pytest.mark.parametrize("corpus", S.EMOBOX_CORPORA)
def test_emobox_fold_files_exist_with_expected_fold_and_split_counts(corpus):
    n, n_train, n_test = EXPECTED[corpus]
    table = S.load_emobox_fold_file(corpus)
    assert list(table.columns) == ["fold", "split", "utt_id", "label"]
    assert sorted(table["fold"].unique()) == list(range(n))
    sizes = table.groupby(["fold", "split"]).size().unstack()
    assert set(sizes.columns) == {"train", "test"}
    if n_train is not None:
        assert (sizes["train"] == n_train).all() and (sizes["test"] == n_test).all()
    assert set(table["label"]) <= set(S.CANONICAL_LABELS)
    assert not table.duplicated(["fold", "utt_id"]).any()
    m = manifest_from_fold_file(corpus)
    assert S.n_folds(m, "emobox") == n


def test_emobox_iemocap_is_leave_one_session_out_with_four_classes():
    table = S.load_emobox_fold_file("iemocap")
    assert set(table["label"]) == {"neutral", "happy", "angry", "sad"}
    for k in range(5):
        test = table[(table["fold"] == k) & (table["split"] == "test")]
        assert set(test["utt_id"].str[:5]) == {f"Ses0{k + 1}"}


def test_emobox_utt_ids_follow_serlib_conventions():
    ids = {c: set(S.load_emobox_fold_file(c)["utt_id"]) for c in S.EMOBOX_CORPORA}
    assert "03-01-07-02-02-02-11" in ids["ravdess"]
    assert "1052_WSI_ANG_XX" in ids["cremad"]
    assert "JE_n23" in ids["savee"]
    assert "Ses01F_impro04_F000" in ids["iemocap"]
    assert "03a01Fa" in ids["emodb"]
    assert "OAF_should_fear" in ids["tess"]


def test_emobox_ravdess_folds_are_speaker_independent_and_tolerate_missing_files():
    m = manifest_from_fold_file("ravdess", drop=6)
    with pytest.warns(S.FoldFileWarning, match="6 fold-file utterance"):
        folds = S.emobox_folds("ravdess", m)
    assert len(folds) == 6
    test_actors = []
    for a in folds:
        assert a.attrs["n_missing"] == 6
        S.assert_speaker_independent(m, a)
        test_actors.append(frozenset(m.loc[a == "test", "speaker"]))
        assert len(test_actors[-1]) == 4
    assert frozenset().union(*test_actors) == frozenset(f"{i:02d}" for i in range(1, 25))


@pytest.mark.parametrize("corpus", ["cremad", "emodb", "tess"])
def test_emobox_folds_that_are_not_speaker_independent_are_flagged(corpus):
    m = manifest_from_fold_file(corpus)
    a = S.emobox_folds(corpus, m)[0]
    assert S.leaking_speakers(m, a)
    with pytest.raises(S.SplitError, match="leak"):
        S.assert_speaker_independent(m, a)
    assert a.attrs["val_level"] == "utterance"
    emobox_test = S.load_emobox_fold_file(corpus).query("fold == 0 and split == 'test'")["utt_id"]
    assert set(m.loc[a == "test", "utt_id"]) == set(emobox_test)  # val never takes from test


def test_emobox_marks_utterances_outside_the_fold_file_unused():
    m = manifest_from_fold_file("iemocap")
    extra = pd.DataFrame(
        [{"utt_id": "Ses01F_impro01_F000x", "corpus": "iemocap", "speaker": "Ses01F", "gender": None, "label": "frustrated"}]
    )
    m = pd.concat([m, extra], ignore_index=True)
    a = S.get_split(m, "emobox", fold=0)
    assert a.iloc[-1] == S.UNUSED
    assert a.attrs["corpus"] == "iemocap" and a.attrs["fold"] == 0
    assert set(a) == {"train", "val", "test", "unused"}


# ------------------------------------------------------------------ entry points and reports


def test_out_of_range_fold_raises_split_error_naming_the_valid_range():
    with pytest.raises(S.SplitError, match=r"0\.\.0"):
        S.get_split(TOY, "speaker-split", fold=1)
    with pytest.raises(S.SplitError, match=r"0\.\.4"):
        S.get_split(TOY, "speaker-cv", fold=5)
    m = manifest_from_fold_file("ravdess")
    with pytest.raises(S.SplitError, match=r"0\.\.5"):
        S.get_split(m, "emobox", fold=6)
    with pytest.raises(S.SplitError, match=r"0\.\.5"):
        S.get_split(m, "emobox", fold=-1)
    with pytest.raises(S.SplitError, match="speaker-split"):
        S.get_split(TOY, "random-80-20")


def test_get_split_matches_the_protocol_functions():
    assert S.get_split(TOY, "speaker-split", seed=4).equals(S.speaker_split(TOY, seed=4))
    assert S.get_split(TOY, "speaker-cv", fold=2).equals(S.speaker_cv_folds(TOY)[2])
    m = manifest_from_fold_file("savee")
    assert S.get_split(m, "emobox", fold=3, corpus="SAVEE").equals(S.emobox_folds("savee", m)[3])


def test_split_table_counts_utterances_speakers_and_labels():
    a = S.speaker_split(TOY, seed=0)
    t = S.split_table(TOY, a)
    assert list(t.index) == ["train", "val", "test"]
    assert t["utterances"].sum() == len(TOY)
    assert t.loc["test", "speakers"] == sorted(TOY.loc[a == "test", "speaker"].unique())
    assert t[LABELS].to_numpy().sum() == len(TOY)
    assert list(t.columns[3:]) == [lab for lab in S.CANONICAL_LABELS if lab in LABELS]


def test_assert_speaker_independent_names_the_leaking_speakers():
    a = TOY["speaker"].map(lambda s: "test" if s == "S00" else "train").rename("split")
    a[TOY.index[(TOY["speaker"] == "S03")][:2]] = "val"
    with pytest.raises(S.SplitError, match="S03"):
        S.assert_speaker_independent(TOY, a)


# ------------------------------------------------------------------ fold-file builder


def test_build_emobox_fold_file_maps_keys_labels_and_folds(tmp_path):
    src = tmp_path / "tess"
    src.mkdir()
    pd.DataFrame(
        {
            "fold": [1, 1, 1],
            "split": ["test", "train", "train"],
            "key": ["tess-OAF-should-fear", "tess-YAF-back-ps", "tess-OAF-back-neutral"],
            "path": ["tess/OAF_should_fear.wav", "tess/YAF_back_ps.wav", "tess/OAF_back_neutral.wav"],
            "emotion": ["fear", "ps", "Neutral"],
            "length_s": [1.0, 1.0, 1.0],
            "sample_rate": [24414] * 3,
        }
    ).to_csv(src / "tess_folds.csv", index=False)
    (src / "label_map.json").write_text(json.dumps({"fear": "Fear", "ps": "Surprise", "neutral": "Neutral"}))
    out = S.build_emobox_fold_file(src / "tess_folds.csv", tmp_path / "emobox_tess.csv.gz")
    back = pd.read_csv(tmp_path / "emobox_tess.csv.gz")
    assert back.to_dict("list") == out.to_dict("list")
    assert dict(zip(back["utt_id"], back["label"])) == {
        "OAF_should_fear": "fear", "YAF_back_ps": "surprise", "OAF_back_neutral": "neutral",
    }  # fmt: skip
    assert set(back["fold"]) == {0}
    first = (tmp_path / "emobox_tess.csv.gz").read_bytes()
    S.build_emobox_fold_file(src / "tess_folds.csv", tmp_path / "emobox_tess.csv.gz")
    assert (tmp_path / "emobox_tess.csv.gz").read_bytes() == first  # reproducible bytes
    assert gzip.decompress(first).startswith(b"fold,split,utt_id,label\n")


@pytest.mark.skipif(not EMOBOX_REF.is_dir(), reason="EmoBox reference metadata not available")
def test_packaged_fold_files_are_reproducible_from_the_emobox_metadata(tmp_path):
    written = S.build_all_emobox_fold_files(EMOBOX_REF, tmp_path)
    assert set(written) == set(S.EMOBOX_CORPORA)
    packaged = Path(S.__file__).parent / "folds"
    for corpus, path in written.items():
        assert path.read_bytes() == (packaged / path.name).read_bytes(), corpus


def test_emobox_warns_about_label_mismatches():
    m = manifest_from_fold_file("savee")
    m.loc[0, "label"] = "calm"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = S.emobox_folds("savee", m)[0]
    assert a.attrs["n_label_mismatch"] == 1
    assert any(issubclass(w.category, S.FoldFileWarning) for w in caught)


def test_emobox_uses_only_its_corpus_in_a_mixed_manifest():
    savee = manifest_from_fold_file("savee").assign(corpus="SAVEE")
    mixed = pd.concat([TOY, savee], ignore_index=True)
    folds = S.emobox_folds("savee", mixed)
    assert len(folds) == 4
    for a in folds:
        assert (a[mixed["corpus"] == "toy"] == S.UNUSED).all()
        assert (a[mixed["corpus"] == "SAVEE"] != S.UNUSED).all()
        S.assert_speaker_independent(mixed, a)


@pytest.mark.parametrize("protocol", ["loco", "loco-6"])
def test_leaving_a_corpus_out_makes_every_clip_a_test_clip_in_one_fold(protocol):
    manifest = make_manifest(6)
    assignment = S.get_split(manifest, protocol)
    assert S.n_folds(manifest, protocol) == 1 and set(assignment) == {"test"}
    assert "other corpora" in assignment.attrs["note"]
    with pytest.raises(S.SplitError, match="out of range"):
        S.get_split(manifest, protocol, fold=1)
    assert set(S.LOCO_CLASSES["loco"]) < set(S.LOCO_CLASSES["loco-6"])
