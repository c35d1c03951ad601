"""How Tier-1+ was chosen: the validation record of its recipe steps (read from run folders, never trains).

Tier-1+ was chosen greedily: one change at a time was added to the best
configuration so far (``configs/ablations/plus-<step>.yaml``; a change that
lowered the mean validation UAR was dropped before the next step), each step
trained on the same folds and seed. The criterion is the
**validation** UAR of the tested weights (the best epoch's; the averaged last
epochs' of an ``average_last`` candidate; validation speakers carved from the
training speakers); the test parts of those folds play no part in the choice
and are not shown here. The recipe is the step with the highest mean
validation UAR (:func:`chosen_step`).

The chosen recipe is then checked on a second corpus's validation speakers
(:data:`CHECK_CORPUS`, EmoDB, whose clips are longer and whose folds train on
fewer clips): each candidate change is added to the full recipe alone and
compared with Tier-1+ itself on the same folds and seed (:func:`check_table`).
A candidate that gains at least :data:`CHECK_RULE_POINTS` there is repeated
with two more seeds (:func:`passing_candidates`, :data:`CHECK_SEEDS`), since one
seed of a 390-clip training set moves validation UAR by several points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from serlib.core.runs import list_runs

SELECTION_STEPS: tuple[str, ...] = ("logmel", "stats", "crops", "speed", "patience")
"""The cumulative steps, in order (``tier1-plus-<step>`` run folders)."""

STEP_CHANGES = {
    "tier1": "Tier-1 as reproduced (40 MFCC, attention pooling, 4 s crops, random stretch/pitch/noise copies)",
    "logmel": "+ 64 log-mel bands with Δ and ΔΔ instead of 40 MFCC",
    "stats": "+ attentive statistics pooling (weighted mean and std)",
    "crops": "+ 2.5 s training crops, posteriors averaged over 2.5 s windows at validation/test",
    "speed": "best step so far + speed perturbation 0.9/1.1 as the cached copies (instead of random stretch/pitch/noise)",
    "patience": "best step so far + 40 epochs without early stopping (best validation epoch kept)",
}
"""What each step adds to the one before it."""


def validation_runs(results: str | Path, corpus: str, protocol: str, folds: Sequence[int],
                    names: dict[str, str], seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """The runs of the models ``names`` (row label -> run-folder name) on ``folds`` (1-based) and ``seeds``.

    One row per (label, fold, seed) with the validation UAR of the tested weights (``val_uar``: the best
    epoch's, or the averaged weights' of an ``average_last`` run); test numbers are not read.
    """
    columns = ["step", "fold", "seed", "val_uar", "best_epoch", "wall_seconds"]
    runs = list_runs(results)
    if runs.empty:
        return pd.DataFrame(columns=columns)
    keep = (runs["corpus"] == corpus) & (runs["protocol"] == protocol) & runs["fold"].isin(list(folds)) \
        & runs["seed"].isin(list(seeds)) & runs["model"].isin(list(names.values()))
    rows = runs[keep].copy()
    rows["step"] = rows["model"].map({v: k for k, v in names.items()})
    return rows[columns].reset_index(drop=True)


def validation_table(runs: pd.DataFrame, labels: Sequence[str], changes: dict[str, str],
                     folds: Sequence[int], seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """Validation UAR % per fold (mean over ``seeds``) and its mean for each label of ``runs``, in order.

    ``runs`` comes from :func:`validation_runs`. A row is marked ``complete``
    only when it has a run on every fold and seed; the mean of an incomplete
    row is left empty so it cannot be chosen by accident.
    """
    rows = []
    for label in labels:
        mine = runs[runs["step"] == label]
        by_fold = mine.groupby("fold")["val_uar"].mean()
        row: dict[str, object] = {"step": label, "change": changes.get(label, label)}
        for f in folds:
            row[f"val UAR % fold {f}"] = round(100 * float(by_fold[f]), 2) if f in by_fold.index else None
        complete = set(zip(mine["fold"], mine["seed"])) >= {(f, s) for f in folds for s in seeds}
        row["mean val UAR %"] = round(100 * float(mine["val_uar"].mean()), 2) if complete else None
        row["minutes per run"] = round(float(mine["wall_seconds"].mean()) / 60, 1) if len(mine) else None
        row["complete"] = complete
        rows.append(row)
    return pd.DataFrame(rows).set_index("step")


def selection_runs(results: str | Path, corpus: str, protocol: str, folds: Sequence[int],
                   steps: Sequence[str] = SELECTION_STEPS, seed: int = 0) -> pd.DataFrame:
    """The runs of Tier-1 and of each step on ``folds`` (1-based) and ``seed``: one row per (step, fold)."""
    names = {"tier1": "tier1", **{s: f"tier1-plus-{s}" for s in steps}}
    return validation_runs(results, corpus, protocol, folds, names, (seed,))


def selection_table(results: str | Path, corpus: str, protocol: str, folds: Sequence[int],
                    steps: Sequence[str] = SELECTION_STEPS, seed: int = 0) -> pd.DataFrame:
    """Validation UAR % per fold and its mean for Tier-1 and each step, with minutes per run; steps in order.

    A step is marked ``complete`` only when it has a run on every fold; the mean
    of an incomplete step is left empty so it cannot be chosen by accident.
    """
    runs = selection_runs(results, corpus, protocol, folds, steps, seed)
    return validation_table(runs, ["tier1", *steps], STEP_CHANGES, folds, (seed,))


CHECK_CORPUS = "emodb"
"""The second corpus whose validation speakers test the recipe (:func:`check_table`)."""

CHECK_CANDIDATES = {
    "window": "Tier-1+ scored as the mean posterior over 4 s windows (its training length)",
    "crops": "Tier-1+ with 2.5 s training crops, scored over 2.5 s windows",
    "small": "Tier-1+ with a network a quarter the size (conv 64/128, BiLSTM 64, attention 32)",
    "spkz": "Tier-1+ on per-speaker standardised log-mel frames (transductive: each test speaker's own clips)",
    "conv2d": "Tier-1+ with a 2-D convolutional front end (3x3 kernels shared across frequency on the log-mel, Δ, "
              "ΔΔ planes; 8/16/32 channels)",
    "lld": "Tier-1+ with openSMILE's 25 eGeMAPS low-level descriptors (pitch, voice quality, formants, loudness) "
           "appended to every log-mel frame",
    "multi": "Tier-1+ trained with RAVDESS's clips of the same classes added to every training part "
             "(multi-corpus; validation and test unchanged)",
    "swa": "Tier-1+ tested with the mean weights of its last 10 epochs (stochastic weight averaging) instead of "
           "its best validation epoch",
    "cmn": "Tier-1+ on log-mel frames centred on each clip's own mean frame (sentence-level mean normalisation; "
           "inductive)",
}
"""Changes to the chosen recipe tried on :data:`CHECK_CORPUS`'s validation speakers
(``configs/ablations/tplus-<name>.yaml``, run folders ``tier1-tplus-<name>``)."""


CHECK_RULE_POINTS = 3.0
"""Gain of mean validation UAR (points, seed 0) a candidate needs before it is repeated with more seeds."""

CHECK_SEEDS = (0, 1, 2)
"""Seeds of the repetition of a candidate that met :data:`CHECK_RULE_POINTS`."""


def check_table(results: str | Path, corpus: str, protocol: str, folds: Sequence[int],
                candidates: Sequence[str] = tuple(CHECK_CANDIDATES), seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """Tier-1+ as chosen (the control) and each candidate change on another corpus's validation speakers.

    Columns as :func:`selection_table` (each fold the mean over ``seeds``), plus
    ``Δ vs Tier-1+`` (points of mean validation UAR, for complete rows). Test
    numbers are never read. An ``average_last`` candidate (``swa``) is listed
    with its averaged weights' validation UAR against the control's in-sample
    best epoch; since it trains exactly like the control, it was judged instead
    against the best epoch chosen on the other validation speaker
    (:func:`epoch_choice_table`).
    """
    names = {"tier1plus": "tier1plus", **{c: f"tier1-tplus-{c}" for c in candidates}}
    changes = {"tier1plus": "Tier-1+ as chosen on RAVDESS (the control)", **CHECK_CANDIDATES}
    table = validation_table(validation_runs(results, corpus, protocol, folds, names, seeds),
                             list(names), changes, folds, seeds)
    control = table.loc["tier1plus", "mean val UAR %"]
    table["Δ vs Tier-1+"] = [round(float(v) - float(control), 2) if pd.notna(v) and pd.notna(control) else None
                             for v in table["mean val UAR %"]]
    return table


def tier1plus_table(results: str | Path, primary: dict[str, str], *, n_resamples: int = 2000) -> pd.DataFrame:
    """Tier-1+ on every primary protocol where it has run folders, beside Tier-1 and the best classical baseline.

    Index: corpus. Columns: Tier-1+'s folds × seeds, its pooled test UAR % [95 %
    speaker CI] and mean ± std of folds, Tier-1's and the best classical
    baseline's pooled test UAR % [CI], the paired differences Tier-1+ − baseline
    and Tier-1+ − Tier-1 (points [CI], matched seeds), and minutes per Tier-1+ run.
    Intervals on fewer than 5 test speakers are marked †.
    """
    from serlib.data.corpora import CORPORA, DISPLAY_NAMES
    from serlib.evaluation.folds import mean_of_folds
    from serlib.report.comparisons import folds_figure, paired_difference, protocol_results
    from serlib.report.summary import pooled_cell

    rows = []
    for corpus in [c for c in CORPORA if c in primary]:
        pr = protocol_results(results, corpus, primary[corpus], ("tier1", "tier1plus", "baseline-svm", "egemaps-svm",
                                                                 "compare-svm"), n_resamples=n_resamples)
        plus = pr.systems["tier1plus"]
        if plus.runs.empty:
            continue
        used = plus.used if len(plus.used) else plus.runs
        m, sd, n = mean_of_folds(used)
        baseline = pr.best(("classical",))
        row: dict[str, object] = {"corpus": DISPLAY_NAMES[corpus], "Tier-1+ folds × seeds": f"{n} × {len(plus.seeds)}",
                                  "Tier-1+ pooled UAR % [CI]": pooled_cell(pr, "tier1plus"),
                                  "Tier-1+ mean ± std of folds": folds_figure(m, sd, n),
                                  "Tier-1 pooled UAR % [CI]": pooled_cell(pr, "tier1" if "tier1" in pr.ran else None),
                                  "best classical: pooled UAR % [CI]": pooled_cell(pr, baseline, named=True)}
        for other, label in ((baseline, "Tier-1+ − best classical (points)"), ("tier1", "Tier-1+ − Tier-1 (points)")):
            d = paired_difference(pr, "tier1plus", other)
            row[label] = d.cell() if d else "—"
        row["minutes per run"] = round(float(plus.runs["wall_seconds"].fillna(0).mean()) / 60, 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index("corpus") if rows else pd.DataFrame()


def passing_candidates(table: pd.DataFrame, points: float = CHECK_RULE_POINTS) -> list[str]:
    """The complete candidates of a :func:`check_table` that gain at least ``points`` over Tier-1+."""
    gains = table[(table.index != "tier1plus") & table["complete"].astype(bool)]["Δ vs Tier-1+"].dropna()
    return [str(c) for c, g in gains.items() if float(g) >= points]


EPOCH_CHOICES = {
    "best epoch (in-sample)": "the epoch with the best UAR on all validation clips, scored on them (what a run records)",
    "best epoch (chosen on the other speakers)": "each validation speaker scored at the epoch best on the others",
    "last epoch": "the final epoch, no choice",
    "tested weights": "the weights the run tested (the mean of the last epochs for swa), no choice",
}
"""The ways of picking a network's weights that :func:`epoch_choice_table` compares on the same validation clips."""


