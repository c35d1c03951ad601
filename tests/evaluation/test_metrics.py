"""Metrics follow scikit-learn: UAR is balanced accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from serlib.evaluation.metrics import (
    bootstrap_ci, classification_report_dict, mean_std, most_confused_pairs, per_class_table,
    unweighted_average_recall,
)

Y_TRUE = ["a"] * 8 + ["b"] * 2 + ["c"] * 4
Y_PRED = ["a"] * 6 + ["b"] * 2 + ["b"] * 2 + ["c"] * 2 + ["a"] * 2


def test_uar_is_the_mean_of_per_class_recalls_not_accuracy():
    uar = unweighted_average_recall(Y_TRUE, Y_PRED)
    assert uar == pytest.approx((6 / 8 + 2 / 2 + 2 / 4) / 3)
    assert uar == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))
    report = classification_report_dict(Y_TRUE, Y_PRED, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(10 / 14)
    assert report["macro_recall"] == pytest.approx(uar)


def test_report_has_per_class_rows_and_both_confusion_matrices():
    report = classification_report_dict(Y_TRUE, Y_PRED, ["a", "b", "c"])
    table = per_class_table(report)
    assert table.loc["b", "recall"] == 100.0 and table.loc["a", "support"] == 8
    assert report["confusion_matrix"] == [[6, 2, 0], [0, 2, 0], [2, 0, 2]]
    assert np.allclose(np.sum(report["confusion_matrix_normalized"], axis=1), 1)


def test_most_confused_pairs_are_ranked_by_share_of_the_true_class():
    pairs = most_confused_pairs(classification_report_dict(Y_TRUE, Y_PRED, ["a", "b", "c"]), k=2)
    assert list(zip(pairs["true"], pairs["predicted"])) == [("c", "a"), ("a", "b")]


def test_bootstrap_interval_brackets_the_point_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    pred = np.where(rng.random(400) < 0.6, y, rng.integers(0, 4, 400))
    lo, hi = bootstrap_ci(y, pred, n_resamples=300)
    assert lo < unweighted_average_recall(y, pred) < hi and hi - lo < 0.2


def test_the_fast_uar_bootstrap_gives_the_same_interval_as_sklearn_balanced_accuracy():
    rng = np.random.default_rng(2)
    labels = np.array(["angry", "calm", "fear", "sad", "happy"])
    y = labels[rng.integers(0, 4, 150)]  # "happy" is only ever predicted, never true
    pred = np.where(rng.random(150) < 0.5, y, labels[rng.integers(0, 5, 150)])
    via_sklearn = bootstrap_ci(y, pred, lambda t, p: unweighted_average_recall(t, p), n_resamples=200, seed=3)
    assert bootstrap_ci(y, pred, n_resamples=200, seed=3) == pytest.approx(via_sklearn, abs=1e-12)


def test_mean_std_uses_the_sample_standard_deviation():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2)))
    assert mean_std([5.0]) == (5.0, 0.0)
