"""The summary page: the verdict, the headline figure, and tables that fit the page.

Every number here follows one convention, stated once on the page: the
**pooled test UAR** (all folds of a seed in one UAR, averaged over seeds) with
its **95 % interval resampling test speakers** (:mod:`serlib.evaluation.stats`).
"Best" means the highest validation UAR, as on every protocol page
(:meth:`serlib.report.comparisons.ProtocolResults.best`); systems whose rule was written after
their test numbers were seen (:attr:`serlib.systems.base.System.post_hoc`) and
transductive ones never count as best. Intervals resting on fewer than
:data:`serlib.report.comparisons.MIN_TEST_SPEAKERS` test speakers are marked †
and their comparisons carry no p-value.

* :func:`representatives`: per corpus, Tier-1, Tier-1+, the best classical
  baseline and the best Whisper-base system;
* :func:`verdict`: 3 to 6 sentences generated from the runs;
* :func:`plot_headline`: those four systems per corpus, with the previous
  system and EmoBox as labelled markers where they exist;
* :func:`headline_table`, :func:`difference_table`, :func:`anchor_table`,
  :func:`previous_system_table`: the summary's tables (at most 9 columns);
* :func:`full_grid`: every system on every corpus, for the appendix and its CSV;
* :func:`distinct_friedman`: the Friedman test over distinct systems only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from serlib.core.runs import list_runs
from serlib.data.corpora import CORPORA, DISPLAY_NAMES
from serlib.evaluation.folds import mean_of_folds
from serlib.report.comparisons import (
    DAGGER,
    MIN_TEST_SPEAKERS,
    REPORT_SYSTEMS,
    ProtocolResults,
    fmt_ci,
    folds_figure,
    friedman_over_corpora,
    is_post_hoc,
    is_post_hoc_here_only,
    paired_difference,
    protocol_results,
    system_label,
)

ROLES: tuple[tuple[str, tuple[str, ...] | str], ...] = (
    ("Tier-1 (reproduced)", "tier1"),
    ("Tier-1+", "tier1plus"),
    ("best classical", ("classical",)),
    ("best Whisper-base", ("encoder", "fusion")),
)
"""The representative systems of each corpus: a fixed system, or the best of some kinds."""

DISTINCT_SYSTEMS: tuple[str, ...] = ("tier1", "tier1plus", "baseline-svm", "egemaps-svm", "compare-svm",
                                     "whisper-logreg", "whisper-mlp")
"""Systems that are not combinations or re-weightings of one another: the Friedman test ranks these.

The fusions combine Whisper-base MLP and Tier-1+ (where the chosen weight is 1
they *are* the MLP), so ranking them beside their components counts one system twice."""

def few_speakers(pr: ProtocolResults) -> bool:
    """Whether the protocol's intervals rest on fewer than :data:`MIN_TEST_SPEAKERS` test speakers."""
    return pr.test_speakers < MIN_TEST_SPEAKERS


# ----------------------------------------------------------------------------- who stands for what


def representatives(pr: ProtocolResults) -> dict[str, str | None]:
    """Role -> system (run-folder name) for one corpus protocol; ``None`` where no system of the role has runs."""
    out: dict[str, str | None] = {}
    for role, what in ROLES:
        if isinstance(what, str):
            out[role] = what if what in pr.ran else None
        else:
            out[role] = pr.best(what)
    return out


def pooled_cell(pr: ProtocolResults, model: str | None, *, named: bool = False) -> str:
    """A system's pooled UAR [CI] (and its label when ``named``), or why there is none."""
    if model is None:
        return "not run"
    b = pr.systems[model].bootstrap
    if b is None:
        return pr.systems[model].status
    cell = fmt_ci(b.uar, b.ci_low, b.ci_high, few=few_speakers(pr))
    return f"{system_label(model, pr.corpus)}: {cell}" if named else cell


# ----------------------------------------------------------------------------- tables


def decimals(values: pd.Series, most: int = 3) -> int:
    """The fewest decimals (0 to ``most``) that print every value of a float column as it is: ``[70.0, 77.7]`` -> 1."""
    finite = values[np.isfinite(values.to_numpy(dtype=float))].to_numpy(dtype=float)
    for places in range(most):
        if np.allclose(finite, np.round(finite, places), rtol=0, atol=1e-9):
            return places
    return most


