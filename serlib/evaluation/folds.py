"""The mean of folds: how a protocol's per-fold test scores become one figure (the report's and the model cards')."""

from __future__ import annotations

import pandas as pd


def mean_of_folds(runs: pd.DataFrame, column: str = "test_uar") -> tuple[float, float, int]:
    """Mean and sample std over folds of the per-fold mean over seeds; and the number of folds (NaN, NaN, 0 if none).

    ``runs`` has one row per run with its ``fold`` and the score in ``column``.
    """
    if runs.empty:
        return float("nan"), float("nan"), 0
    per_fold = runs.groupby("fold")[column].mean()
    return float(per_fold.mean()), float(per_fold.std(ddof=1)) if len(per_fold) > 1 else 0.0, int(len(per_fold))


__all__ = ["mean_of_folds"]