def epoch_choice_table(results: str | Path, corpus: str, protocol: str, folds: Sequence[int],
                       model: str = "tier1-tplus-swa", seeds: Sequence[int] = CHECK_SEEDS) -> pd.DataFrame:
    """Validation UAR % of each way of picking the weights (:data:`EPOCH_CHOICES`), per fold and seed, and their mean.

    Reads the runs' ``val_posteriors.npz`` and ``val_predictions.csv``
    (:func:`serlib.systems.tier1.epoch_posteriors.epoch_choice_uars`); runs without them are
    left out. Test numbers are never read. Empty when no run qualifies.
    """
    from serlib.systems.tier1.epoch_posteriors import epoch_choice_uars

    runs = list_runs(results)
    if runs.empty:
        return pd.DataFrame()
    keep = (runs["corpus"] == corpus) & (runs["protocol"] == protocol) & (runs["model"] == model) \
        & runs["fold"].isin(list(folds)) & runs["seed"].isin(list(seeds))
    rows = []
    for run in runs[keep].sort_values(["fold", "seed"]).itertuples():
        uars = epoch_choice_uars(run.path)
        if uars is not None:
            rows.append({"fold": run.fold, "seed": run.seed, "best epoch (in-sample)": run.best_val_uar,
                         "best epoch (chosen on the other speakers)": uars["chosen on other speakers"],
                         "last epoch": uars["last epoch"], "tested weights": uars["tested"]})
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).set_index(["fold", "seed"]).astype(float)
    table.loc[("mean", ""), :] = table.mean()
    return (100 * table).round(2)


def chosen_step(table: pd.DataFrame) -> str | None:
    """The complete step with the highest mean validation UAR (``None`` when no step is complete)."""
    done = table[table["complete"] & (table.index != "tier1")]
    return None if done.empty else str(done["mean val UAR %"].astype(float).idxmax())


__all__ = ["SELECTION_STEPS", "STEP_CHANGES", "CHECK_CORPUS", "CHECK_CANDIDATES", "CHECK_RULE_POINTS",
           "CHECK_SEEDS", "validation_runs", "validation_table", "selection_runs", "selection_table", "check_table",
           "passing_candidates", "chosen_step", "EPOCH_CHOICES", "epoch_choice_table",
           "tier1plus_table"]