def show(table: pd.DataFrame, *, index: bool = False) -> Any:
    """A table as the pages render it: every row, no index column (unless asked), text left-aligned, each float
    column with the decimals its values have (:func:`decimals`; a missing value prints as —)."""
    styler = table.style
    for column in table.columns:
        values = pd.Series([v for v in table[column] if isinstance(v, (float, np.floating))], dtype=float)
        if len(values):  # a float column, or floats among text (a "—" beside numbers)
            places = decimals(values)
            styler = styler.format(lambda v, places=places: (("—" if np.isnan(v) else f"{v:.{places}f}")
                                                             if isinstance(v, (float, np.floating)) else v),
                                   subset=[column])
    if not index:
        styler = styler.hide(axis="index")
    return styler.set_properties(**{"text-align": "left"}).set_table_styles(
        [{"selector": "th", "props": [("text-align", "left")]}])


def not_run_note(primary: dict[str, ProtocolResults], data_root: str | Path | None) -> str:
    """One line per corpus without runs on its primary protocol: whether its data is here, and the command."""
    from serlib.report.pages import not_run_reason

    missing = [c for c in CORPORA if c not in primary or not primary[c].ran]
    if not missing:
        return ""
    return "Not in the table: " + "; ".join(f"{DISPLAY_NAMES[c]} ({not_run_reason(c, data_root)})"
                                            for c in missing) + "."


def headline_table(primary: dict[str, ProtocolResults]) -> pd.DataFrame:
    """One row per corpus (primary protocol): protocol, test speakers, and the four representative systems.

    Seven columns; cells are pooled test UAR % [95 % speaker CI]; the best
    classical and Whisper-base cells name their system.
    """
    rows = []
    for corpus in CORPORA:
        pr = primary.get(corpus)
        if pr is None or not pr.ran:
            continue
        reps = representatives(pr)
        n_classes = len({c for m in pr.ran for c in pr.systems[m].predictions["true"]})
        rows.append({
            "corpus": DISPLAY_NAMES[corpus],
            "protocol": f"{protocol_name(corpus, pr.protocol)}, {len(pr.folds)} folds, {n_classes} classes",
            "test speakers": f"{pr.test_speakers}" + (f" {DAGGER}" if few_speakers(pr) else ""),
            **{role: pooled_cell(pr, reps[role], named=role.startswith("best")) for role, _ in ROLES},
        })
    return pd.DataFrame(rows, columns=["corpus", "protocol", "test speakers", *[r for r, _ in ROLES]])


def protocol_name(corpus: str, protocol: str) -> str:
    """A protocol as a reader names it: ``EmoBox folds``, ``speaker CV``, ``speaker split``."""
    from serlib.report.pages import is_speaker_independent

    names = {"emobox": "EmoBox folds", "speaker-cv": "speaker CV", "speaker-split": "speaker split"}
    name = names.get(protocol, protocol)
    return name if is_speaker_independent(corpus, protocol) else f"{name} (not speaker-independent)"


def difference_table(primary: dict[str, ProtocolResults], against: str) -> pd.DataFrame:
    """Each system minus a reference, per corpus: ``against`` is ``"best classical"`` or ``"tier1"``.

    Rows: the report's systems (post-hoc ones marked); columns: corpora. Cells:
    the paired difference in points [95 % speaker CI] on matched seeds; a system
    that is the reference itself shows "reference".
    """
    table: dict[str, dict[str, str]] = {}
    for corpus in CORPORA:
        pr = primary.get(corpus)
        if pr is None or not pr.ran:
            continue
        ref = pr.best(("classical",)) if against == "best classical" else against
        column = DISPLAY_NAMES[corpus]
        for model in REPORT_SYSTEMS:
            label = system_label(model)
            if model == ref:
                table.setdefault(label, {})[column] = "reference"
                continue
            d = paired_difference(pr, model, ref)
            mark = " (post hoc here)" if d and is_post_hoc_here_only(model, corpus) else ""
            table.setdefault(label, {})[column] = d.cell() + mark if d else "—"
    out = pd.DataFrame(table).T
    out.index.name = "system"
    return out.reset_index().fillna("—")


def reference_results() -> dict[str, Any]:
    """The published anchors (:func:`serlib.report.pages.reference_results`)."""
    from serlib.report.pages import reference_results as published

    return published()


