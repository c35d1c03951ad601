"""Scoring runs: metrics, speaker-clustered statistics and figures.

- :mod:`serlib.evaluation.folds`    the mean of folds (a protocol's per-fold scores as one figure)
- :mod:`serlib.evaluation.metrics`  UAR, accuracy, macro P/R/F1, per-class tables, confusion, bootstrap CI
- :mod:`serlib.evaluation.stats`    speaker-clustered bootstrap CIs, paired comparisons, rank tests
- :mod:`serlib.evaluation.plots`    confusion matrix, per-class bars, training curves, UAR matrices
"""
