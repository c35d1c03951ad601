"""How Tier-1+ was chosen: the validation record of its recipe steps (read from run folders, never trains).

Tier-1+ was chosen greedily: one change at a time was added to the best
configuration so far (``configs/ablations/plus-<step>.yaml``; a change that
lowered the mean validation UAR was dropped before the next step), each step
trained on the same folds and seed. The criterion is the
**validation** UAR of the best epoch (validation speakers carved from the
training speakers); the test parts of those folds play no part in the choice
and are not shown here. The recipe is the step with the highest mean
validation UAR (:func:`chosen_step`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from .runs import list_runs

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


def selection_runs(results: str | Path, corpus: str, protocol: str, folds: Sequence[int],
                   steps: Sequence[str] = SELECTION_STEPS, seed: int = 0) -> pd.DataFrame:
    """The runs of Tier-1 and of each step on ``folds`` (1-based) and ``seed``: one row per (step, fold)."""
    runs = list_runs(results)
    if runs.empty:
        return pd.DataFrame(columns=["step", "fold", "best_val_uar", "best_epoch", "wall_seconds"])
    names = {"tier1": "tier1", **{s: f"tier1-plus-{s}" for s in steps}}
    keep = (runs["corpus"] == corpus) & (runs["protocol"] == protocol) & runs["fold"].isin(list(folds)) \
        & (runs["seed"] == seed) & runs["model"].isin(list(names.values()))
    rows = runs[keep].copy()
    rows["step"] = rows["model"].map({v: k for k, v in names.items()})
    return rows[["step", "fold", "best_val_uar", "best_epoch", "wall_seconds"]].reset_index(drop=True)


def selection_table(results: str | Path, corpus: str, protocol: str, folds: Sequence[int],
                    steps: Sequence[str] = SELECTION_STEPS, seed: int = 0) -> pd.DataFrame:
    """Validation UAR % per fold and its mean for Tier-1 and each step, with minutes per run; steps in order.

    A step is marked ``complete`` only when it has a run on every fold; the mean
    of an incomplete step is left empty so it cannot be chosen by accident.
    """
    runs = selection_runs(results, corpus, protocol, folds, steps, seed)
    rows = []
    for step in ["tier1", *steps]:
        mine = runs[runs["step"] == step].set_index("fold")
        row: dict[str, object] = {"step": step, "change": STEP_CHANGES.get(step, step)}
        for f in folds:
            row[f"val UAR % fold {f}"] = round(100 * float(mine.loc[f, "best_val_uar"]), 2) if f in mine.index else None
        complete = all(f in mine.index for f in folds)
        row["mean val UAR %"] = round(100 * float(mine["best_val_uar"].mean()), 2) if complete else None
        row["minutes per run"] = round(float(mine["wall_seconds"].mean()) / 60, 1) if len(mine) else None
        row["complete"] = complete
        rows.append(row)
    return pd.DataFrame(rows).set_index("step")


TARGETS = {"ravdess": 63.0, "emodb": 80.0, "cremad": 65.0}
"""Test UAR % (mean of folds) Tier-1+ aims at on the primary protocols: ahead of published from-scratch,
speaker-independent systems (RAVDESS: ResLSTM-SA 62.3; EmoDB LOSO: 3-D ACRNN 82.8 ± 5.0, IS10 + SVM 73-77)."""


def tier1plus_table(results: str | Path, primary: dict[str, str], *, n_resamples: int = 2000) -> pd.DataFrame:
    """Tier-1+ on every primary protocol where it has run folders, beside Tier-1 and the best baseline.

    Columns: runs (folds × seeds), test UAR % (mean ± std of folds) of Tier-1+,
    of Tier-1 and of the best classical baseline (chosen on validation UAR), the
    paired speaker-clustered differences (Tier-1+ − baseline, Tier-1+ − Tier-1)
    with their 95 % CIs, the target and minutes per Tier-1+ run.
    """
    from .comparisons import mean_of_folds, paired_table, protocol_results, system_label

    rows = []
    for corpus, protocol in primary.items():
        pr = protocol_results(results, corpus, protocol, ("tier1", "tier1plus", "baseline-svm", "egemaps-svm",
                                                          "compare-svm"), n_resamples=n_resamples)
        plus = pr.systems["tier1plus"]
        if plus.runs.empty:
            continue
        used = plus.used if len(plus.used) else plus.runs
        m, sd, n = mean_of_folds(used)
        row: dict[str, object] = {"corpus": corpus, "protocol": protocol, "status": plus.status,
                                  "Tier-1+ folds × seeds": f"{n} × {len(plus.seeds)}",
                                  "Tier-1+ test UAR %": f"{100 * m:.2f} ± {100 * sd:.2f}"}
        for name, model in (("Tier-1", "tier1"), ("best baseline", pr.best(("classical",)))):
            runs = pr.systems[model].used if model else pd.DataFrame()
            if model and len(runs):
                bm, bsd, _ = mean_of_folds(runs)
                row[f"{name} test UAR %"] = f"{100 * bm:.2f} ± {100 * bsd:.2f}" + (
                    f" ({system_label(model)})" if name == "best baseline" else "")
        paired = paired_table(pr)
        for what, label in (("Tier-1+ vs best baseline", "Δ vs baseline"), ("Tier-1+ vs Tier-1", "Δ vs Tier-1")):
            r = paired.loc[what]
            row[f"{label} (points) [95 % CI]"] = (f"{r['difference (points)']} {r['95 % CI (points)']}"
                                                  if r["difference (points)"] != "–" else r["reading"])
        target = TARGETS.get(corpus)
        row["target %"] = target if target is not None else "–"
        row["met"] = ("yes" if 100 * m >= target else "no") if target is not None and plus.status == "run" else "–"
        row["minutes per run"] = round(float(plus.runs["wall_seconds"].fillna(0).mean()) / 60, 1)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["corpus", "protocol"]) if rows else pd.DataFrame()


def chosen_step(table: pd.DataFrame) -> str | None:
    """The complete step with the highest mean validation UAR (``None`` when no step is complete)."""
    done = table[table["complete"] & (table.index != "tier1")]
    return None if done.empty else str(done["mean val UAR %"].astype(float).idxmax())


__all__ = ["SELECTION_STEPS", "STEP_CHANGES", "TARGETS", "selection_runs", "selection_table", "chosen_step",
           "tier1plus_table"]