def anchor_table(results: str | Path | pd.DataFrame, *, n_resamples: int = 2000) -> pd.DataFrame:
    """Our best system on EmoBox's own folds beside EmoBox's best (large models), per corpus EmoBox reports.

    Columns: corpus, folds, speaker-independent?, test speakers, our best system,
    its pooled test UAR [CI], its mean ± std of folds (EmoBox reports a mean
    over folds), EmoBox's best UA and model.
    """
    from serlib.report.pages import is_speaker_independent

    runs = results if isinstance(results, pd.DataFrame) else list_runs(results)
    emobox = reference_results()["emobox_best"]["corpora"]
    rows, raw = [], []
    for corpus in CORPORA:
        if corpus not in emobox:
            continue
        pr = protocol_results(runs, corpus, "emobox", n_resamples=n_resamples)
        best = pr.best(None)
        row = {"corpus": DISPLAY_NAMES[corpus], "EmoBox folds": len(pr.folds) or "—",
               "speaker-independent?": "yes" if is_speaker_independent(corpus, "emobox") else "no",
               "test speakers": pr.test_speakers or "—"}
        if best is None:
            row.update({"our best (pooled UAR [CI])": "not run on these folds", "our mean ± std of folds": "—"})
        else:
            b = pr.systems[best].bootstrap
            raw.append({"corpus": DISPLAY_NAMES[corpus], "independent": is_speaker_independent(corpus, "emobox"),
                        "uar": 100 * b.uar, "low": 100 * b.ci_low, "high": 100 * b.ci_high,
                        "emobox": float(emobox[corpus]["ua"])})
            m, sd, n = mean_of_folds(pr.systems[best].used)
            row.update({"our best (pooled UAR [CI])": pooled_cell(pr, best, named=True),
                        "our mean ± std of folds": folds_figure(m, sd, n)})
        row["EmoBox best UA (model)"] = f"{emobox[corpus]['ua']:.1f} ({emobox[corpus]['model']})"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["numbers"] = raw  # the figures behind the cells, for the verdict
    return table


def previous_system_table() -> pd.DataFrame:
    """The replaced system's published numbers, what each one is, and why it is not comparable."""
    from serlib.report.pages import comparability

    prev = reference_results()["previous_system"]["corpora"]
    rows = []
    for corpus, p in prev.items():
        if p.get("test_uar") is None and p.get("best_val_uar") is None:
            continue
        number = (f"{p['test_uar']:.1f} (test)" if p.get("test_uar") is not None
                  else f"{p['best_val_uar']:.1f} (validation)")
        rows.append({"corpus": DISPLAY_NAMES.get(corpus, corpus), "published UAR %": number,
                     "split": p.get("protocol", "—"), "comparable with ours?": comparability(p)})
    return pd.DataFrame(rows)


def full_grid(primary: dict[str, ProtocolResults]) -> pd.DataFrame:
    """Every report system on every corpus's primary protocol, one row each (the appendix table and its CSV).

    Columns: corpus, protocol, system, post hoc, folds, seeds, test speakers,
    mean and std of folds, pooled UAR and its CI bounds (all in percent, 1 decimal).
    """
    rows = []
    for corpus in CORPORA:
        pr = primary.get(corpus)
        if pr is None:
            continue
        for model, s in pr.systems.items():
            if s.runs.empty:
                continue
            m, sd, n = mean_of_folds(s.used if len(s.used) else s.runs)
            b = s.bootstrap
            rows.append({"corpus": DISPLAY_NAMES[corpus], "protocol": pr.protocol, "system": system_label(model),
                         "post hoc": "yes" if is_post_hoc(model, corpus) else "no", "folds": n, "seeds": len(s.seeds),
                         "test speakers": pr.test_speakers,
                         "mean of folds %": round(100 * m, 1), "std of folds %": round(100 * sd, 1) if n > 1 else None,
                         "pooled UAR %": round(100 * b.uar, 1) if b else None,
                         "CI low %": round(100 * b.ci_low, 1) if b else None,
                         "CI high %": round(100 * b.ci_high, 1) if b else None})
    return pd.DataFrame(rows)


