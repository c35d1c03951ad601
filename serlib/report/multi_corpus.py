"""The multi-corpus page's tables and figure: heads trained on several corpora, in-corpus and held out.

Every number is read from run folders: the in-corpus protocols
(``results/<corpus>/<protocol>/whisper-*-multi``), leave-one-corpus-out
(``results/<corpus>/loco[-6]/...``), the selection runs
(``results/studies/multi-selection/<option>/...``) and, for comparison, the
single-corpus heads. The single-corpus cross-corpus matrix (train row -> test
column, UAR in percent: 100 times the matrix
:func:`serlib.experiments.encoder_crosscorpus.read_matrix` gives) is passed in by the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from serlib.data.corpora import CORPORA, DISPLAY_NAMES
from serlib.report.comparisons import (
    MIN_TEST_SPEAKERS,
    fmt_ci,
    fmt_uar,
    folds_figure,
    mean_of_folds,
    paired_difference,
    protocol_results,
)

SINGLE_TO_MULTI: dict[str, str] = {"whisper-logreg": "whisper-logreg-multi", "whisper-mlp": "whisper-mlp-multi"}
HEAD_NAMES: dict[str, str] = {"whisper-logreg": "logistic regression", "whisper-mlp": "layer-weighted MLP"}
CROSS_CORPUS_GROUP = "six-corpora-4-classes"
"""The single-corpus cross-corpus matrix the held-out results are shown beside (logistic-regression head)."""


def _name(corpus: str) -> str:
    return DISPLAY_NAMES.get(corpus, corpus)


def _pooled(result) -> str:
    if result.bootstrap is None:
        return "—"
    b = result.bootstrap
    return fmt_ci(b.uar, b.ci_low, b.ci_high, few=b.n_speakers < MIN_TEST_SPEAKERS)


def in_corpus_table(results: str | Path, protocols: dict[str, str], *, n_resamples: int = 2000) -> pd.DataFrame:
    """Per corpus and head: one corpus against several, mean of folds and pooled UAR [95 % speaker CI], and
    the paired difference (several − one, matched seeds)."""
    rows = []
    for corpus, protocol in protocols.items():
        pr = protocol_results(results, corpus, protocol, [*SINGLE_TO_MULTI, *SINGLE_TO_MULTI.values()],
                              n_resamples=n_resamples)
        for single, multi in SINGLE_TO_MULTI.items():
            one, many = pr.systems[single], pr.systems[multi]
            if many.runs.empty:
                continue
            diff = paired_difference(pr, multi, single)
            rows.append({"corpus": _name(corpus), "protocol": protocol, "head": HEAD_NAMES[single],
                         "test speakers": pr.test_speakers,
                         "one corpus, mean of folds": folds_figure(*mean_of_folds(one.used)),
                         "several corpora, mean of folds": folds_figure(*mean_of_folds(many.used)),
                         "one corpus, pooled [CI]": _pooled(one), "several corpora, pooled [CI]": _pooled(many),
                         "several − one [CI] (seeds)": f"{diff.cell()} ({diff.seeds})" if diff else "—"})
    return pd.DataFrame(rows)


def in_corpus_means(results: str | Path, protocols: dict[str, str], model: str) -> dict[str, float]:
    """``model``'s mean of folds (over seeds) per corpus, in percent (NaN where it has no complete seed)."""
    out = {}
    for corpus, protocol in protocols.items():
        pr = protocol_results(results, corpus, protocol, [model], n_resamples=10)
        out[corpus] = 100 * mean_of_folds(pr.systems[model].used)[0]
    return out


def own_statistics_result(paths: Sequence[str | Path], *, n_resamples: int = 2000):
    """Speaker bootstrap of the transductive predictions (each held-out corpus with its own statistics)."""
    from serlib.evaluation.stats import load_predictions, speaker_bootstrap
    from serlib.systems.whisper_multi import OWN_STATISTICS_FILE

    files = [Path(p) / OWN_STATISTICS_FILE for p in paths if (Path(p) / OWN_STATISTICS_FILE).is_file()]
    if not files:
        return None
    return speaker_bootstrap(load_predictions([f.parent for f in files], file=OWN_STATISTICS_FILE),
                             n_resamples=n_resamples, seed=0)


