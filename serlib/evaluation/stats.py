"""Statistics that respect speakers: clustered bootstrap CIs, paired comparisons, rank tests.

Utterances of one speaker are correlated, so a bootstrap over utterances gives
intervals that are too narrow. Here the resampling unit is the **speaker**: a
resample draws ``n_speakers`` speakers with replacement and keeps all their
test predictions (from every fold in which they were tested).

Conventions used throughout
---------------------------
* **Pooled UAR.** Every UAR in this module is *pooled over folds*: the test
  predictions of all folds of one seed are concatenated and one UAR (mean of
  per-class recalls, scikit-learn's ``balanced_accuracy_score``) is computed
  on them. This is not the *mean of per-fold UARs* that
  :func:`serlib.experiments.protocol.summarize_runs` reports; the report keeps both.
* **Seeds (replicates).** A system trained with several seeds is several
  replicates of the whole experiment on the same clips. With
  ``seed_mode="mean"`` (default) the UAR of a system is the mean over seeds of
  the per-seed pooled UAR, both for the point estimate and inside each
  resample (the *same* speakers are drawn for every seed). ``seed_mode="pool"``
  instead adds the confusion counts of all seeds before taking one UAR. The
  two differ only by the non-linearity of the per-class ratio.
* **Speed.** Predictions are reduced once to per-(seed, speaker, class) counts
  of hits and support; a resample is a vector of multinomial speaker weights,
  so the counts of all resamples are one matrix product. 2000 resamples of
  CREMA-D (7442 clips, 91 speakers, 3 seeds) take milliseconds.

With few speakers the speaker bootstrap is coarse: SAVEE's 4 speakers allow
only 35 distinct resamples, EmoDB's 10 about 92 000; percentile intervals from
fewer than about 10 speakers should be read as rough.

The resampling follows the "conditions" bootstrap of Ferrer & Riera's
``confidence_intervals`` package (MIT). That package (0.0.3) was not used: it
loops over resamples in Python calling the metric on index arrays, has no
notion of seeds or of a paired difference, and its ``Bootstrap.transform``
passes ``(y_pred, y_true)`` where ``fit_transform`` passes ``(y_true, y_pred)``,
which swaps the arguments of an asymmetric metric such as UAR.

The Friedman test with the Nemenyi critical difference follows Demšar (2006),
"Statistical comparisons of classifiers over multiple data sets", JMLR 7.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd


class StatsError(ValueError):
    """Input that the statistics cannot be computed on (one clear line says why)."""


# ----------------------------------------------------------------------------- reading predictions


def load_predictions(paths: Iterable[str | Path], file: str = "predictions.csv") -> pd.DataFrame:
    """Concatenate the ``predictions.csv`` (or another ``file``) of several run folders, adding ``fold`` and ``seed``.

    ``fold`` and ``seed`` come from the folder names ``fold-<k>/seed-<s>``
    (:func:`serlib.core.runs.run_dir`), else from ``provenance.json``; ``run`` is
    the folder path.
    """
    frames = []
    for p in paths:
        folder = Path(p)
        path = folder / file
        if not path.is_file():
            raise StatsError(f"no {file} in {'/'.join(Path(folder).parts[-5:])}")  # no machine path
        df = pd.read_csv(path, dtype={"utt_id": str, "speaker": str, "true": str, "predicted": str})
        fold = _number(folder.parent.name, "fold")
        seed = _number(folder.name, "seed")
        if fold is None or seed is None:
            prov = folder / "provenance.json"
            info = pd.read_json(prov, typ="series") if prov.is_file() else pd.Series(dtype=object)
            fold = fold if fold is not None else int(info.get("fold", 0))
            seed = seed if seed is not None else int(info.get("seed", 0))
        frames.append(df.assign(fold=fold, seed=seed, run=str(folder)))
    if not frames:
        raise StatsError("no run folders given")
    return pd.concat(frames, ignore_index=True)


def _number(name: str, prefix: str) -> int | None:
    m = re.fullmatch(rf"{prefix}-(\d+)", name)
    return int(m.group(1)) if m else None


# ----------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class SpeakerCounts:
    """Per (replicate, speaker, true class) hit and support counts of one system.

    ``correct[r, s, k]`` is the number of clips of speaker ``s`` with true class
    ``k`` that replicate (seed) ``r`` classified correctly; ``support[r, s, k]``
    the number of such clips.
    """

    speakers: list[str]
    labels: list[str]
    replicates: list[Any]
    correct: np.ndarray  # (R, S, K)
    support: np.ndarray  # (R, S, K)


def _check_columns(predictions: pd.DataFrame, replicate: str | None) -> None:
    need = {"speaker", "true", "predicted"} | ({replicate} if replicate else set())
    missing = sorted(need - set(predictions.columns))
    if missing:
        raise StatsError(f"predictions lack the column(s) {missing}")
    if len(predictions) == 0:
        raise StatsError("predictions are empty")


def speaker_counts(predictions: pd.DataFrame, *, speakers: Sequence[str] | None = None,
                   labels: Sequence[str] | None = None, replicate: str | None = "seed") -> SpeakerCounts:
    """Reduce predictions (columns ``speaker``, ``true``, ``predicted`` and ``replicate``) to counts.

    Parameters
    ----------
    predictions
        One row per tested clip and replicate, e.g. from :func:`load_predictions`.
    speakers, labels
        Fix the speaker and class order (default: sorted values present).
    replicate
        Column that tells replicates apart (default ``seed``); ``None`` or a
        column absent from ``predictions`` treats all rows as one replicate.
    """
    replicate = replicate if replicate and replicate in predictions.columns else None
    _check_columns(predictions, replicate)
    spk = predictions["speaker"].astype(str).to_numpy()
    true = predictions["true"].astype(str).to_numpy()
    pred = predictions["predicted"].astype(str).to_numpy()
    speakers = sorted(set(spk)) if speakers is None else [str(s) for s in speakers]
    labels = sorted(set(true)) if labels is None else [str(c) for c in labels]
    s_index = {s: i for i, s in enumerate(speakers)}
    k_index = {c: i for i, c in enumerate(labels)}
    unknown = sorted(set(true) - set(k_index))
    if unknown:
        raise StatsError(f"true labels {unknown} are not among the labels {labels}")
    if replicate:
        replicates = sorted(predictions[replicate].unique().tolist())
        r = pd.Index(replicates).get_indexer(predictions[replicate])
    else:
        replicates, r = [0], np.zeros(len(predictions), dtype=np.int64)
    s = np.array([s_index.get(x, -1) for x in spk])
    if (s < 0).any():
        raise StatsError(f"speakers {sorted(set(spk[s < 0]))[:5]} are not in the given speaker list")
    k = np.array([k_index[x] for x in true])
    shape = (len(replicates), len(speakers), len(labels))
    flat = np.ravel_multi_index((r, s, k), shape)
    size = int(np.prod(shape))
    support = np.bincount(flat, minlength=size).reshape(shape)
    correct = np.bincount(flat[true == pred], minlength=size).reshape(shape)
    return SpeakerCounts(speakers, labels, replicates, correct, support)


def uar_from_counts(correct: np.ndarray, support: np.ndarray) -> np.ndarray:
    """UAR over the last axis: the mean recall of the classes with non-zero support (NaN if none)."""
    correct, support = np.asarray(correct, float), np.asarray(support, float)
    present = support > 0
    recall = np.divide(correct, support, out=np.zeros_like(correct), where=present)
    n = present.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, recall.sum(-1) / np.maximum(n, 1), np.nan)


def system_uar(counts: SpeakerCounts, weights: np.ndarray | None = None, seed_mode: str = "mean") -> np.ndarray:
    """Pooled UAR of a system under speaker weights.

    Parameters
    ----------
    counts
        From :func:`speaker_counts`.
    weights
        ``(B, S)`` multiplicity of each speaker in each of ``B`` resamples;
        ``None`` means the observed data (every speaker once).
    seed_mode
        ``"mean"``: mean over replicates of the per-replicate pooled UAR;
        ``"pool"``: one UAR of the counts summed over replicates.

    Returns
    -------
    ``(B,)`` UARs (``(1,)`` without weights).
    """
    if seed_mode not in ("mean", "pool"):
        raise StatsError(f"seed_mode must be 'mean' or 'pool', not {seed_mode!r}")
    w = np.ones((1, len(counts.speakers))) if weights is None else np.asarray(weights, float)
    correct = np.einsum("bs,rsk->brk", w, counts.correct)  # (B, R, K)
    support = np.einsum("bs,rsk->brk", w, counts.support)
    if seed_mode == "pool":
        return uar_from_counts(correct.sum(1), support.sum(1))
    return np.nanmean(uar_from_counts(correct, support), axis=1)


def speaker_resample_weights(n_speakers: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n_speakers)`` counts: how often each speaker is drawn (with replacement).

    Each row is a multinomial draw of ``n_speakers`` speakers with equal
    probability, i.e. the speaker multiplicities of one cluster-bootstrap resample.
    """
    if n_speakers < 1:
        raise StatsError("no speakers to resample")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_speakers, np.full(n_speakers, 1.0 / n_speakers), size=n_resamples)