def grid_view(grid: pd.DataFrame) -> pd.DataFrame:
    """The full grid as systems × corpora, cells pooled UAR [CI] (the appendix's first table); † marks an interval
    on fewer than :data:`MIN_TEST_SPEAKERS` test speakers, "(post hoc here)" a system post hoc on that corpus only."""
    if grid.empty:
        return grid

    def cell(r: pd.Series) -> str:
        if pd.isna(r["pooled UAR %"]):
            return "incomplete"
        text = f"{r['pooled UAR %']:.1f} [{r['CI low %']:.1f}, {r['CI high %']:.1f}]"
        text += f" {DAGGER}" if r["test speakers"] < MIN_TEST_SPEAKERS else ""
        return text + (" (post hoc here)" if r["post hoc"] == "yes" and "(post hoc)" not in r["system"] else "")

    cells = grid.assign(cell=[cell(r) for _, r in grid.iterrows()])
    order = list(dict.fromkeys(grid["corpus"]))
    view = cells.pivot(index="system", columns="corpus", values="cell").reindex(columns=order)
    systems = list(dict.fromkeys(grid["system"]))
    return view.reindex(systems).fillna("—").reset_index()


def folds_view(grid: pd.DataFrame) -> pd.DataFrame:
    """The full grid as systems × corpora, cells mean ± std of folds (one fold: the fold's UAR, said so)."""
    if grid.empty:
        return grid
    cells = grid.assign(cell=[f"{r['mean of folds %']:.1f} ± {r['std of folds %']:.1f}" if pd.notna(r["std of folds %"])
                              else f"{r['mean of folds %']:.1f} (one fold)" for _, r in grid.iterrows()])
    order = list(dict.fromkeys(grid["corpus"]))
    view = cells.pivot(index="system", columns="corpus", values="cell").reindex(columns=order)
    return view.reindex(list(dict.fromkeys(grid["system"]))).fillna("—").reset_index()


def convention_gaps(primary: dict[str, ProtocolResults], *, points: float = 3.0) -> str:
    """A sentence for each corpus where a representative system's pooled UAR and mean of folds differ by more than
    ``points``: the two conventions weigh folds differently when folds differ in size or class balance."""
    lines = []
    for corpus in CORPORA:
        pr = primary.get(corpus)
        if pr is None or not pr.ran:
            continue
        gaps = {}
        for model in {m for m in representatives(pr).values() if m}:
            s = pr.systems[model]
            mean, _, n = mean_of_folds(s.used)
            if n > 1 and s.bootstrap is not None:
                gaps[model] = 100 * (s.bootstrap.uar - mean)
        if gaps and max(abs(g) for g in gaps.values()) > points:
            widest = max(gaps, key=lambda m: abs(gaps[m]))
            lines.append(f"{abs(gaps[widest]):.1f} points on {DISPLAY_NAMES[corpus]} ({system_label(widest, corpus)}: "
                         f"pooled {pr.systems[widest].pooled_uar * 100:.1f}, mean of folds "
                         f"{pr.systems[widest].pooled_uar * 100 - gaps[widest]:.1f})")
    if not lines:
        return ""
    return ("The pooled UAR and the mean of folds differ by up to " + "; ".join(lines) + ". The folds of these "
            "corpora differ in size and class balance: the pooled figure weighs every test clip once, the mean "
            "weighs every fold once; both are on the corpus pages.")


# ----------------------------------------------------------------------------- the verdict


def _span(values: dict[str, float]) -> str:
    lo, hi = min(values, key=values.get), max(values, key=values.get)
    if lo == hi:
        return f"{100 * values[lo]:.1f} % ({lo})"
    return f"{100 * values[lo]:.1f} % ({lo}) to {100 * values[hi]:.1f} % ({hi})"


def _points(values: Sequence[float]) -> str:
    lo, hi = 100 * min(values), 100 * max(values)
    return f"{lo:+.1f}" if abs(hi - lo) < 0.05 else f"{lo:+.1f} to {hi:+.1f}"


def _choice_sentence(usable: dict[str, ProtocolResults], names: dict[str, str]) -> str:
    """How the best classical and Whisper-base systems were chosen, and where validation could not tell them apart."""
    text = ("The best classical baseline and the best Whisper-base system of each corpus are those with the highest "
            "validation UAR (never the test score)")
    ties = []
    for c, pr in usable.items():
        for role, kinds in ROLES:
            tie = [] if isinstance(kinds, str) else pr.validation_tie(kinds)
            if not tie:
                continue
            chosen = pr.best(kinds)
            ties.append(f"{names[c]}'s {role} ({len(tie) + 1} systems at "
                        f"{100 * pr.systems[chosen].validation_uar:.1f} %; {system_label(chosen, c)}, the first in the "
                        "catalogue, stands for them)")
    if ties:
        text += "; validation could not choose " + " and ".join(ties)
    return text + "."


