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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serlib.data.corpora import CORPORA, DISPLAY_NAMES
from serlib.evaluation.folds import mean_of_folds
from serlib.report.comparisons import (
    MIN_TEST_SPEAKERS,
    ProtocolResults,
    fmt_ci,
    fmt_uar,
    folds_figure,
    is_post_hoc_here_only,
    paired_difference,
    protocol_results,
)

IN_CORPUS_HEADS: dict[str, tuple[str, str]] = {
    "whisper-logreg-multi": ("whisper-logreg", "logistic regression"),
    "whisper-mlp-multi": ("whisper-mlp", "layer-weighted MLP"),
    "whisper-mlp-twostage-multi": ("whisper-mlp", "layer-weighted MLP, two stages (post hoc)")}
"""The heads run in-corpus: each -multi head, the single-corpus head it is paired with, and its name in the tables."""
TWO_STAGE = "whisper-mlp-twostage-multi"
"""The MLP head trained on several corpora, then on the corpus's own speakers (post hoc: designed after the in-corpus
test results of ``whisper-mlp-multi`` were seen)."""
MLP_TRAINED_ON: dict[str, str] = {"whisper-mlp": "the corpus alone", "whisper-mlp-multi": "the other corpora too",
                                  TWO_STAGE: "the other corpora too, then its own speakers (post hoc)"}
"""The three MLP heads compared inside a corpus, named by what they train on (the figure and the verdict)."""
LOCO_HEADS: dict[str, str] = {"whisper-logreg-multi": "logistic regression", "whisper-mlp-multi": "MLP",
                              "whisper-logreg-loco-multi": "logistic regression, chosen on held-out corpora (post hoc)"}
"""The heads run leave-one-corpus-out, as the held-out tables name them."""
UNSEEN_HEAD = "whisper-logreg-loco-multi"
"""The head meant for corpora it never trained on (its choices are made on held-out corpora; its rule was written after
the other heads' held-out results were seen, so it is post hoc)."""
UNSEEN_ROW = "the other five (chosen on held-out corpora; post hoc)"
"""The matrix row of :data:`UNSEEN_HEAD` trained on every corpus but the column's."""
CROSS_CORPUS_GROUP = "six-corpora-4-classes"
"""The single-corpus cross-corpus matrix the held-out results are shown beside (logistic-regression head)."""


def _name(corpus: str) -> str:
    return DISPLAY_NAMES.get(corpus, corpus)


def _pooled(result) -> str:
    if result.bootstrap is None:
        return "—"
    b = result.bootstrap
    return fmt_ci(b.uar, b.ci_low, b.ci_high, few=b.n_speakers < MIN_TEST_SPEAKERS)


def in_corpus_results(results: str | Path, protocols: dict[str, str], *,
                      n_resamples: int = 2000) -> dict[str, ProtocolResults]:
    """Each corpus of ``protocols`` (corpus -> its in-corpus protocol): the -multi heads of :data:`IN_CORPUS_HEADS`
    and their single-corpus twins, bootstrapped once for the whole page."""
    from serlib.core.runs import list_runs

    runs = list_runs(results)
    models = list(dict.fromkeys([*(single for single, _ in IN_CORPUS_HEADS.values()), *IN_CORPUS_HEADS]))
    return {corpus: protocol_results(runs, corpus, protocol, models, n_resamples=n_resamples)
            for corpus, protocol in protocols.items()}