# ----------------------------------------------------------------------------- bootstrap CIs


@dataclass
class BootstrapResult:
    """A speaker-clustered bootstrap of one system's pooled UAR."""

    uar: float  # point estimate on the observed data (pooled over folds; seeds per seed_mode)
    ci_low: float
    ci_high: float
    confidence: float
    distribution: np.ndarray = field(repr=False)  # (n_resamples,) resampled UARs
    n_speakers: int = 0
    n_clips: int = 0  # distinct clips (utt_id) or rows per replicate
    n_replicates: int = 1
    seed_mode: str = "mean"

    @property
    def std(self) -> float:
        return float(np.nanstd(self.distribution, ddof=1))

    def as_dict(self) -> dict[str, Any]:
        return {"uar": self.uar, "ci_low": self.ci_low, "ci_high": self.ci_high, "confidence": self.confidence,
                "bootstrap_std": self.std, "n_resamples": int(len(self.distribution)), "n_speakers": self.n_speakers,
                "n_clips": self.n_clips, "n_replicates": self.n_replicates, "seed_mode": self.seed_mode,
                "resampling": "speakers", "uar_kind": "pooled over folds"}


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise StatsError(f"confidence must be in (0, 1), not {confidence}")
    values = values[np.isfinite(values)]
    lo, hi = np.percentile(values, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100])
    return float(lo), float(hi)


