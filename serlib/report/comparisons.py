"""Systems side by side: one protocol's table of every system, paired tests, per-speaker UAR, and across corpora.

Everything here reads run folders (:func:`serlib.core.runs.list_runs`) and the test
predictions they hold; nothing trains. The statistics are those of
:mod:`serlib.evaluation.stats` (speakers are the resampling unit). Two kinds of UAR are
reported and every table says which one it shows:

**mean of folds**
    For each fold the mean test UAR over its seeds, then the mean ± sample
    standard deviation over folds (how much the result depends on the test fold).
**pooled**
    The test predictions of all folds of one seed concatenated into one UAR,
    averaged over seeds (:func:`serlib.evaluation.stats.speaker_bootstrap`); its 95 % CI
    resamples test *speakers*, not utterances.

Only *complete* seeds enter a system's pooled numbers: a seed that has every
fold the protocol has (the folds found in its run folders, over all systems).
A system with no complete seed is shown as incomplete and is left out of the
comparisons, since its pooled UAR would cover other speakers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from serlib.core.runs import list_runs
from serlib.evaluation.folds import mean_of_folds
from serlib.evaluation.metrics import classification_report_dict

REPORT_SYSTEMS: tuple[str, ...] = ("tier1", "tier1plus", "baseline-svm", "egemaps-svm", "compare-svm",
                                   "whisper-logreg", "whisper-mlp", "whisper-fusion", "whisper-fusion-pooled")
"""The systems every protocol page and the summary show by default."""

NETWORK_SEEDS = 3
"""Seeds a network is meant to have per fold (deterministic systems: seed 0 only)."""

def system_label(model: str, corpus: str | None = None) -> str:
    """What a reader sees for a run-folder model name: the registered system's label, or a Tier-1 variant's.

    ``(post hoc)`` follows the label of a post-hoc system, and, with ``corpus``, of one post hoc on that corpus.
    """
    from serlib.systems.registry import REGISTRY

    if model in REGISTRY:
        return REGISTRY[model].label + (" (post hoc)" if is_post_hoc(model, corpus) else "")
    if model.startswith("tier1-tplus-"):  # a one-change variant of the Tier-1+ recipe
        change = model[len("tier1-tplus-"):]
        return "Tier-1+ (per-speaker z-score, transductive)" if change == "spkz" else f"Tier-1+ ({change})"
    if model.startswith("tier1-"):
        return f"Tier-1 ({model[len('tier1-'):]})"
    return model


def system_kind(model: str) -> str:
    """``network``, ``classical`` or ``encoder`` (from the model registry); ``other`` for unknown names."""
    from serlib.systems.registry import REGISTRY

    if model in REGISTRY:
        return REGISTRY[model].kind
    if model.startswith("tier1"):
        return "network"
    return "other"


def is_seeded(model: str) -> bool:
    """Whether the system's result depends on the seed, so that it runs every seed (from the model registry)."""
    from serlib.systems.registry import REGISTRY

    return REGISTRY[model].seeded if model in REGISTRY else model.startswith("tier1")


def is_post_hoc(model: str, corpus: str | None = None) -> bool:
    """Whether the system's rule was written after test numbers it is scored on were seen (from the registry):
    everywhere, or (with ``corpus``) on that corpus only (:attr:`serlib.systems.base.System.post_hoc_on`)."""
    from serlib.systems.registry import REGISTRY

    return bool(REGISTRY[model].post_hoc_reason(corpus)) if model in REGISTRY else False


def is_post_hoc_here_only(model: str, corpus: str) -> bool:
    """Whether the system is post hoc on ``corpus`` but not everywhere (its label then carries no mark by itself)."""
    return is_post_hoc(model, corpus) and not is_post_hoc(model)


MIN_TEST_SPEAKERS = 5
"""Intervals resting on fewer test speakers than this are marked, and their comparisons get no p-value."""


def is_transductive(model: str) -> bool:
    """Whether the system normalises with statistics of the test speakers (the ``-spkz`` variants)."""
    return model.endswith("-spkz")


# ----------------------------------------------------------------------------- one protocol