def in_corpus_table(inside: dict[str, ProtocolResults]) -> pd.DataFrame:
    """Per corpus and -multi head: its single-corpus twin against it, mean of folds and pooled UAR [95 % speaker
    CI], and the paired difference (several − one, matched seeds)."""
    rows = []
    for corpus, pr in inside.items():
        for multi, (single, name) in IN_CORPUS_HEADS.items():
            one, many = pr.systems[single], pr.systems[multi]
            if many.runs.empty:
                continue
            diff = paired_difference(pr, multi, single)
            if is_post_hoc_here_only(single, corpus):
                name += f" (the one-corpus head is post hoc on {_name(corpus)})"
            rows.append({"corpus": _name(corpus), "protocol": pr.protocol, "head": name,
                         "test speakers": pr.test_speakers,
                         "one corpus, mean of folds": folds_figure(*mean_of_folds(one.used)),
                         "several corpora, mean of folds": folds_figure(*mean_of_folds(many.used)),
                         "one corpus, pooled [CI]": _pooled(one), "several corpora, pooled [CI]": _pooled(many),
                         "several − one [CI] (seeds)": f"{diff.cell()} ({diff.seeds})" if diff else "—"})
    return pd.DataFrame(rows)


def _finish_bars(fig, ax, names: list[str], ylabel: str, *, columns: int):
    """A per-corpus bar chart's axes as the page draws them: corpus names under the bars, UAR from 0 to 100 %, the
    legend in ``columns`` columns below the plot."""
    ax.set_xticks(np.arange(len(names)), names, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=columns, frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def in_corpus_figure(inside: dict[str, ProtocolResults]):
    """Per corpus: the MLP head trained on the corpus alone, on several corpora, and on several then its own
    speakers (pooled UAR with its 95 % speaker interval)."""
    import matplotlib.pyplot as plt

    heads = {m: f"trained on {label}" for m, label in MLP_TRAINED_ON.items()}
    colours = ["#7f7f7f", "#d62728", "#9467bd"]
    shown = {c: pr for c, pr in inside.items() if pr.systems[TWO_STAGE].bootstrap is not None
             or pr.systems["whisper-mlp-multi"].bootstrap is not None}
    fig, ax = plt.subplots(figsize=(9.5, 4.0))
    x = np.arange(len(shown))
    width = 0.8 / len(heads)
    for k, ((model, label), colour) in enumerate(zip(heads.items(), colours)):
        boots = [pr.systems[model].bootstrap for pr in shown.values()]
        values = [100 * b.uar if b else np.nan for b in boots]
        low = [100 * (b.uar - b.ci_low) if b else 0 for b in boots]
        high = [100 * (b.ci_high - b.uar) if b else 0 for b in boots]
        ax.bar(x + (k - (len(heads) - 1) / 2) * width, values, width, yerr=[low, high], capsize=2, label=label,
               color=colour)
    return _finish_bars(fig, ax, [f"{_name(c)}\n{pr.test_speakers} test speakers" for c, pr in shown.items()],
                        "pooled UAR inside the corpus (%)", columns=3)


def second_stage_table(inside: dict[str, ProtocolResults]) -> pd.DataFrame:
    """Per corpus: how often the two-stage head kept its second stage (own speakers alone), the mean validation UAR
    (%) of its two stages over its runs (of the layer option chosen; the choice is made on validation speakers, run by
    run), and on test the two-stage head paired with the one-stage head (same first stage, matched seeds)."""
    from serlib.core.runs import read_json

    rows = []
    for corpus, pr in inside.items():
        used = pr.systems[TWO_STAGE].used
        if used.empty:
            continue
        stages = [read_json(Path(path) / "metrics.json").get("second_stage", {}) for path in used["path"]]
        diff = paired_difference(pr, TWO_STAGE, "whisper-mlp-multi")
        rows.append({"corpus": _name(corpus), "runs": len(stages),
                     "second stage kept": sum(bool(s.get("kept")) for s in stages),
                     "validation UAR, first stage": round(100 * np.mean([s["first_val_uar"] for s in stages]), 1),
                     "validation UAR, second stage": round(100 * np.mean([s["second_val_uar"] for s in stages]), 1),
                     "test: two stages − one [CI] (seeds)": f"{diff.cell()} ({diff.seeds})" if diff else "—"})
    return pd.DataFrame(rows)


def own_statistics_result(paths: Sequence[str | Path], *, n_resamples: int = 2000):
    """Speaker bootstrap of the transductive predictions (each held-out corpus with its own statistics)."""
    from serlib.evaluation.stats import load_predictions, speaker_bootstrap
    from serlib.systems.whisper_multi import OWN_STATISTICS_FILE

    files = [Path(p) / OWN_STATISTICS_FILE for p in paths if (Path(p) / OWN_STATISTICS_FILE).is_file()]
    if not files:
        return None
    return speaker_bootstrap(load_predictions([f.parent for f in files], file=OWN_STATISTICS_FILE),
                             n_resamples=n_resamples, seed=0)


@dataclass
class HeldOut:
    """One held-out corpus under one protocol: every held-out head's runs and bootstrap, read once."""

    results: ProtocolResults  # its corpus is ``results.corpus``
    own: Any  # the MLP's transductive bootstrap (own statistics), or None

    def uar(self, model: str) -> float:
        """``model``'s pooled UAR in percent (NaN without a complete seed)."""
        system = self.results.systems[model]
        return 100 * system.pooled_uar if system.bootstrap is not None else float("nan")

    @property
    def complete(self) -> bool:
        """Whether every head of :data:`LOCO_HEADS` has a complete seed here."""
        return all(self.results.systems[m].bootstrap is not None for m in LOCO_HEADS)

    def cell(self, model: str) -> str:
        """``model``'s pooled UAR [95 % speaker CI] as a table cell († under five test speakers, — without runs)."""
        return _pooled(self.results.systems[model])


def held_out_results(results: str | Path, corpora: Sequence[str], protocol: str = "loco", *,
                     n_resamples: int = 2000) -> dict[str, HeldOut]:
    """Each corpus of ``corpora`` with runs under ``protocol``: its :data:`LOCO_HEADS` and the MLP's own-statistics
    twin, bootstrapped once for the whole page (the verdict, figure and tables all read this)."""
    from serlib.core.runs import list_runs

    runs = list_runs(results)
    out = {}
    for corpus in corpora:
        pr = protocol_results(runs, corpus, protocol, list(LOCO_HEADS), n_resamples=n_resamples)
        if not pr.any_runs:
            continue
        mlp = pr.systems["whisper-mlp-multi"]
        own = own_statistics_result(mlp.used["path"], n_resamples=n_resamples) if len(mlp.used) else None
        out[corpus] = HeldOut(pr, own)
    return out


def _single_column(matrix: pd.DataFrame | None, corpus: str) -> pd.Series:
    """The single-corpus heads' cells tested on ``corpus`` (its own row left out)."""
    if matrix is None or corpus not in matrix.columns:
        return pd.Series(dtype=float)
    return matrix[corpus].drop(index=corpus, errors="ignore").dropna()


def loco_table(held: dict[str, HeldOut], *, matrix: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per held-out corpus: its test speakers, each head trained on the other corpora (pooled UAR [CI],
    inductive), the MLP with the corpus's own statistics (transductive), and the single-corpus heads' mean and
    best cell of the cross-corpus matrix (logistic regression, 4 classes, where it was run)."""
    rows = []
    for corpus, h in held.items():
        row = {"held-out corpus": _name(corpus), "test speakers": h.results.test_speakers,
               **{label: h.cell(model) for model, label in LOCO_HEADS.items()},
               "MLP, own statistics (transductive)": fmt_ci(h.own.uar, h.own.ci_low, h.own.ci_high,
                                                            few=h.own.n_speakers < MIN_TEST_SPEAKERS)
               if h.own else "—"}
        column = _single_column(matrix, corpus)
        if len(column):
            row["one corpus: mean / best"] = f"{fmt_uar(column.mean() / 100)} / {fmt_uar(column.max() / 100)}"
        rows.append(row)
    return pd.DataFrame(rows)


def matrix_with_loco(held: dict[str, HeldOut], corpora: Sequence[str], matrix: pd.DataFrame) -> pd.DataFrame:
    """The single-corpus matrix (percent, one decimal, corpora by display name) with a last row: the head for
    unseen corpora (:data:`UNSEEN_HEAD`) trained on every other corpus, tested on the column's corpus."""
    table = matrix.reindex(index=list(corpora), columns=list(corpora)).round(1)
    table.loc[UNSEEN_ROW] = pd.Series(
        {c: round(held[c].uar(UNSEEN_HEAD), 1) for c in corpora if c in held})
    table.index = [_name(c) for c in table.index]
    table.columns = [_name(c) for c in table.columns]
    table.index.name, table.columns.name = "trained on", "tested on"
    return table


def loco_means(held: dict[str, HeldOut]) -> dict[str, float]:
    """Mean over the held-out corpora of each head's pooled UAR (percent), of the MLP's transductive one, and the
    number of corpora every head has a result on (``corpora``; the means are taken over those)."""
    complete = [h for h in held.values() if h.complete]
    means = {m: float(np.mean([h.uar(m) for h in complete])) if complete else float("nan") for m in LOCO_HEADS}
    own = [100 * h.own.uar for h in complete if h.own is not None]
    return {**means, "own statistics": float(np.mean(own)) if len(own) == len(complete) and own else float("nan"),
            "corpora": len(complete)}


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


def loco_figure(held: dict[str, HeldOut], matrix: pd.DataFrame | None = None):
    """Per held-out corpus: the single-corpus heads' mean and best cross-corpus UAR (grey), each head trained on the
    other corpora (colour) and the MLP head with the corpus's own statistics (transductive, a black marker)."""
    import matplotlib.pyplot as plt

    names, own = [], []
    series: dict[str, list[float]] = {"one corpus: mean": [], "one corpus: best (hindsight)": [],
                                      **{f"the other five: {LOCO_HEADS[m]}": [] for m in LOCO_HEADS}}
    for corpus, h in held.items():
        names.append(f"{_name(corpus)}\n{h.results.test_speakers} speakers")
        column = _single_column(matrix, corpus)
        series["one corpus: mean"].append(column.mean() if len(column) else np.nan)
        series["one corpus: best (hindsight)"].append(column.max() if len(column) else np.nan)
        for model in LOCO_HEADS:
            series[f"the other five: {LOCO_HEADS[model]}"].append(h.uar(model))
        own.append(100 * h.own.uar if h.own is not None else np.nan)
    colours = ["#c8c8c8", "#7f7f7f", "#2ca02c", "#d62728", "#1f77b4"]
    fig, ax = plt.subplots(figsize=(9.5, 4.4))
    width = 0.8 / len(series)
    x = np.arange(len(names))
    offset = {label: (k - (len(series) - 1) / 2) * width for k, label in enumerate(series)}
    for (label, values), colour in zip(series.items(), colours):
        ax.bar(x + offset[label], values, width, label=label, color=colour)
    ax.plot(x + offset["the other five: MLP"], own, "D", color="black", markersize=5,
            label="the other five: MLP, own statistics (transductive)")
    ax.axhline(25, color="grey", linestyle=":", linewidth=1, label="chance (4 classes)")
    return _finish_bars(fig, ax, names, "UAR on the held-out corpus (%)", columns=2)


def corpus_choice_table(held: dict[str, HeldOut]) -> pd.DataFrame:
    """Per held-out corpus: the layer and C :data:`UNSEEN_HEAD` chose by leaving each of its training corpora out
    in turn, that choice's mean UAR over them, and the layer the speaker-chosen logistic head took."""
    from serlib.core.runs import read_json

    rows = []
    for corpus, h in held.items():
        used = h.results.systems[UNSEEN_HEAD].used
        speakers = h.results.systems["whisper-logreg-multi"].used
        if used.empty:
            continue
        provenance = read_json(Path(used["path"].iloc[0]) / "provenance.json")
        search = provenance.get("corpus_search_uar", {})
        key = max(search, key=lambda k: search[k]["mean"]) if search else ""
        other = read_json(Path(speakers["path"].iloc[0]) / "provenance.json") if len(speakers) else {}
        rows.append({"held-out corpus": _name(corpus),
                     "chosen on held-out corpora: layer / C": key.replace("layer-", "").replace("/C=", " / "),
                     "mean UAR over the corpora held out in turn": round(100 * search[key]["mean"], 1) if key else None,
                     "chosen on validation speakers: layer": other.get("layer", "—")})
    return pd.DataFrame(rows)


def _in_corpus_sentences(inside: dict[str, ProtocolResults]) -> list[str]:
    """The verdict's in-corpus part: the -multi MLP heads paired with the MLP trained on the corpus alone (their pooled
    UARs are in the page's in-corpus figure)."""
    changes = {"whisper-mlp-multi": "training on the other corpora too changes it by",
               TWO_STAGE: "with a second stage on the corpus's own speakers (post hoc)"}
    paired = []
    for model, words in changes.items():
        diffs = {c: paired_difference(pr, model, "whisper-mlp") for c, pr in inside.items()}
        listed = ", ".join(f"{_name(c)} {d.cell()}" for c, d in diffs.items() if d is not None)
        if listed:
            paired.append(f"{words} {listed}")
    if not paired:
        return []
    return ["**Inside a corpus**, paired with the MLP head trained on the corpus alone (matched seeds; points of "
            "pooled UAR [95 % speaker CI]), " + "; ".join(paired) + "."]


def verdict(held: dict[str, HeldOut], inside: dict[str, ProtocolResults], matrix: pd.DataFrame | None = None) -> str:
    """The page's opening sentences, from the runs: held-out corpora first, then the in-corpus protocols."""
    means = loco_means(held)
    parts = []
    if means["corpora"]:
        complete = [c for c, h in held.items() if h.complete]
        single = ""
        cells = [_single_column(matrix, c) for c in complete]
        if cells and all(len(c) for c in cells):  # the same held-out corpora
            single = (f", against {np.mean([c.mean() for c in cells]):.1f} % for a head trained on one other corpus "
                      f"(mean over training corpora) and {np.mean([c.max() for c in cells]):.1f} % for the best single "
                      "training corpus picked with hindsight")
        parts.append(f"**On a corpus it never saw**, trained on the other corpora together, the logistic-regression "
                     f"head scores {means['whisper-logreg-multi']:.1f} % UAR and the MLP head "
                     f"{means['whisper-mlp-multi']:.1f} % over the four shared classes (mean over {means['corpora']} "
                     f"held-out corpora, standardised with the training statistics){single}. Choosing the logistic "
                     f"head's layer and C by holding each training corpus out in turn, instead of on validation "
                     f"speakers of the training corpora, gives {means[UNSEEN_HEAD]:.1f} % (post hoc: that rule was "
                     "written after the other heads' held-out results were seen).")
        if not np.isnan(means["own statistics"]):
            parts.append(f"Standardising each held-out corpus with its own statistics (transductive) lifts the MLP "
                         f"head to {means['own statistics']:.1f} %.")
    parts += _in_corpus_sentences(inside)
    return " ".join(parts) if parts else "No run of the multi-corpus heads yet."


__all__ = ["IN_CORPUS_HEADS", "MLP_TRAINED_ON", "LOCO_HEADS", "TWO_STAGE", "UNSEEN_HEAD", "HeldOut", "held_out_results",
           "in_corpus_results", "in_corpus_table", "in_corpus_figure", "second_stage_table",
           "matrix_with_loco", "loco_table", "loco_means", "loco_figure", "corpus_choice_table",
           "own_statistics_result", "selection_table", "verdict"]