def _n_clips(predictions: pd.DataFrame, replicate: str | None) -> int:
    if "utt_id" in predictions.columns:
        return int(predictions["utt_id"].nunique())
    if replicate and replicate in predictions.columns:
        return int(predictions.groupby(replicate).size().max())
    return len(predictions)


def speaker_bootstrap(predictions: pd.DataFrame, *, n_resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0, replicate: str | None = "seed", seed_mode: str = "mean",
                      labels: Sequence[str] | None = None) -> BootstrapResult:
    """Percentile CI of the pooled UAR, resampling speakers with replacement.

    Parameters
    ----------
    predictions
        Test predictions of every fold and seed of one system (columns
        ``speaker``, ``true``, ``predicted`` and, for several seeds, ``seed``),
        e.g. :func:`load_predictions` of its run folders.
    n_resamples, confidence, seed
        Bootstrap size, interval level and the random seed of the resampling.
    replicate, seed_mode
        See :func:`speaker_counts` and :func:`system_uar`.
    labels
        Class order (default: the true labels present).

    Returns
    -------
    BootstrapResult
        ``uar`` is the pooled UAR of the observed data (mean over seeds by default).
    """
    counts = speaker_counts(predictions, labels=labels, replicate=replicate)
    weights = speaker_resample_weights(len(counts.speakers), n_resamples, seed)
    dist = system_uar(counts, weights, seed_mode)
    lo, hi = _interval(dist, confidence)
    return BootstrapResult(float(system_uar(counts, None, seed_mode)[0]), lo, hi, confidence, dist,
                           len(counts.speakers), _n_clips(predictions, replicate), len(counts.replicates), seed_mode)


