"""Statistics that respect speakers: the resampling unit is the speaker, UARs are pooled over folds."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from serlib.evaluation.metrics import bootstrap_ci, unweighted_average_recall
from serlib.evaluation.stats import (
    StatsError, friedman_nemenyi, load_predictions, nemenyi_q, paired_speaker_bootstrap, per_speaker_table,
    plot_critical_difference, plot_per_speaker, speaker_bootstrap, speaker_counts, speaker_resample_weights,
    system_uar,
)


def frame(rows: list[tuple[str, str, str]], seed: int = 0) -> pd.DataFrame:
    """(speaker, true, predicted) rows -> a predictions frame with utt ids."""
    df = pd.DataFrame(rows, columns=["speaker", "true", "predicted"])
    return df.assign(utt_id=[f"u{i}" for i in range(len(df))], seed=seed)


def synthetic_system(n_speakers: int, per_speaker: int, seeds: int, skill: np.ndarray, rng: np.random.Generator,
                     classes: int = 6) -> pd.DataFrame:
    """Predictions of a system whose accuracy on speaker s is skill[s] (same clips for every seed)."""
    spk = np.repeat([f"s{i:03d}" for i in range(n_speakers)], per_speaker)
    true = rng.integers(0, classes, len(spk))
    utt = [f"u{i}" for i in range(len(spk))]
    frames = []
    for seed in range(seeds):
        hit = rng.random(len(spk)) < np.repeat(skill, per_speaker)
        pred = np.where(hit, true, (true + rng.integers(1, classes, len(spk))) % classes)
        frames.append(pd.DataFrame({"utt_id": utt, "speaker": spk, "true": true.astype(str),
                                    "predicted": pred.astype(str), "seed": seed}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- hand-computed cases


def test_two_speaker_bootstrap_takes_only_the_three_enumerable_values_with_their_probabilities():
    # speaker a: both clips right; speaker b: both wrong. Resamples {a,a}, {a,b}, {b,b} have UAR 1, 0.5, 0
    # with probabilities 1/4, 1/2, 1/4.
    preds = frame([("a", "x", "x"), ("a", "y", "y"), ("b", "x", "y"), ("b", "y", "x")])
    res = speaker_bootstrap(preds, n_resamples=8000, seed=3)
    assert res.uar == pytest.approx(0.5)
    values, freq = np.unique(res.distribution, return_counts=True)
    assert values.tolist() == [0.0, 0.5, 1.0]
    assert freq / freq.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.02)
    assert (res.ci_low, res.ci_high) == (0.0, 1.0)


def test_resampled_uar_equals_sklearn_on_the_replicated_clips_for_every_possible_resample():
    # Three speakers with unequal clip counts and classes; enumerate all 10 speaker multisets of size 3.
    preds = frame([("a", "x", "x"), ("a", "y", "x"), ("a", "z", "z"),
                   ("b", "x", "x"), ("b", "x", "y"),
                   ("c", "y", "y"), ("c", "z", "x"), ("c", "z", "z"), ("c", "x", "x")])
    counts = speaker_counts(preds)
    speakers = counts.speakers
    exact_mean = 0.0
    for draw in itertools.combinations_with_replacement(range(3), 3):
        w = np.bincount(draw, minlength=3)
        rows = pd.concat([preds[preds["speaker"] == speakers[s]] for s in draw])
        brute = unweighted_average_recall(rows["true"], rows["predicted"])  # sklearn's balanced accuracy
        assert system_uar(counts, w[None, :])[0] == pytest.approx(brute)
        prob = math.factorial(3) / np.prod([math.factorial(c) for c in w]) / 3 ** 3
        exact_mean += prob * brute
    res = speaker_bootstrap(preds, n_resamples=20000, seed=0)
    assert res.distribution.mean() == pytest.approx(exact_mean, abs=0.005)


def test_resample_weights_draw_as_many_speakers_as_there_are_with_replacement():
    w = speaker_resample_weights(5, 1000, seed=1)
    assert w.shape == (1000, 5) and (w.sum(1) == 5).all()
    assert (w.max(1) > 1).mean() > 0.9  # most resamples repeat some speaker
    assert w.mean() == pytest.approx(1.0, abs=0.05)


# --------------------------------------------------------------------------- seeds and pooling


def test_point_estimate_is_the_mean_over_seeds_of_the_uar_pooled_over_folds():
    rng = np.random.default_rng(0)
    preds = synthetic_system(8, 30, 3, rng.uniform(0.3, 0.9, 8), rng)
    per_seed = [balanced_accuracy_score(g["true"], g["predicted"]) for _, g in preds.groupby("seed")]
    assert speaker_bootstrap(preds, n_resamples=10).uar == pytest.approx(np.mean(per_seed))
    pooled = balanced_accuracy_score(preds["true"], preds["predicted"])
    assert speaker_bootstrap(preds, n_resamples=10, seed_mode="pool").uar == pytest.approx(pooled)
    assert speaker_bootstrap(preds, n_resamples=10, replicate=None).uar == pytest.approx(pooled)


def test_speaker_intervals_are_wider_than_utterance_intervals_when_speakers_differ():
    rng = np.random.default_rng(1)
    preds = synthetic_system(12, 60, 1, rng.uniform(0.2, 0.95, 12), rng)
    spk = speaker_bootstrap(preds, n_resamples=2000)
    lo, hi = bootstrap_ci(preds["true"].to_numpy(), preds["predicted"].to_numpy(), n_resamples=2000)
    assert spk.ci_low < spk.uar < spk.ci_high
    assert spk.ci_high - spk.ci_low > 1.5 * (hi - lo)


def test_2000_resamples_of_a_cremad_sized_system_take_well_under_a_second():
    rng = np.random.default_rng(2)
    preds = synthetic_system(91, 82, 3, rng.uniform(0.4, 0.8, 91), rng)  # 7462 clips x 3 seeds
    start = time.perf_counter()
    speaker_bootstrap(preds, n_resamples=2000)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------- paired comparison


def test_paired_difference_of_a_system_with_itself_is_zero_in_every_resample_and_not_significant():
    rng = np.random.default_rng(3)
    preds = synthetic_system(10, 20, 2, rng.uniform(0.3, 0.9, 10), rng)
    res = paired_speaker_bootstrap(preds, preds, n_resamples=500)
    assert np.all(res.distribution == 0) and res.difference == 0
    assert res.p_value == 1.0


def test_paired_comparison_uses_the_same_speaker_resamples_for_both_systems():
    rng = np.random.default_rng(4)
    a = synthetic_system(10, 20, 3, rng.uniform(0.5, 0.9, 10), rng)
    b = synthetic_system(10, 20, 1, rng.uniform(0.3, 0.7, 10), np.random.default_rng(5))
    res = paired_speaker_bootstrap(a, b, n_resamples=700, seed=9)  # same clip ids u0..u199 and speakers
    labels = sorted(set(a["true"]) | set(b["true"]))
    ca, cb = speaker_counts(a, labels=labels), speaker_counts(b, labels=labels)
    w = speaker_resample_weights(10, 700, seed=9)
    assert res.distribution == pytest.approx(system_uar(ca, w) - system_uar(cb, w))
    assert res.difference == pytest.approx(res.uar_a - res.uar_b)


def test_a_clearly_better_system_gets_the_smallest_possible_one_sided_p_value():
    rng = np.random.default_rng(6)
    a = synthetic_system(10, 20, 1, np.full(10, 0.95), rng)
    b = a.assign(predicted=np.where(rng.random(len(a)) < 0.3, a["true"], "0"))
    res = paired_speaker_bootstrap(a, b, n_resamples=999)
    assert res.ci_low > 0
    assert res.p_value == pytest.approx(1 / 1000)


def test_paired_comparison_refuses_systems_tested_on_different_clips():
    rng = np.random.default_rng(7)
    a = synthetic_system(6, 10, 1, np.full(6, 0.6), rng)
    with pytest.raises(StatsError, match="different clips"):
        paired_speaker_bootstrap(a, a.iloc[:-1])
    with pytest.raises(StatsError, match="different speakers"):
        paired_speaker_bootstrap(a, a[a["speaker"] != "s000"])


# --------------------------------------------------------------------------- per speaker


def test_per_speaker_table_lists_each_speaker_worst_first_with_uar_and_accuracy():
    preds = frame([("a", "x", "x"), ("a", "y", "y"), ("a", "y", "x"),
                   ("b", "x", "y"), ("b", "y", "y")])
    table = per_speaker_table(preds)
    assert table["speaker"].tolist() == ["b", "a"]
    b, a = table.iloc[0], table.iloc[1]
    assert (b.n, b.uar, b.accuracy) == (2, pytest.approx(0.5), pytest.approx(0.5))
    assert (a.n, a.uar, a.accuracy) == (3, pytest.approx((1 + 0.5) / 2), pytest.approx(2 / 3))


def test_per_speaker_uar_is_averaged_over_seeds(tmp_path):
    preds = pd.concat([frame([("a", "x", "x"), ("a", "y", "y")], seed=0), frame([("a", "x", "y"), ("a", "y", "y")], seed=1)])
    table = per_speaker_table(preds)
    assert table.loc[0, "uar"] == pytest.approx((1.0 + 0.5) / 2) and table.loc[0, "n"] == 2
    assert table.loc[0, "replicates"] == 2
    fig = plot_per_speaker(table, tmp_path / "spk.png", chance=0.5)
    assert (tmp_path / "spk.png").stat().st_size > 0 and fig.axes


def test_load_predictions_takes_fold_and_seed_from_the_run_folder_names(tmp_path):
    for fold, seed in [(1, 0), (2, 0), (1, 1)]:
        folder = tmp_path / "ravdess" / "emobox" / "tier1" / f"fold-{fold}" / f"seed-{seed}"
        folder.mkdir(parents=True)
        frame([("a", "x", "x")]).drop(columns="seed").to_csv(folder / "predictions.csv", index=False)
    preds = load_predictions(sorted(tmp_path.glob("*/*/*/fold-*/seed-*")))
    assert sorted(zip(preds["fold"], preds["seed"])) == [(1, 0), (1, 1), (2, 0)]
    with pytest.raises(StatsError, match="no predictions.csv"):
        load_predictions([tmp_path])


def test_missing_columns_are_one_clear_error():
    with pytest.raises(StatsError, match="lack the column"):
        speaker_bootstrap(pd.DataFrame({"true": ["x"], "predicted": ["x"]}))


# --------------------------------------------------------------------------- Friedman / Nemenyi


def test_nemenyi_critical_values_match_the_studentized_range():
    from scipy.stats import studentized_range

    for k in (3, 5, 10):
        assert nemenyi_q(k) == pytest.approx(studentized_range.ppf(0.95, k, np.inf) / np.sqrt(2), abs=2e-3)
    assert nemenyi_q(12) == pytest.approx(studentized_range.ppf(0.95, 12, np.inf) / np.sqrt(2))


def test_friedman_ranks_systems_within_each_corpus_and_gives_demsar_critical_difference():
    scores = pd.DataFrame({"tier1": [0.60, 0.80, 0.55, 0.70, 0.65],
                           "egemaps-svm": [0.50, 0.70, 0.50, 0.60, 0.66],
                           "compare-svm": [0.55, 0.75, 0.45, 0.65, 0.60],
                           "mfcc-svm": [0.40, 0.60, 0.40, 0.50, 0.50]},
                          index=["ravdess", "emodb", "cremad", "savee", "tess"])
    res = friedman_nemenyi(scores)
    assert res.average_ranks.to_dict() == pytest.approx({"tier1": 1.2, "egemaps-svm": 2.4, "compare-svm": 2.4,
                                                         "mfcc-svm": 4.0})
    assert res.average_ranks.index[0] == "tier1"
    from scipy.stats import friedmanchisquare

    assert res.statistic == pytest.approx(friedmanchisquare(*scores.to_numpy().T).statistic)
    assert res.critical_difference == pytest.approx(2.569 * np.sqrt(4 * 5 / (6 * 5)))
    assert res.cliques() == [["tier1", "egemaps-svm", "compare-svm"], ["egemaps-svm", "compare-svm", "mfcc-svm"]]


def test_friedman_needs_three_systems_two_corpora_and_no_gaps(tmp_path):
    with pytest.raises(StatsError, match=">= 3 systems"):
        friedman_nemenyi(pd.DataFrame({"a": [1, 2], "b": [2, 1]}))
    with pytest.raises(StatsError, match="missing"):
        friedman_nemenyi(pd.DataFrame({"a": [1, np.nan], "b": [2, 1], "c": [0, 0]}))
    res = friedman_nemenyi(pd.DataFrame({"a": [0.9, 0.8, 0.7], "b": [0.5, 0.6, 0.4], "c": [0.1, 0.2, 0.3]}))
    fig = plot_critical_difference(res, tmp_path / "cd.png")
    assert (tmp_path / "cd.png").stat().st_size > 0 and fig.axes