def verdict(primary: dict[str, ProtocolResults], anchors: pd.DataFrame | None = None) -> str:
    """3 to 6 sentences read off the runs: who wins, by how much, Tier-1's place, and where intervals are thin.

    ``anchors`` is the :func:`anchor_table` shown with them (the sentence on EmoBox reads it).
    """
    usable = {c: pr for c, pr in primary.items() if pr.ran}
    if not usable:
        return "No corpus has a complete set of runs yet."
    reps = {c: representatives(pr) for c, pr in usable.items()}
    names = {c: DISPLAY_NAMES[c] for c in usable}
    sentences = []

    whisper = {c: r["best Whisper-base"] for c, r in reps.items() if r["best Whisper-base"]}
    first = [c for c, m in whisper.items()
             if all(usable[c].systems[m].pooled_uar >= usable[c].systems[o].pooled_uar
                    for o in reps[c].values() if o)]
    if whisper:
        kinds = pd.Series([system_label(m) for m in whisper.values()]).value_counts()
        lead = kinds.index[0]
        sentences.append(
            f"A system built on the frozen Whisper-base encoder is the strongest of the four on {len(first)} of "
            f"{len(usable)} corpora ({', '.join(names[c] for c in first) or 'none'}); the best of these systems "
            f"is {lead} on {int(kinds.iloc[0])} of them, and their pooled test UAR runs from "
            f"{_span({names[c]: usable[c].systems[m].pooled_uar for c, m in whisper.items()})}.")
        gains = {c: paired_difference(usable[c], m, reps[c]["best classical"]) for c, m in whisper.items()}
        gains = {c: d for c, d in gains.items() if d is not None}
        if gains:
            clear = [c for c, d in gains.items() if d.ci_low > 0]
            sentences.append(
                f"Their lead over the best classical baseline (openSMILE or MFCC features with an SVM or logistic "
                f"regression) is {_points([d.difference for d in gains.values()])} points, and the 95 % speaker "
                f"interval of that difference lies above zero on {len(clear)} of {len(gains)} corpora.")
    sentences.append(_choice_sentence(usable, names))
    tier1 = {names[c]: usable[c].systems["tier1"].pooled_uar for c, r in reps.items() if r["Tier-1 (reproduced)"]}
    if tier1:
        plus = {c: paired_difference(usable[c], "tier1plus", "tier1") for c in usable}
        plus = {c: d for c, d in plus.items() if d is not None}
        text = (f"Tier-1, the replaced system reproduced on speaker-independent folds, scores {_span(tier1)}")
        if plus:
            up = [names[c] for c, d in plus.items() if d.ci_low > 0]
            text += (f"; Tier-1+ (the same network with a recipe chosen on validation speakers) is clearly above it "
                     f"on {len(up)} of {len(plus)} corpora" + (f" ({', '.join(up)})" if up else ""))
        sentences.append(text + ".")
    fair = [r for r in (anchors.attrs.get("numbers", []) if anchors is not None else []) if r["independent"]]
    if fair:
        inside = [r["corpus"] for r in fair if r["low"] <= r["emobox"] <= r["high"]]
        above = [r["corpus"] for r in fair if r["emobox"] > r["high"]]
        below = [r["corpus"] for r in fair if r["emobox"] < r["low"]]
        parts = [f"{what} on {', '.join(where)}" for what, where in
                 (("inside the 95 % interval of the best system here", inside), ("above it", above),
                  ("below it", below)) if where]
        sentences.append("On EmoBox's own speaker-independent folds, EmoBox's best large pre-trained model lies "
                         + "; ".join(parts) + "; the previous system's published figures come from other splits and "
                         "are not comparable.")
    thin = [names[c] for c, pr in usable.items() if few_speakers(pr)]
    if thin:
        sentences.append(f"{' and '.join(thin)} test on fewer than {MIN_TEST_SPEAKERS} speakers in all, so their "
                         f"intervals are wide and marked {DAGGER}, and their comparisons carry no p-value.")
    return " ".join(sentences)