@dataclass
class PairedResult:
    """Speaker-clustered paired bootstrap of ``UAR(A) - UAR(B)`` (pooled UARs)."""

    uar_a: float
    uar_b: float
    difference: float  # uar_a - uar_b on the observed data
    ci_low: float
    ci_high: float
    p_value: float  # one-sided, H1: A > B; (1 + #{resampled difference <= 0}) / (n_resamples + 1)
    confidence: float
    distribution: np.ndarray = field(repr=False)  # (n_resamples,) resampled differences
    n_speakers: int = 0
    seed_mode: str = "mean"

    def as_dict(self) -> dict[str, Any]:
        return {"uar_a": self.uar_a, "uar_b": self.uar_b, "difference": self.difference, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "p_value": self.p_value, "alternative": "A > B",
                "confidence": self.confidence, "n_resamples": int(len(self.distribution)),
                "n_speakers": self.n_speakers, "seed_mode": self.seed_mode, "resampling": "speakers (paired)",
                "uar_kind": "pooled over folds"}


def paired_speaker_bootstrap(predictions_a: pd.DataFrame, predictions_b: pd.DataFrame, *, n_resamples: int = 2000,
                             confidence: float = 0.95, seed: int = 0, replicate: str | None = "seed",
                             seed_mode: str = "mean") -> PairedResult:
    """Bootstrap distribution of the pooled-UAR difference A − B, resampling the *same* speakers for both.

    Both systems must have been tested on the same clips (same folds): when
    both frames have ``utt_id`` the sets of clips must be equal. The systems
    may have different numbers of seeds; each is averaged over its own seeds
    (``seed_mode="mean"``) inside every resample.

    The p-value is one-sided for "A is better than B": the share of resamples
    whose difference is ``<= 0``, with the +1 correction
    ``(1 + #{d* <= 0}) / (n_resamples + 1)``, so it is never exactly 0.
    """
    for name, df in (("A", predictions_a), ("B", predictions_b)):
        _check_columns(df, None)
    spk_a, spk_b = set(predictions_a["speaker"].astype(str)), set(predictions_b["speaker"].astype(str))
    if spk_a != spk_b:
        raise StatsError(f"systems were tested on different speakers ({len(spk_a ^ spk_b)} differ): "
                         "a paired comparison needs the same folds")
    if "utt_id" in predictions_a.columns and "utt_id" in predictions_b.columns:
        ua, ub = set(predictions_a["utt_id"].astype(str)), set(predictions_b["utt_id"].astype(str))
        if ua != ub:
            raise StatsError(f"systems were tested on different clips ({len(ua - ub)} only in A, "
                             f"{len(ub - ua)} only in B): a paired comparison needs the same clips")
    speakers = sorted(spk_a)
    labels = sorted(set(predictions_a["true"].astype(str)) | set(predictions_b["true"].astype(str)))
    ca = speaker_counts(predictions_a, speakers=speakers, labels=labels, replicate=replicate)
    cb = speaker_counts(predictions_b, speakers=speakers, labels=labels, replicate=replicate)
    weights = speaker_resample_weights(len(speakers), n_resamples, seed)
    dist = system_uar(ca, weights, seed_mode) - system_uar(cb, weights, seed_mode)
    ua_, ub_ = float(system_uar(ca, None, seed_mode)[0]), float(system_uar(cb, None, seed_mode)[0])
    lo, hi = _interval(dist, confidence)
    finite = dist[np.isfinite(dist)]
    p = (1 + int(np.sum(finite <= 0))) / (len(finite) + 1)
    return PairedResult(ua_, ub_, ua_ - ub_, lo, hi, float(p), confidence, dist, len(speakers), seed_mode)