def loco_table(results: str | Path, corpora: Sequence[str], protocol: str = "loco", *,
               matrix: pd.DataFrame | None = None, n_resamples: int = 2000) -> pd.DataFrame:
    """Per held-out corpus: its test speakers, the -multi heads trained on the other corpora (pooled UAR [CI],
    inductive), the MLP with the corpus's own statistics (transductive), and the single-corpus heads' mean and
    best cell of the cross-corpus matrix (logistic regression, 4 classes, where it was run)."""
    rows = []
    for corpus in corpora:
        pr = protocol_results(results, corpus, protocol, list(SINGLE_TO_MULTI.values()), n_resamples=n_resamples)
        if not pr.any_runs:
            continue
        mlp = pr.systems["whisper-mlp-multi"]
        own = own_statistics_result(mlp.used["path"], n_resamples=n_resamples) if len(mlp.used) else None
        row = {"held-out corpus": _name(corpus), "test speakers": pr.test_speakers,
               "logistic regression": _pooled(pr.systems["whisper-logreg-multi"]), "MLP": _pooled(mlp),
               "MLP, own statistics (transductive)": fmt_ci(own.uar, own.ci_low, own.ci_high,
                                                            few=own.n_speakers < MIN_TEST_SPEAKERS) if own else "—"}
        if matrix is not None and corpus in matrix.columns:
            column = matrix[corpus].drop(index=corpus, errors="ignore").dropna()
            row["one corpus: mean / best"] = f"{fmt_uar(column.mean() / 100)} / {fmt_uar(column.max() / 100)}"
        rows.append(row)
    return pd.DataFrame(rows)


def matrix_with_loco(results: str | Path, corpora: Sequence[str], matrix: pd.DataFrame) -> pd.DataFrame:
    """The single-corpus matrix (percent, one decimal, corpora by display name) with a last row: the
    multi-corpus MLP trained on every other corpus, tested on the column's corpus."""
    table = matrix.reindex(index=list(corpora), columns=list(corpora)).round(1)
    row = {}
    for corpus in corpora:
        pr = protocol_results(results, corpus, "loco", ["whisper-mlp-multi"], n_resamples=10)
        row[corpus] = round(100 * pr.systems["whisper-mlp-multi"].pooled_uar, 1)
    table.loc["the other five (MLP)"] = pd.Series(row)
    table.index = [_name(c) for c in table.index]
    table.columns = [_name(c) for c in table.columns]
    table.index.name, table.columns.name = "trained on", "tested on"
    return table


def loco_means(results: str | Path, corpora: Sequence[str], protocol: str = "loco") -> dict[str, float]:
    """Mean over held-out corpora of each head's pooled UAR (percent), and of the MLP's transductive one."""
    values: dict[str, list[float]] = {"whisper-logreg-multi": [], "whisper-mlp-multi": [], "own statistics": []}
    for corpus in corpora:
        pr = protocol_results(results, corpus, protocol, list(values)[:2], n_resamples=200)
        for model in list(values)[:2]:
            if pr.systems[model].bootstrap is not None:
                values[model].append(100 * pr.systems[model].pooled_uar)
        own = own_statistics_result(pr.systems["whisper-mlp-multi"].used["path"], n_resamples=10) \
            if len(pr.systems["whisper-mlp-multi"].used) else None
        if own is not None:
            values["own statistics"].append(100 * own.uar)
    return {k: float(np.mean(v)) if v else float("nan") for k, v in values.items()} | {
        "corpora": len(values["whisper-mlp-multi"])}


def selection_table(folder: str | Path) -> pd.DataFrame:
    """Validation UAR (%) of each way of joining corpora (rows, :data:`serlib.features.multi_corpus.OPTIONS`) on
    each corpus's selection fold (the runs under ``folder/<option>``), and their mean."""
    from serlib.core.runs import list_runs
    from serlib.features.multi_corpus import OPTIONS

    rows = []
    for option in OPTIONS:
        folder_of = Path(folder) / option
        runs = list_runs(folder_of) if folder_of.is_dir() else pd.DataFrame()
        if runs.empty:
            continue
        order = sorted(runs["corpus"].unique(), key=lambda c: CORPORA.index(c) if c in CORPORA else len(CORPORA))
        values = {_name(c): 100 * float(runs.loc[runs["corpus"] == c, "best_val_uar"].astype(float).mean())
                  for c in order}
        rows.append({"option": option, **{k: round(v, 1) for k, v in values.items()},
                     "mean": round(float(np.mean(list(values.values()))), 1)})
    return pd.DataFrame(rows)