@dataclass
class SystemResult:
    """One system's runs under one protocol and what is computed from them."""

    model: str
    runs: pd.DataFrame  # every finished run folder of the system under the protocol
    used: pd.DataFrame  # the runs of its complete seeds (every protocol fold)
    folds: list[int]  # the folds of the protocol
    bootstrap: Any = None  # serlib.evaluation.stats.BootstrapResult of the pooled UAR (None without a complete seed)
    predictions: pd.DataFrame | None = field(default=None, repr=False)  # test predictions of the used runs
    error: str = ""  # why the pooled numbers could not be computed

    @property
    def kind(self) -> str:
        return system_kind(self.model)

    @property
    def seeds(self) -> list[int]:
        """Seeds of the complete runs (or of every run when none is complete)."""
        source = self.used if len(self.used) else self.runs
        return sorted(int(s) for s in source["seed"].unique()) if len(source) else []

    @property
    def status(self) -> str:
        """``run``, ``not run`` or ``incomplete: k of n folds``."""
        if self.runs.empty:
            return "not run"
        if self.used.empty:
            return f"incomplete: {self.runs['fold'].nunique()} of {len(self.folds)} folds"
        return "run"

    @property
    def pooled_uar(self) -> float:
        return float(self.bootstrap.uar) if self.bootstrap is not None else float("nan")

    @property
    def validation_uar(self) -> float:
        """Mean best validation UAR of the used runs: what choosing between systems may look at."""
        source = self.used if len(self.used) else self.runs
        values = pd.to_numeric(source.get("best_val_uar", pd.Series(dtype=float)), errors="coerce")
        return float(values.mean()) if values.notna().any() else float("nan")

    def report(self, labels: Sequence[str] | None = None) -> dict[str, Any] | None:
        """Metrics over every used test prediction, all folds and seeds pooled (None when nothing is used)."""
        if self.predictions is None or self.predictions.empty:
            return None
        p = self.predictions
        labels = list(labels) if labels else sorted(set(p["true"]))
        return classification_report_dict(p["true"], p["predicted"], labels)


@dataclass
class ProtocolResults:
    """Every requested system under one corpus protocol."""

    corpus: str
    protocol: str
    folds: list[int]
    systems: dict[str, SystemResult]  # in the requested order
    others: list[str]  # systems with runs here that were not requested
    fingerprints: list[str]  # data fingerprints recorded by the runs of the requested systems
    n_resamples: int = 2000
    differences: dict[tuple[str, str, int], Any] = field(default_factory=dict, repr=False, compare=False)
    """:func:`paired_difference` results already bootstrapped, by (A, B, seed): a page asks for one pair twice."""

    @property
    def ran(self) -> list[str]:
        """Requested systems with pooled numbers (complete seeds)."""
        return [m for m, s in self.systems.items() if s.bootstrap is not None]

    @property
    def any_runs(self) -> bool:
        return any(len(s.runs) for s in self.systems.values())

    def best(self, kinds: Iterable[str] | None = ("classical",), *, transductive: bool = False,
             exclude: Iterable[str] = ()) -> str | None:
        """The system of the given kinds (``None``: any) with the highest mean validation UAR: the report's "best".

        Chosen on the validation speakers, never on test: the paired tests then
        compare systems picked before their test scores were looked at. Post-hoc
        systems never count, transductive ones only if asked. A tie goes to the
        system requested first (the catalogue's order), as when every system
        scores 100 % on validation (see :meth:`validation_tie`).
        """
        pool = self._candidates(kinds, transductive=transductive, exclude=exclude)
        return max(pool, key=lambda m: np.nan_to_num(self.systems[m].validation_uar, nan=-1.0)) if pool else None

    def _candidates(self, kinds: Iterable[str] | None, *, transductive: bool = False,
                    exclude: Iterable[str] = ()) -> list[str]:
        """The systems :meth:`best` may choose from: complete, of ``kinds`` (``None``: any), not post hoc here."""
        kinds, exclude = (None if kinds is None else set(kinds)), set(exclude)
        return [m for m in self.ran if (kinds is None or self.systems[m].kind in kinds) and m not in exclude
                and (transductive or not is_transductive(m)) and not is_post_hoc(m, self.corpus)]

    def validation_tie(self, kinds: Iterable[str] | None = ("classical",)) -> list[str]:
        """The systems of ``kinds`` that share the best validation UAR with :meth:`best` (empty when it has none)."""
        chosen = self.best(kinds)
        if chosen is None:
            return []
        top = self.systems[chosen].validation_uar
        return [m for m in self._candidates(kinds) if m != chosen
                and np.isclose(self.systems[m].validation_uar, top, rtol=0, atol=1e-9)]

    @property
    def test_speakers(self) -> int:
        """Distinct test speakers over all folds (those of the first system with predictions; 0 if none)."""
        for m in self.ran:
            return int(self.systems[m].predictions["speaker"].astype(str).nunique())
        return 0