# ----------------------------------------------------------------------------- per speaker


def per_speaker_table(predictions: pd.DataFrame, *, replicate: str | None = "seed",
                      labels: Sequence[str] | None = None) -> pd.DataFrame:
    """UAR and accuracy of each test speaker, worst first.

    Columns: ``speaker``, ``n`` (distinct clips of the speaker, or rows per
    replicate without ``utt_id``), ``replicates``, ``uar`` (the mean over
    replicates of the UAR over that speaker's clips, with the classes the
    speaker has), ``accuracy`` (likewise).
    """
    counts = speaker_counts(predictions, labels=labels, replicate=replicate)
    uar = np.nanmean(uar_from_counts(counts.correct, counts.support), axis=0)  # (S,)
    tested = counts.support.sum(-1)  # (R, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.nanmean(np.where(tested > 0, counts.correct.sum(-1) / np.maximum(tested, 1), np.nan), axis=0)
    if "utt_id" in predictions.columns:
        n = predictions.groupby(predictions["speaker"].astype(str))["utt_id"].nunique().reindex(counts.speakers)
    else:
        n = pd.Series(tested.max(0), index=counts.speakers)
    table = pd.DataFrame({"speaker": counts.speakers, "n": n.to_numpy().astype(int),
                          "replicates": (tested > 0).sum(0), "uar": uar, "accuracy": acc})
    return table.sort_values(["uar", "speaker"]).reset_index(drop=True)


def plot_per_speaker(table: pd.DataFrame, path: str | Path | None = None, *, chance: float | None = None,
                     title: str = "UAR per test speaker"):
    """Horizontal bars of per-speaker UAR (from :func:`per_speaker_table`); returns the figure."""
    import matplotlib.pyplot as plt

    t = table.sort_values("uar")
    fig, ax = plt.subplots(figsize=(6, max(2.0, 0.22 * len(t) + 1)))
    ax.barh(t["speaker"].astype(str), 100 * t["uar"], color="tab:blue")
    if chance is not None:
        ax.axvline(100 * chance, color="grey", ls="--", lw=1, label="chance")
        ax.legend(loc="lower right")
    ax.set_xlabel("UAR %")
    ax.set_xlim(0, 100)
    ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# ----------------------------------------------------------------------------- Friedman / Nemenyi

