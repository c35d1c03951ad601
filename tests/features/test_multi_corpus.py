"""Several corpora as one training table: which clips train, which validate, how each corpus is standardised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serlib.features.multi_corpus import build_table, fold_statistics, standardise, training_classes


def corpus(name: str, speakers: int, labels: list[str], shift: float, per_speaker: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = [{"utt_id": f"{name}{s}-{k}", "label": labels[k % len(labels)], "speaker": f"s{s}"}
            for s in range(speakers) for k in range(per_speaker)]
    usable = pd.DataFrame(rows)
    features = (rng.standard_normal((len(usable), 2, 3)) + shift).astype(np.float32)
    return usable, features


def target_split(usable: pd.DataFrame, held_out: bool = False) -> pd.Series:
    if held_out:
        return pd.Series("test", index=usable.index, dtype=object)
    part = {"s0": "test", "s1": "val"}
    return pd.Series([part.get(s, "train") for s in usable["speaker"]], index=usable.index, dtype=object)


@pytest.fixture
def two_corpora():
    target, t_features = corpus("t", 4, ["neutral", "angry"], shift=0.0)
    other, o_features = corpus("o", 5, ["neutral", "angry", "fear"], shift=10.0, seed=1)
    return target, t_features, {"other": (other, o_features, "fp-other")}


def test_an_extra_corpus_joins_training_only_and_never_shares_ids_or_speakers(two_corpora):
    target, t_features, extras = two_corpora
    table = build_table(target, target_split(target), t_features, "t", extras)
    rows = table.usable[table.corpus == "other"]
    assert set(table.assignment[rows.index]) == {"train"}
    assert rows["speaker"].str.startswith("other/").all() and rows["utt_id"].str.startswith("other/").all()
    assert list(table.usable["utt_id"][: len(target)]) == list(target["utt_id"])
    assert table.fingerprints == {"other": "fp-other"}


def test_a_held_out_corpus_takes_its_validation_speakers_from_the_other_corpora(two_corpora):
    target, t_features, extras = two_corpora
    table = build_table(target, target_split(target, held_out=True), t_features, "t", extras)
    other = table.assignment[(table.corpus == "other")]
    assert {"train", "val"} == set(other)
    assert set(table.assignment[table.corpus == "t"]) == {"test"}
    spoke = table.usable.assign(part=table.assignment)[table.corpus == "other"].groupby("speaker")["part"].nunique()
    assert (spoke == 1).all()  # whole speakers move to validation


def test_extra_classes_are_dropped_or_kept_after_the_target_classes(two_corpora):
    target, t_features, extras = two_corpora
    table = build_table(target, target_split(target), t_features, "t", extras)
    assert training_classes(["neutral", "angry"], table, "drop") == ["neutral", "angry"]
    assert training_classes(["neutral", "angry"], table, "mask") == ["neutral", "angry", "fear"]
    with pytest.raises(ValueError, match="extra_classes"):
        training_classes(["neutral"], table, "keep")


def test_per_corpus_standardisation_takes_each_corpus_shift_out(two_corpora):
    target, t_features, extras = two_corpora
    table = build_table(target, target_split(target), t_features, "t", extras)
    pooled, per_corpus = standardise(table, "pooled"), standardise(table, "per-corpus")
    other = table.corpus == "other"
    assert abs(pooled.X[other].mean() - pooled.X[~other].mean()) > 1.0  # the corpora stay apart
    assert abs(per_corpus.X[other].mean()) < 1e-4
    train_t = (table.corpus == "t") & (table.assignment == "train").to_numpy()
    assert np.allclose(per_corpus.X[train_t].mean(axis=0), 0, atol=1e-4)
    assert per_corpus.per_corpus["t"][1] == "its own training clips"


def test_a_held_out_corpus_uses_the_training_statistics_unless_its_own_are_asked_for(two_corpora):
    target, t_features, extras = two_corpora
    table = build_table(target, target_split(target, held_out=True), t_features, "t", extras)
    inductive = standardise(table, "per-corpus")
    transductive = standardise(table, "per-corpus", own_test_statistics=True)
    held = table.corpus == "t"
    assert inductive.per_corpus["t"][1] == "every training clip"
    assert "transductive" in transductive.per_corpus["t"][1]
    assert abs(transductive.X[held].mean()) < 1e-4 < abs(inductive.X[held].mean())
    with pytest.raises(ValueError, match="corpus_norm"):
        standardise(table, "per-speaker")


def test_two_standardisations_fold_into_one():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)) * 4 + 2
    m1, s1, m2, s2 = rng.standard_normal(3), rng.random(3) + 0.5, rng.standard_normal(3), rng.random(3) + 0.5
    mean, std = fold_statistics(m1, s1, m2, s2)
    assert np.allclose(((x - m1) / s1 - m2) / s2, (x - mean) / std)


def test_corpus_weights_keep_a_mean_of_one_and_give_each_corpus_its_share():
    from serlib.features.multi_corpus import corpus_weights

    corpora = np.array(["big"] * 90 + ["own"] * 10)
    assert np.allclose(corpus_weights(corpora, "clips"), 1)
    balanced = corpus_weights(corpora, "balanced")
    assert balanced.mean() == pytest.approx(1) and balanced[corpora == "own"].sum() == pytest.approx(50)
    three = np.array(["a"] * 60 + ["b"] * 30 + ["own"] * 10)
    half = corpus_weights(three, "own-half", own="own")
    assert half[three == "own"].sum() == pytest.approx(50) and half[three == "a"].sum() == pytest.approx(25)
    assert np.allclose(corpus_weights(three, "own-half", own="held-out"), corpus_weights(three, "balanced"))
    with pytest.raises(ValueError, match="corpus_weight"):
        corpus_weights(three, "speakers")