def complete_seed_runs(runs: pd.DataFrame, folds: Sequence[int]) -> pd.DataFrame:
    """The runs of the seeds that have every one of ``folds``."""
    if runs.empty:
        return runs
    have = runs.groupby("seed")["fold"].apply(lambda f: set(f) >= set(folds))
    return runs[runs["seed"].isin(have[have].index)]


def protocol_results(results: str | Path | pd.DataFrame, corpus: str, protocol: str,
                     models: Sequence[str] = REPORT_SYSTEMS, *, n_resamples: int = 2000,
                     seed: int = 0) -> ProtocolResults:
    """Read every requested system's runs of ``corpus``/``protocol`` and bootstrap its pooled UAR.

    Parameters
    ----------
    results
        The results folder, or a :func:`serlib.core.runs.list_runs` table of it.
    models
        Run-folder model names, in the order the tables show them.
    n_resamples, seed
        Size and seed of the speaker bootstrap.
    """
    from serlib.evaluation.stats import StatsError, load_predictions, speaker_bootstrap

    runs = results if isinstance(results, pd.DataFrame) else list_runs(results)
    if len(runs):
        runs = runs[(runs["corpus"] == corpus) & (runs["protocol"] == protocol)]
    runs = runs.sort_values(["model", "seed", "fold"]).reset_index(drop=True) if len(runs) else pd.DataFrame(
        columns=["corpus", "protocol", "model", "fold", "seed", "path", "test_uar", "test_accuracy", "fingerprint",
                 "wall_seconds"])
    folds = sorted(int(f) for f in runs["fold"].unique())
    systems = {}
    for model in models:
        mine = runs[runs["model"] == model].reset_index(drop=True)
        if not is_seeded(model) and (mine["seed"] == 0).any():
            mine = mine[mine["seed"] == 0].reset_index(drop=True)  # a deterministic system: other seeds repeat it
        used = complete_seed_runs(mine, folds).reset_index(drop=True)
        result = SystemResult(model, mine, used, folds)
        if len(used):
            try:
                result.predictions = load_predictions(used["path"])
                result.bootstrap = speaker_bootstrap(result.predictions, n_resamples=n_resamples, seed=seed)
            except (StatsError, KeyError, ValueError) as err:
                result.bootstrap, result.error = None, str(err).splitlines()[0][:200]
        systems[model] = result
    others = sorted(set(runs["model"]) - set(models))
    shown = runs[runs["model"].isin(list(models))]  # others may train on more data (the -multi heads)
    prints = sorted(str(f) for f in shown["fingerprint"].dropna().unique()) if "fingerprint" in runs else []
    return ProtocolResults(corpus, protocol, folds, systems, others, prints, n_resamples)


def _pct(value: float, digits: int = 2) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f}"


