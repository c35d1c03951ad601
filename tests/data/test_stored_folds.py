"""CREMA-D's 5 actor-independent folds are a file in the project, so they never change with code."""

from __future__ import annotations

import pandas as pd

from serlib.data.splits import get_split, n_folds, stored_speaker_folds


def test_cremad_folds_put_each_of_the_91_actors_in_exactly_one_of_5_sex_balanced_folds():
    folds = stored_speaker_folds("cremad")
    assert folds is not None and len(folds) == 91
    assert sorted(set(folds.values())) == [0, 1, 2, 3, 4]
    table = pd.read_csv("serlib/data/folds/speaker_cv_cremad.csv", comment="#", dtype={"speaker": str})
    per_fold = table.groupby("fold").agg(actors=("speaker", "size"), male=("gender", lambda g: (g == "M").sum()))
    assert per_fold["actors"].between(18, 19).all() and per_fold["male"].between(9, 10).all()


def test_corpora_without_a_stored_file_use_the_seeded_search():
    assert stored_speaker_folds("emodb") is None and stored_speaker_folds("savee") is None


def test_speaker_cv_on_cremad_follows_the_stored_file(tmp_path):
    manifest = pd.DataFrame({
        "utt_id": [f"{a}_{i}" for a in sorted(stored_speaker_folds("cremad")) for i in range(2)],
        "speaker": [a for a in sorted(stored_speaker_folds("cremad")) for _ in range(2)],
        "label": ["angry", "sad"] * 91, "gender": ["M", "F"] * 91,
    })
    assert n_folds(manifest, "speaker-cv", corpus="cremad") == 5
    stored = stored_speaker_folds("cremad")
    for fold in range(5):
        a = get_split(manifest, "speaker-cv", fold=fold, corpus="cremad")
        tested = set(manifest.loc[a.values == "test", "speaker"])
        assert tested == {s for s, f in stored.items() if f == fold}
        assert not tested & set(manifest.loc[a.values != "test", "speaker"])


def test_a_copy_with_actors_outside_the_stored_file_falls_back_to_the_search_and_says_so():
    manifest = pd.DataFrame({"utt_id": [f"u{i}" for i in range(24)], "speaker": [f"9{i % 6:03d}" for i in range(24)],
                             "label": ["angry", "sad", "happy", "neutral"] * 6, "gender": ["M", "F"] * 12})
    assert n_folds(manifest, "speaker-cv", corpus="cremad") == 6
    a = get_split(manifest, "speaker-cv", fold=0, corpus="cremad")
    assert "stored folds not used: 6 speaker(s)" in a.attrs["note"]