def loco_figure(results: str | Path, corpora: Sequence[str], matrix: pd.DataFrame | None = None):
    """Per held-out corpus: the single-corpus heads' mean and best cross-corpus UAR (grey), the -multi heads' pooled
    UAR (colour) and the MLP head with the corpus's own statistics (transductive, a black marker)."""
    import matplotlib.pyplot as plt

    names, own = [], []
    series = {"one corpus, mean": [], "one corpus, best (hindsight)": [], "several corpora, logistic regression": [],
              "several corpora, MLP": []}
    for corpus in corpora:
        pr = protocol_results(results, corpus, "loco", list(SINGLE_TO_MULTI.values()), n_resamples=200)
        if not pr.any_runs:
            continue
        names.append(f"{_name(corpus)}\n{pr.test_speakers} speakers")
        column = matrix[corpus].drop(index=corpus, errors="ignore").dropna() if matrix is not None and \
            corpus in matrix.columns else pd.Series(dtype=float)
        series["one corpus, mean"].append(column.mean() if len(column) else np.nan)
        series["one corpus, best (hindsight)"].append(column.max() if len(column) else np.nan)
        series["several corpora, logistic regression"].append(100 * pr.systems["whisper-logreg-multi"].pooled_uar)
        series["several corpora, MLP"].append(100 * pr.systems["whisper-mlp-multi"].pooled_uar)
        mlp = pr.systems["whisper-mlp-multi"]
        result = own_statistics_result(mlp.used["path"], n_resamples=10) if len(mlp.used) else None
        own.append(100 * result.uar if result is not None else np.nan)
    colours = ["#c8c8c8", "#7f7f7f", "#2ca02c", "#d62728"]
    fig, ax = plt.subplots(figsize=(9, 4.2))
    width = 0.8 / len(series)
    x = np.arange(len(names))
    for k, ((label, values), colour) in enumerate(zip(series.items(), colours)):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width, label=label, color=colour)
    ax.plot(x + 1.5 * width, own, "D", color="black", markersize=5, label="MLP, own statistics (transductive)")
    ax.axhline(25, color="grey", linestyle=":", linewidth=1, label="chance (4 classes)")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylabel("UAR on the held-out corpus (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["SINGLE_TO_MULTI", "in_corpus_table", "in_corpus_means", "matrix_with_loco", "loco_table", "loco_means",
           "loco_figure", "own_statistics_result", "selection_table", "verdict"]


def verdict(results: str | Path, corpora: Sequence[str], protocols: dict[str, str],
            matrix: pd.DataFrame | None = None) -> str:
    """The page's opening sentences, from the runs: held-out corpora first, then the in-corpus protocols."""
    held_out = [c for c in corpora if protocol_results(results, c, "loco", ["whisper-mlp-multi"],
                                                       n_resamples=10).systems["whisper-mlp-multi"].bootstrap]
    means = loco_means(results, held_out)
    parts = []
    if means["corpora"]:
        single = ""
        if matrix is not None:  # the same held-out corpora
            cells = [matrix[c].drop(index=c, errors="ignore").dropna() for c in held_out if c in matrix.columns]
            single = (f", against {np.mean([c.mean() for c in cells if len(c)]):.1f} % for a head trained on one "
                      f"other corpus (mean over training corpora) and {np.mean([c.max() for c in cells if len(c)]):.1f} "
                      "% for the best single training corpus picked with hindsight")
        heads = (f"the logistic-regression head scores {means['whisper-logreg-multi']:.1f} % UAR and the MLP head "
                 f"{means['whisper-mlp-multi']:.1f} %" if not np.isnan(means["whisper-logreg-multi"])
                 else f"the MLP head scores {means['whisper-mlp-multi']:.1f} % UAR")
        parts.append(f"**On a corpus it never saw**, trained on the other corpora together, {heads} over the four "
                     f"shared classes (mean over {means['corpora']} held-out corpora, standardised with the training "
                     f"statistics){single}.")
        if not np.isnan(means["own statistics"]):
            parts.append(f"Standardising each held-out corpus with its own statistics (transductive) lifts the MLP "
                         f"head to {means['own statistics']:.1f} %.")
    multi = in_corpus_means(results, protocols, "whisper-mlp-multi")
    single_means = in_corpus_means(results, protocols, "whisper-mlp")
    done = [c for c in protocols if not np.isnan(multi[c])]
    if done:
        listed = "; ".join(f"{_name(c)} {multi[c]:.1f} ({single_means[c]:.1f} on one corpus)" for c in done)
        parts.append(f"**Inside a corpus**, with the other corpora added to training, the MLP head's mean of folds "
                     f"is: {listed}.")
    return " ".join(parts) if parts else "No run of the multi-corpus heads yet."
