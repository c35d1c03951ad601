"""Evaluation metrics, following scikit-learn's names and conventions.

UAR (unweighted average recall, scikit-learn's ``balanced_accuracy_score``) is
the primary metric throughout; accuracy (weighted average recall) is reported
beside it.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)


def unweighted_average_recall(y_true: Sequence, y_pred: Sequence) -> float:
    """Mean of per-class recalls over the classes present in ``y_true``."""
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true" is expected, e.g. in bootstrap samples
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def classification_report_dict(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> dict[str, Any]:
    """Every number the report shows for one set of predictions.

    Returns a JSON-serialisable dict: ``uar``, ``accuracy``, ``macro_precision``,
    ``macro_recall``, ``macro_f1``, ``n``, ``labels``, ``per_class`` (a list of
    {label, precision, recall, f1, support}), ``confusion_matrix`` (counts,
    rows = true) and ``confusion_matrix_normalized`` (rows sum to 1).
    """
    labels = list(labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        cm_norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    present = s > 0
    return {
        "uar": unweighted_average_recall(y_true, y_pred),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(p[present].mean()),
        "macro_recall": float(r[present].mean()),
        "macro_f1": float(f[present].mean()),
        "n": int(len(y_true)),
        "labels": labels,
        "per_class": [
            {"label": lab, "precision": float(pi), "recall": float(ri), "f1": float(fi), "support": int(si)}
            for lab, pi, ri, fi, si in zip(labels, p, r, f, s)
        ],
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_normalized": cm_norm.round(6).tolist(),
    }


def bootstrap_ci(
    y_true: Sequence,
    y_pred: Sequence,
    metric: Callable[[np.ndarray, np.ndarray], float] = unweighted_average_recall,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``metric`` over utterances."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    fast = metric is unweighted_average_recall
    if fast:  # the same UAR as balanced_accuracy_score, on integer codes: 1000 resamples in milliseconds
        classes, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
        true_codes, hit, k = codes[:n], codes[:n] == codes[n:], len(classes)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        if fast:
            support = np.bincount(true_codes[idx], minlength=k)
            present = support > 0
            if present.sum() < 2:
                continue
            correct = np.bincount(true_codes[idx][hit[idx]], minlength=k)
            values.append(float(np.mean(correct[present] / support[present])))
        elif len(np.unique(y_true[idx])) >= 2:
            values.append(metric(y_true[idx], y_pred[idx]))
    lo, hi = np.percentile(values, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100])
    return float(lo), float(hi)


def per_class_table(report: dict[str, Any]) -> pd.DataFrame:
    """Per-class precision/recall/F1/support (percent) as a DataFrame, like the reference report."""
    df = pd.DataFrame(report["per_class"]).set_index("label")
    df[["precision", "recall", "f1"]] *= 100
    return df.round(2)


def most_confused_pairs(report: dict[str, Any], k: int = 5) -> pd.DataFrame:
    """The ``k`` largest off-diagonal cells of the row-normalised confusion matrix."""
    labels = report["labels"]
    cm = np.asarray(report["confusion_matrix"])
    norm = np.asarray(report["confusion_matrix_normalized"])
    rows = [
        {"true": labels[i], "predicted": labels[j], "count": int(cm[i, j]), "share_of_true_%": round(100 * norm[i, j], 1)}
        for i in range(len(labels))
        for j in range(len(labels))
        if i != j and cm[i, j] > 0
    ]
    if not rows:
        return pd.DataFrame(columns=["true", "predicted", "count", "share_of_true_%"])
    return pd.DataFrame(rows).sort_values(["share_of_true_%", "count"], ascending=False).head(k).reset_index(drop=True)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
