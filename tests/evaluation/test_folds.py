"""A protocol's figure is the mean over folds of each fold's mean over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serlib.evaluation.folds import mean_of_folds


def test_the_mean_of_folds_averages_the_seeds_of_each_fold_first():
    runs = pd.DataFrame({"fold": [1, 1, 1, 2], "seed": [0, 1, 2, 0], "test_uar": [0.2, 0.4, 0.6, 0.8]})
    mean, std, n = mean_of_folds(runs)
    assert n == 2 and mean == pytest.approx(0.6) and std == pytest.approx(np.std([0.4, 0.8], ddof=1))


def test_one_fold_has_no_spread_and_no_runs_no_figure():
    assert mean_of_folds(pd.DataFrame({"fold": [1, 1], "test_uar": [0.5, 0.7]})) == (pytest.approx(0.6), 0.0, 1)
    mean, std, n = mean_of_folds(pd.DataFrame(columns=["fold", "test_uar"]))
    assert n == 0 and np.isnan(mean) and np.isnan(std)