def _seed_means(predictions: pd.DataFrame, labels: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of each seed's pooled predictions, averaged over seeds."""
    reports = [classification_report_dict(g["true"], g["predicted"], labels) for _, g in predictions.groupby("seed")]
    return {k: float(np.mean([r[k] for r in reports])) for k in ("accuracy", "macro_f1")}


def folds_figure(mean: float, std: float, n: int) -> str:
    """A mean of folds as the pages print it: ``63.7 ± 2.8``, ``56.9 (one fold)``, or ``—`` without folds."""
    if not n or not np.isfinite(mean):
        return "—"
    return f"{100 * mean:.1f} (one fold)" if n == 1 else f"{100 * mean:.1f} ± {100 * std:.1f}"


def system_table(pr: ProtocolResults) -> pd.DataFrame:
    """One row per requested system (index: run-folder name): runs, pooled UAR with its speaker CI, mean of folds,
    pooled accuracy and macro-F1, minutes.

    Columns: ``system``, ``runs`` (folds × seeds, or why the system has no
    pooled numbers: ``not run``, ``incomplete: k of n folds``), ``pooled test UAR % [95 % CI]``,
    ``mean ± std of folds %``, ``pooled accuracy %``, ``pooled macro-F1 %``,
    ``minutes``. Accuracy and macro-F1 are pooled like the UAR (all folds of a
    seed, mean over seeds). Intervals on fewer than :data:`MIN_TEST_SPEAKERS` test speakers are marked †.
    """
    rows = []
    for model, s in pr.systems.items():
        row = {"model": model, "system": system_label(model, pr.corpus), "runs": s.status}
        if len(s.runs):
            source = s.used if len(s.used) else s.runs
            m, sd, n = mean_of_folds(source)
            runs = f"{n} × {len(s.seeds)}" + (f" (seeds {', '.join(map(str, s.seeds))})" if len(s.seeds) > 1 else "")
            row.update({"runs": runs if s.status == "run" else f"{runs}, {s.status}",
                        "mean ± std of folds %": folds_figure(m, sd, n),
                        "minutes": round(float(source["wall_seconds"].fillna(0).sum()) / 60, 1)})
        if s.bootstrap is not None:
            b = s.bootstrap
            few = " †" if b.n_speakers < MIN_TEST_SPEAKERS else ""
            extra = _seed_means(s.predictions, sorted(set(s.predictions["true"])))
            row.update({"pooled test UAR % [95 % CI]": f"{_pct(b.uar, 1)} [{_pct(b.ci_low, 1)}, {_pct(b.ci_high, 1)}]{few}",
                        "pooled accuracy %": _pct(extra["accuracy"], 1), "pooled macro-F1 %": _pct(extra["macro_f1"], 1)})
        elif s.error:
            row["pooled test UAR % [95 % CI]"] = f"not computed: {s.error}"
        rows.append(row)
    columns = ["model", "system", "runs", "pooled test UAR % [95 % CI]", "mean ± std of folds %", "pooled accuracy %",
               "pooled macro-F1 %", "minutes"]
    table = pd.DataFrame(rows, columns=columns).set_index("model").astype(object)
    return table.where(table.notna(), "—")


def comparisons(pr: ProtocolResults) -> list[tuple[str, str | None, str | None]]:
    """The paired comparisons a page shows: (what, system A, system B).

    * Tier-1 vs the best baseline (classical, not transductive, highest validation UAR);
    * Tier-1+ (the improved recipe) vs the best baseline, and vs Tier-1, when Tier-1+ is requested;
    * the best other network vs the best baseline, when one has runs;
    * the best encoder system vs the best baseline, and vs Tier-1;
    * the late fusion vs the best baseline, and vs its encoder component alone, when the fusion is requested;
    * the same two for the fusion with the pooled weight.
    """
    baseline = pr.best(("classical",))
    present = lambda model: model if model in pr.systems else None  # noqa: E731
    out: list[tuple[str, str | None, str | None]] = [("Tier-1 vs best baseline", present("tier1"), baseline)]
    if "tier1plus" in pr.systems:
        out += [("Tier-1+ vs best baseline", "tier1plus", baseline), ("Tier-1+ vs Tier-1", "tier1plus", present("tier1"))]
    other_net = pr.best(("network",), exclude=("tier1", "tier1plus"))
    if other_net:
        out.append(("best other network vs best baseline", other_net, baseline))
    encoder = pr.best(("encoder",))
    out += [("best encoder system vs best baseline", encoder, baseline),
            ("best encoder system vs Tier-1", encoder, present("tier1"))]
    if "whisper-fusion" in pr.systems:
        out += [("fusion vs best baseline", "whisper-fusion", baseline),
                ("fusion vs Whisper-base MLP", "whisper-fusion", present("whisper-mlp"))]
    if "whisper-fusion-pooled" in pr.systems:
        out += [("pooled-weight fusion vs best baseline", "whisper-fusion-pooled", baseline),
                ("pooled-weight fusion vs Whisper-base MLP", "whisper-fusion-pooled", present("whisper-mlp"))]
    return out


def transductive_counterpart(model: str) -> str:
    """The system a per-speaker z-scored variant differs from only by the z-score (``compare-svm-spkz`` ->
    ``compare-svm``; the Tier-1+ variant ``tier1-tplus-spkz`` -> ``tier1plus``)."""
    return "tier1plus" if model == "tier1-tplus-spkz" else model[: -len("-spkz")]


def transductive_results(results: str | Path | pd.DataFrame, corpus: str, protocol: str, *,
                         n_resamples: int = 2000, seed: int = 0) -> ProtocolResults | None:
    """The per-speaker z-scored (transductive) systems with runs under a protocol, each beside its inductive
    counterpart; ``None`` when no transductive system has run there."""
    runs = results if isinstance(results, pd.DataFrame) else list_runs(results)
    here = runs[(runs["corpus"] == corpus) & (runs["protocol"] == protocol)] if len(runs) else runs
    present = sorted(m for m in (set(here["model"]) if len(here) else set()) if is_transductive(m))
    if not present:
        return None
    models = list(dict.fromkeys([m for t in present for m in (t, transductive_counterpart(t))]))
    return protocol_results(runs, corpus, protocol, models, n_resamples=n_resamples, seed=seed)


def transductive_comparisons(pr: ProtocolResults) -> list[tuple[str, str | None, str | None]]:
    """The paired comparisons of a :func:`transductive_results`: the transductive network against the best
    transductive baseline (chosen on validation UAR), then each z-scored system against itself without it."""
    baselines = [m for m in pr.ran if is_transductive(m) and pr.systems[m].kind == "classical"]
    baseline = max(baselines, key=lambda m: np.nan_to_num(pr.systems[m].validation_uar, nan=-1.0)) if baselines else None
    out: list[tuple[str, str | None, str | None]] = []
    if "tier1-tplus-spkz" in pr.systems:
        out.append(("Tier-1+ z-scored vs best z-scored baseline", "tier1-tplus-spkz", baseline))
    out += [(f"{system_label(m)} vs without the z-score", m, transductive_counterpart(m))
            for m in pr.systems if is_transductive(m)]
    return out


def paired_table(pr: ProtocolResults, *, n_resamples: int | None = None, seed: int = 0,
                 pairs: Sequence[tuple[str, str | None, str | None]] | None = None) -> pd.DataFrame:
    """Paired speaker-clustered bootstrap of pooled-UAR differences A − B, one row per :func:`comparisons` entry
    (or per ``(what, A, B)`` of ``pairs``).

    Columns: ``comparison`` (the index), ``A``, ``B``, ``difference (points)``,
    ``95 % CI (points)``, ``one-sided p (A > B)`` (3 significant figures; ``—`` below
    :data:`MIN_TEST_SPEAKERS` test speakers), ``speakers``, ``seeds`` (which were
    paired, :func:`matched_seeds`), ``reading``. The same speakers are drawn for A and B in every
    resample; a row whose systems have no complete runs says what is missing.
    """
    from serlib.evaluation.stats import StatsError

    rows = []
    for what, a, b in comparisons(pr) if pairs is None else pairs:
        row = {"comparison": what, "A": system_label(a, pr.corpus) if a else "—",
               "B": system_label(b, pr.corpus) if b else "—"}
        why = []
        if a is None:
            why.append("no system of this kind has complete runs")
        elif pr.systems[a].bootstrap is None:
            why.append(f"{system_label(a, pr.corpus)} {pr.systems[a].status}")
        if b is None:
            why.append("no classical baseline has complete runs")
        elif pr.systems[b].bootstrap is None:
            why.append(f"{system_label(b, pr.corpus)} {pr.systems[b].status}")
        if why:
            row["reading"] = "not compared: " + "; ".join(why)
            rows.append(row)
            continue
        try:
            res = _difference(pr, a, b, n_resamples=n_resamples or pr.n_resamples, seed=seed)
        except StatsError as err:
            row["reading"] = f"not paired: {err}"
            rows.append(row)
            continue
        if res.ci_low > 0:
            reading = f"{system_label(a, pr.corpus)} better: the CI excludes 0"
        elif res.ci_high < 0:
            reading = f"{system_label(b, pr.corpus)} better: the CI excludes 0"
        else:
            reading = "no clear difference: the CI includes 0"
        if res.few:
            reading += f" (only {res.speakers} test speakers: no p-value)"
        row.update({"difference (points)": f"{100 * res.difference:+.1f}",
                    "95 % CI (points)": f"[{100 * res.ci_low:+.1f}, {100 * res.ci_high:+.1f}]"
                                        + (" †" if res.few else ""),
                    "one-sided p (A > B)": "—" if res.few else format_p(res.p_value),
                    "speakers": str(res.speakers), "seeds": res.seeds, "reading": reading})
        rows.append(row)
    columns = ["comparison", "A", "B", "difference (points)", "95 % CI (points)", "one-sided p (A > B)", "speakers",
               "seeds", "reading"]
    table = pd.DataFrame(rows, columns=columns).set_index("comparison").astype(object)
    return table.where(table.notna(), "—")


def format_p(p: float) -> str:
    """A p-value to 3 significant figures, never in exponent notation (``0.000500``, ``0.0312``, ``0.412``)."""
    if not np.isfinite(p):
        return "—"
    digits = max(3, 3 - int(np.floor(np.log10(p))) - 1) if p > 0 else 3
    return f"{p:.{digits}f}"


def matched_seeds(a: SystemResult, b: SystemResult) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The test predictions of two systems on matched seeds, and a note saying which seeds were paired.

    Two seeded systems keep only the seeds both have (a seed unmatched in
    either would compare different training runs). A deterministic system's
    runs do not depend on the seed, so its one seed pairs with every seed of
    the other system.
    """
    pa, pb = a.predictions, b.predictions
    if is_seeded(a.model) and is_seeded(b.model):
        common = sorted(set(a.seeds) & set(b.seeds))
        pa, pb = pa[pa["seed"].isin(common)], pb[pb["seed"].isin(common)]
        dropped = sorted((set(a.seeds) | set(b.seeds)) - set(common))
        note = f"{len(common)} matched" + (f" (seed {', '.join(map(str, dropped))} unmatched, left out)"
                                           if dropped else "")
        return pa, pb, note
    seeded = a if is_seeded(a.model) else b if is_seeded(b.model) else None
    if seeded is None:
        return pa, pb, "deterministic"
    return pa, pb, f"{len(seeded.seeds)} (the other system is deterministic)"


DAGGER = "†"
"""Marks an interval resting on fewer than :data:`MIN_TEST_SPEAKERS` test speakers."""


def fmt_uar(value: float) -> str:
    """A UAR fraction as a percentage to 1 decimal."""
    return "—" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def fmt_ci(uar: float, low: float, high: float, *, few: bool = False) -> str:
    """``72.3 [69.0, 75.6]`` (percent), with † when the interval rests on few test speakers."""
    return f"{fmt_uar(uar)} [{fmt_uar(low)}, {fmt_uar(high)}]" + (f" {DAGGER}" if few else "")


def fmt_difference(difference: float, low: float, high: float, *, few: bool = False) -> str:
    """``+12.3 [+9.8, +15.0]`` in points, with † when the interval rests on few test speakers."""
    return f"{100 * difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]" + (f" {DAGGER}" if few else "")


@dataclass
class Difference:
    """A paired, speaker-clustered difference A − B of pooled test UAR on matched seeds."""

    a: str
    b: str
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    speakers: int
    seeds: str

    @property
    def few(self) -> bool:
        """Whether the interval rests on fewer than :data:`MIN_TEST_SPEAKERS` test speakers."""
        return self.speakers < MIN_TEST_SPEAKERS

    @property
    def excludes_zero(self) -> bool:
        """Whether the 95 % interval lies wholly above or below zero."""
        return self.ci_low > 0 or self.ci_high < 0

    def cell(self) -> str:
        """``+12.3 [+9.8, +15.0]`` (points), marked † on few test speakers."""
        return fmt_difference(self.difference, self.ci_low, self.ci_high, few=self.few)


def _difference(pr: ProtocolResults, a: str, b: str, *, n_resamples: int, seed: int) -> Difference:
    """A − B on matched seeds, bootstrapped over test speakers; raises ``StatsError`` when they cannot be paired."""
    from serlib.evaluation.stats import StatsError, paired_speaker_bootstrap

    pa, pb, note = matched_seeds(pr.systems[a], pr.systems[b])
    if pa.empty or pb.empty:
        raise StatsError(f"the two systems share no complete seed ({note})")
    res = paired_speaker_bootstrap(pa, pb, n_resamples=n_resamples, seed=seed)
    return Difference(a, b, res.difference, res.ci_low, res.ci_high, res.p_value, res.n_speakers, note)


def paired_difference(pr: ProtocolResults, a: str | None, b: str | None, *, seed: int = 0) -> Difference | None:
    """A − B on matched seeds (:func:`matched_seeds`), or ``None`` when either lacks runs."""
    from serlib.evaluation.stats import StatsError

    if a is None or b is None or a == b or a not in pr.ran or b not in pr.ran:
        return None
    if (a, b, seed) not in pr.differences:
        try:
            pr.differences[(a, b, seed)] = _difference(pr, a, b, n_resamples=pr.n_resamples, seed=seed)
        except StatsError:
            pr.differences[(a, b, seed)] = None
    return pr.differences[(a, b, seed)]


def per_speaker_uar(pr: ProtocolResults, models: Sequence[str] | None = None) -> pd.DataFrame:
    """UAR % of every test speaker for each system with complete runs (mean over seeds), worst first.

    Index: speaker; columns: ``clips`` and one column per system (its label).
    Rows are sorted by the first system's UAR (Tier-1 by default).
    """
    from serlib.evaluation.stats import per_speaker_table

    models = [m for m in (models or pr.ran) if m in pr.ran]
    table = None
    for m in models:
        t = per_speaker_table(pr.systems[m].predictions).set_index("speaker")
        col = (100 * t["uar"]).round(1).rename(system_label(m, pr.corpus))
        table = pd.concat([t["n"].rename("clips"), col], axis=1) if table is None else table.join(col, how="outer")
    if table is None:
        return pd.DataFrame(columns=["clips"])
    table.index.name = "speaker"
    return table.sort_values([system_label(models[0], pr.corpus), "clips"])


def confusion_sources(pr: ProtocolResults) -> list[str]:
    """Systems whose per-class table and confusion matrix a page shows: Tier-1 and the best system (once each)."""
    out = ["tier1"] if "tier1" in pr.ran else []
    best = pr.best(None)
    if best and best not in out:
        out.append(best)
    return out


# ----------------------------------------------------------------------------- across corpora


def primary_results(results: str | Path, primary: dict[str, str], models: Sequence[str] = REPORT_SYSTEMS, *,
                    n_resamples: int = 2000, seed: int = 0) -> dict[str, ProtocolResults]:
    """:func:`protocol_results` of each corpus's primary protocol, for corpora with any run of a requested system."""
    runs = list_runs(results)
    out = {}
    for corpus, protocol in primary.items():
        pr = protocol_results(runs, corpus, protocol, models, n_resamples=n_resamples, seed=seed)
        if pr.any_runs:
            out[corpus] = pr
    return out


@dataclass
class AcrossCorpora:
    """Scores for the Friedman test and what was left out."""

    scores: pd.DataFrame  # corpora x systems, pooled UAR %
    result: Any  # serlib.evaluation.stats.FriedmanResult, or None
    note: str


def friedman_over_corpora(primary: dict[str, ProtocolResults], models: Sequence[str] = REPORT_SYSTEMS, *,
                          min_corpora: int = 3, alpha: float = 0.05) -> AcrossCorpora:
    """Friedman test with the Nemenyi critical difference over corpora (rows) and systems (columns).

    The score of a system on a corpus is its pooled test UAR on the corpus's
    primary protocol. Only corpora on which every compared system has complete
    runs count; while fewer than ``min_corpora`` corpora qualify, the system
    missing on most corpora is dropped (as long as 3 systems remain). The note
    says what was compared and what was left out.
    """
    from serlib.data.corpora import DISPLAY_NAMES
    from serlib.evaluation.stats import StatsError, friedman_nemenyi

    table = pd.DataFrame({m: {c: 100 * pr.systems[m].pooled_uar if m in pr.ran else np.nan
                              for c, pr in primary.items()} for m in models}, dtype=float)
    table.index = [DISPLAY_NAMES.get(c, c) for c in table.index]
    systems, dropped = list(models), []
    while True:
        complete = table[systems].dropna()
        if len(complete) >= min_corpora or len(systems) <= 3:
            break
        worst = max(systems, key=lambda m: (table[m].isna().sum(), -systems.index(m)))
        if table[worst].isna().sum() == 0:
            break
        systems.remove(worst)
        dropped.append(worst)
    scores = table[systems].dropna().rename(columns=system_label)
    left = f" Left out for lack of runs on enough corpora: {', '.join(system_label(m) for m in dropped)}." if dropped else ""
    if len(scores) < min_corpora or len(systems) < 3:
        return AcrossCorpora(scores, None, f"Not yet: the test needs at least {min_corpora} corpora on which at least 3 "
                                           f"systems all have results; {len(scores)} corpora qualify now.{left}")
    try:
        result = friedman_nemenyi(scores, alpha=alpha)
    except StatsError as err:
        return AcrossCorpora(scores, None, f"Not computed: {err}.{left}")
    note = (f"{len(scores)} corpora × {len(systems)} systems, pooled test UAR of each corpus's primary protocol. "
            f"Friedman χ² = {result.statistic:.2f}, p = {format_p(result.p_value)}; Nemenyi critical difference "
            f"{result.critical_difference:.2f} average ranks at α = {alpha}. With this few corpora the test has little "
            f"power: two systems whose average ranks differ by less than the critical difference are not shown to "
            f"differ.{left}")
    here = [f"{system_label(m)} on {DISPLAY_NAMES.get(c, c)}" for m in systems for c, pr in primary.items()
            if is_post_hoc_here_only(m, c) and DISPLAY_NAMES.get(c, c) in scores.index]
    if here:
        note += f" Ranked with scores that are post hoc on one corpus: {', '.join(here)}."
    return AcrossCorpora(scores, result, note)


def pooled_report(paths: Iterable[str | Path], labels: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """One metrics report over the concatenated test predictions of several runs (e.g. all folds of a seed)."""
    from serlib.evaluation.metrics import bootstrap_ci, classification_report_dict

    preds = pd.concat([pd.read_csv(Path(p) / "predictions.csv") for p in paths], ignore_index=True)
    labels = list(labels) if labels else sorted(set(preds["true"]))
    report = classification_report_dict(preds["true"], preds["predicted"], labels)
    report["uar_ci95"] = list(bootstrap_ci(preds["true"].values, preds["predicted"].values, seed=seed))
    return report

__all__ = ["pooled_report", "REPORT_SYSTEMS", "NETWORK_SEEDS", "system_label", "system_kind", "is_transductive",
           "SystemResult", "ProtocolResults", "folds_figure", "Difference", "paired_difference", "fmt_uar", "fmt_ci",
           "fmt_difference", "DAGGER", "is_post_hoc", "is_post_hoc_here_only", "MIN_TEST_SPEAKERS", "format_p", "matched_seeds", "complete_seed_runs", "protocol_results", "system_table", "comparisons",
           "paired_table", "transductive_counterpart", "transductive_results", "transductive_comparisons",
           "per_speaker_uar", "confusion_sources", "primary_results", "AcrossCorpora",
           "friedman_over_corpora"]