# Critical values q_alpha of the Nemenyi test (studentized range / sqrt(2)), Demšar (2006), Table 5a.
NEMENYI_Q = {
    0.05: {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164},
    0.10: {2: 1.645, 3: 2.052, 4: 2.291, 5: 2.459, 6: 2.589, 7: 2.693, 8: 2.780, 9: 2.855, 10: 2.920},
}


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha for ``k`` systems (Demšar's table; the studentized range beyond it)."""
    if k < 2:
        raise StatsError("the Nemenyi test needs at least 2 systems")
    table = NEMENYI_Q.get(alpha, {})
    if k in table:
        return table[k]
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


@dataclass
class FriedmanResult:
    """Friedman test over datasets x systems with the Nemenyi critical difference."""

    statistic: float
    p_value: float
    average_ranks: pd.Series  # system -> mean rank (1 = best), best first
    critical_difference: float
    q_alpha: float
    alpha: float
    n_datasets: int
    n_systems: int

    def as_dict(self) -> dict[str, Any]:
        return {"statistic": self.statistic, "p_value": self.p_value, "average_ranks": self.average_ranks.to_dict(),
                "critical_difference": self.critical_difference, "q_alpha": self.q_alpha, "alpha": self.alpha,
                "n_datasets": self.n_datasets, "n_systems": self.n_systems}

    def cliques(self) -> list[list[str]]:
        """Maximal groups of systems whose average ranks differ by less than the CD (not significantly different)."""
        names, ranks = list(self.average_ranks.index), self.average_ranks.to_numpy()
        groups = []
        for i in range(len(names)):
            j = i
            while j + 1 < len(names) and ranks[j + 1] - ranks[i] < self.critical_difference:
                j += 1
            if j > i and not any(g[0] <= i and j <= g[1] for g in groups):
                groups.append((i, j))
        return [names[a : b + 1] for a, b in groups]


def friedman_nemenyi(scores: pd.DataFrame, *, alpha: float = 0.05, higher_is_better: bool = True) -> FriedmanResult:
    """Friedman test and Nemenyi CD for ``scores`` (rows = datasets/corpora, columns = systems).

    Ranks are taken within each dataset (1 = best, ties share the mean rank);
    ``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` for ``k`` systems and ``N``
    datasets. Needs ``k >= 3`` systems, ``N >= 2`` datasets and no missing scores.
    """
    from scipy.stats import friedmanchisquare, rankdata

    if scores.isna().any().any():
        raise StatsError("scores have missing values: every system needs a score on every dataset")
    n, k = scores.shape
    if k < 3 or n < 2:
        raise StatsError(f"the Friedman test needs >= 3 systems and >= 2 datasets, got {k} and {n}")
    values = scores.to_numpy(float)
    ranks = rankdata(-values if higher_is_better else values, axis=1)
    avg = pd.Series(ranks.mean(0), index=[str(c) for c in scores.columns]).sort_values(kind="stable")
    stat, p = friedmanchisquare(*values.T)
    q = nemenyi_q(k, alpha)
    cd = q * np.sqrt(k * (k + 1) / (6 * n))
    return FriedmanResult(float(stat), float(p), avg, float(cd), q, alpha, n, k)


def plot_critical_difference(result: FriedmanResult, path: str | Path | None = None, *, title: str | None = None):
    """Demšar-style critical-difference diagram: average ranks on an axis, bars join indistinguishable systems."""
    import matplotlib.pyplot as plt

    ranks = result.average_ranks
    k = result.n_systems
    half = (k + 1) // 2
    bottom = -(0.6 + 0.45 * (half - 1)) - 0.3
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.35 * half + 0.6))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(bottom, 1.7)
    ax.invert_xaxis()  # rank 1 (best) on the right, as in Demšar's diagrams
    ax.axis("off")
    ax.hlines(0, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.15, color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", va="bottom", fontsize=9)
    for i, (name, rank) in enumerate(ranks.items()):
        level = -(0.6 + 0.45 * (i if i < half else k - 1 - i))
        right = i < half  # the better half is labelled on the right
        end = 0.5 if right else k + 0.5
        ax.plot([rank, rank, end], [0, level, level], color="black", lw=0.8)
        ax.text(end, level, f" {name} ({rank:.2f}) " if right else f" ({rank:.2f}) {name} ",
                ha="left" if right else "right", va="center", fontsize=9)
    for j, group in enumerate(result.cliques()):
        lo, hi = ranks[group].min(), ranks[group].max()
        ax.hlines(-0.25 - 0.12 * j, lo - 0.03, hi + 0.03, color="tab:red", lw=3)
    ax.hlines(1.2, 1, 1 + result.critical_difference, color="black", lw=1.5)
    ax.text(1 + result.critical_difference / 2, 1.3, f"CD = {result.critical_difference:.2f}", ha="center",
            va="bottom", fontsize=9)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


__all__ = [
    "StatsError", "load_predictions", "SpeakerCounts", "speaker_counts", "uar_from_counts", "system_uar",
    "speaker_resample_weights", "BootstrapResult", "speaker_bootstrap", "PairedResult", "paired_speaker_bootstrap",
    "per_speaker_table", "plot_per_speaker", "NEMENYI_Q", "nemenyi_q", "FriedmanResult", "friedman_nemenyi",
    "plot_critical_difference",
]