# ----------------------------------------------------------------------------- the figure


def plot_headline(primary: dict[str, ProtocolResults], *, results: str | Path | None = None) -> plt.Figure:
    """Per corpus, the four representative systems' pooled test UAR with its 95 % speaker CI.

    The previous system's published figure (hollow diamond, never comparable)
    and EmoBox's best on the same folds (cross, only where the corpus's
    protocol is EmoBox's) are labelled markers. Chance level is a dotted line
    per corpus. The legend sits below the axes, off the data.
    """
    refs = reference_results()
    prev, emobox = refs["previous_system"]["corpora"], refs["emobox_best"]["corpora"]
    usable = [c for c in CORPORA if c in primary and primary[c].ran]
    colours = {"Tier-1 (reproduced)": "#7f7f7f", "Tier-1+": "#1f77b4", "best classical": "#ff7f0e",
               "best Whisper-base": "#2ca02c"}
    fig, ax = plt.subplots(figsize=(9.5, 1.05 * len(usable) + 1.6))
    ticks, labels = [], []
    y = 0.0
    for corpus in usable:
        pr = primary[corpus]
        reps = representatives(pr)
        n_classes = len({c for m in pr.ran for c in pr.systems[m].predictions["true"]})
        top = y
        for i, (role, _) in enumerate(ROLES):
            model = reps[role]
            if model is None or pr.systems[model].bootstrap is None:
                continue
            b = pr.systems[model].bootstrap
            yy = y + 0.18 * i
            ax.errorbar(100 * b.uar, yy, xerr=[[100 * (b.uar - b.ci_low)], [100 * (b.ci_high - b.uar)]], fmt="o",
                        color=colours[role], ms=5, capsize=2, lw=1.2, label=role)
        ax.plot([100 / n_classes] * 2, [top - 0.12, top + 0.66], ls=":", color="black", lw=0.8, label="chance")
        p = prev.get(corpus) or {}
        number = p.get("test_uar") if p.get("test_uar") is not None else p.get("best_val_uar")
        if number is not None:
            ax.plot(number, top + 0.27, marker="D", mfc="none", mec="black", ms=7, ls="none",
                    label="previous system (published; not comparable)")
        if corpus in emobox and pr.protocol == "emobox":
            ax.plot(emobox[corpus]["ua"], top + 0.27, marker="X", color="#d62728", ms=8, ls="none",
                    label="EmoBox best, same folds (large model)")
        flag = f" {DAGGER}" if few_speakers(pr) else ""
        ticks.append(top + 0.27)
        labels.append(f"{DISPLAY_NAMES[corpus]}\n{pr.test_speakers} test speakers{flag}")
        y += 1.0
    ax.set_yticks(ticks, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("pooled test UAR, % (95 % CI resampling test speakers)")
    ax.grid(axis="x", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.25 / len(usable)),
              ncol=3, frameon=False, fontsize=8.5)
    ax.set_title("Speech emotion recognition on unseen speakers, primary protocol of each corpus", fontsize=10.5)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- across corpora


def rank_table(across: Any) -> pd.DataFrame:
    """The Friedman test's average ranks (1 = best), best first, and whether each is within the critical
    difference of the best-ranked system (not shown to differ from it)."""
    ranks = across.result.average_ranks.sort_values()
    cd = across.result.critical_difference
    return pd.DataFrame({"system": ranks.index, "average rank": [f"{r:.2f}" for r in ranks],
                         "within the critical difference of the first?": ["—" if i == 0 else
                                                                          ("yes" if r - ranks.iloc[0] < cd else "no")
                                                                          for i, r in enumerate(ranks)]})


def distinct_friedman(primary: dict[str, ProtocolResults]):
    """:func:`serlib.report.comparisons.friedman_over_corpora` over :data:`DISTINCT_SYSTEMS` only."""
    return friedman_over_corpora(primary, DISTINCT_SYSTEMS)


__all__ = ["ROLES", "DISTINCT_SYSTEMS", "representatives", "verdict", "plot_headline", "headline_table",
           "difference_table", "anchor_table", "previous_system_table", "full_grid", "grid_view", "folds_view",
           "distinct_friedman", "rank_table", "decimals", "show", "not_run_note", "pooled_cell", "convention_gaps"]
