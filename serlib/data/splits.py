"""Speaker-independent splits, leave-speakers-out folds and EmoBox folds.

Every function here works on a *manifest* (the table :mod:`serlib.data.corpora`
produces: one row per utterance with at least ``utt_id``, ``speaker`` and
``label``; ``gender`` ("M"/"F"/None) and ``corpus`` are used when present).

A **split assignment** is a :class:`pandas.Series` named ``"split"``, aligned to
``manifest.index`` (same index, same order), whose values are the strings

``"train"``, ``"val"``, ``"test"``
    the three parts a trainer uses;
``"unused"``
    utterances the protocol leaves out (for example IEMOCAP utterances outside
    the 4-class EmoBox set, or utterances of another corpus). A trainer must
    ignore them; they are never NaN.

Assignments carry provenance in ``Series.attrs``: ``protocol``, ``fold``,
``seed``, ``corpus`` (where relevant), ``note`` (a sentence saying how the
validation part was carved and anything unusual) and, for EmoBox folds,
``n_missing`` / ``missing_ids`` (fold-file utterances absent from the manifest)
and ``n_label_mismatch``.

Protocols (see :data:`PROTOCOLS` and :func:`get_split`):

``speaker-split``
    one train/val/test partition by speaker (:func:`speaker_split`).
``speaker-cv``
    leave-speaker(s)-out cross-validation (:func:`speaker_cv_folds`).
``emobox``
    the EmoBox benchmark folds shipped in ``serlib/data/folds/`` (:func:`emobox_folds`),
    with a validation part carved from each fold's training part.
``loco``, ``loco-6``
    leave one corpus out: every clip of the corpus is a test clip (one fold); training
    and validation come from the other corpora a ``-multi`` system adds
    (``data.extra_train``). ``loco`` scores the four classes every corpus has
    (:data:`LOCO_CLASSES`), ``loco-6`` six.

Speaker independence is judged on the manifest's ``speaker`` column (combined
with ``corpus`` when a manifest mixes corpora). For IEMOCAP the speaker values
look like ``"Ses01F"``, so EmoBox's leave-one-session-out folds are speaker
independent; the EmoBox CREMA-D, EmoDB and TESS folds are not (see
``serlib/data/folds/README.md``).

Regenerate the packaged fold files from the EmoBox metadata with::

    python -m serlib.data.splits build-emobox /path/to/emobox
"""

from __future__ import annotations

import argparse
import functools
import gzip
import importlib.resources
import io
import json
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "PROTOCOLS",
    "LOCO_CLASSES",
    "SPLITS",
    "UNUSED",
    "EMOBOX_CORPORA",
    "CANONICAL_LABELS",
    "SplitError",
    "FoldFileWarning",
    "speaker_split",
    "speaker_cv_folds",
    "emobox_folds",
    "carve_validation",
    "get_split",
    "n_folds",
    "split_table",
    "column_split",
    "stratified_folds",
    "NOT_SPEAKER_INDEPENDENT",
    "leaking_speakers",
    "assert_speaker_independent",
    "load_emobox_fold_file",
    "build_emobox_fold_file",
    "build_all_emobox_fold_files",
]

PROTOCOLS: tuple[str, ...] = ("speaker-split", "speaker-cv", "emobox", "split-column", "stratified-cv", "loco",
                               "loco-6")
"""Protocol names accepted by :func:`get_split` and :func:`n_folds`. ``split-column`` and ``stratified-cv`` serve a
manifest corpus (:mod:`serlib.data.manifest`): its own ``split`` column as given, or stratified folds of clips when it
names no speakers (*not speaker independent*). ``loco`` and ``loco-6`` hold a whole corpus out for testing."""

LOCO_CLASSES: dict[str, tuple[str, ...]] = {"loco": ("neutral", "happy", "sad", "angry"),
                                            "loco-6": ("neutral", "happy", "sad", "angry", "fear", "disgust")}
"""The classes a leave-one-corpus-out protocol scores: the four every corpus has, or six (not URDU: it has four)."""

NOT_SPEAKER_INDEPENDENT: tuple[str, ...] = ("stratified-cv",)
"""Protocols whose test clips may share speakers with training (labelled so in every table)."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""The parts a trainer uses, in reporting order."""

UNUSED = "unused"
"""Assignment value of utterances a protocol leaves out."""

EMOBOX_CORPORA: tuple[str, ...] = ("ravdess", "cremad", "savee", "iemocap", "emodb", "tess")
"""Corpora with a packaged EmoBox fold file (``serlib/data/folds/emobox_<corpus>.csv.gz``)."""

CANONICAL_LABELS: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise", "boredom",
)  # fmt: skip

_CV_MAX_LOSO = 10  # speaker-cv: leave-one-speaker-out up to this many speakers, else 5 folds
_CV_DEFAULT_FOLDS = 5
_N_TRIALS = 1000  # random candidate partitions scored per search
_MAX_IDS_IN_ATTRS = 20  # attrs are deep-copied by pandas operations: keep them small
_W_SIZE, _W_BAND, _W_LABEL, _W_GENDER = 0.5, 4.0, 1.0, 0.5  # weights of the partition score
_SIZE_BAND = 0.25  # a part's size may stray this fraction of its target before the steep penalty


class SplitError(ValueError):
    """A split cannot be made, or an assignment breaks a protocol's rules."""


class FoldFileWarning(UserWarning):
    """A packaged fold file and the manifest disagree (missing ids, other labels)."""


# --------------------------------------------------------------------------- helpers


def _require_columns(manifest: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in manifest.columns]
    if missing:
        raise SplitError(f"manifest lacks column(s) {missing}; it has {list(manifest.columns)}")


def _speaker_keys(manifest: pd.DataFrame) -> pd.Series:
    """Speaker identity per utterance: ``speaker``, prefixed by ``corpus`` when several corpora mix.

    Raises
    ------
    SplitError
        If the column is missing or any utterance has no speaker.
    """
    _require_columns(manifest, ["speaker"])
    spk = manifest["speaker"]
    if spk.isna().any():
        bad = manifest.index[spk.isna()][:5].tolist()
        raise SplitError(
            f"{int(spk.isna().sum())} utterance(s) have no speaker (e.g. index {bad}); "
            "speaker-independent protocols need a speaker for every utterance"
        )
    keys = spk.astype(str)
    if "corpus" in manifest.columns and manifest["corpus"].nunique(dropna=True) > 1:
        keys = manifest["corpus"].astype(str) + ":" + keys
    return keys.rename("speaker")


def _new_assignment(index: pd.Index, fill: str = UNUSED) -> pd.Series:
    return pd.Series(fill, index=index, name="split", dtype=object)


def _check_aligned(manifest: pd.DataFrame, assignment: pd.Series) -> None:
    if not assignment.index.equals(manifest.index):
        raise SplitError(
            "assignment is not aligned to manifest.index "
            f"({len(assignment)} vs {len(manifest)} rows, or a different index)"
        )
    bad = set(pd.unique(assignment.astype(object))) - {*SPLITS, UNUSED}
    if bad:
        raise SplitError(f"assignment has values {sorted(map(str, bad))}; allowed: {[*SPLITS, UNUSED]}")


class _SpeakerStats:
    """Per-speaker utterance counts, label counts and gender, for partition scoring."""

    def __init__(self, manifest: pd.DataFrame, mask: pd.Series | None = None) -> None:
        keys = _speaker_keys(manifest)
        if mask is not None:
            manifest, keys = manifest[mask], keys[mask]
        self.speakers: list[str] = sorted(keys.unique())
        if not self.speakers:
            raise SplitError("no utterances to split")
        pos = {s: i for i, s in enumerate(self.speakers)}
        codes = keys.map(pos).to_numpy()
        self.n = np.bincount(codes, minlength=len(self.speakers)).astype(float)
        # speakers come whole: a part may always stray by one typical speaker's share
        self.speaker_share = float(np.median(self.n)) / float(self.n.sum())
        if "label" in manifest.columns:
            labels = manifest["label"]
            ok = labels.notna().to_numpy()
            lab_codes, lab_names = pd.factorize(labels[ok], sort=True)
            self.labels = list(lab_names)
            self.counts = np.zeros((len(self.speakers), max(len(self.labels), 1)))
            np.add.at(self.counts, (codes[ok], lab_codes), 1.0)
        else:
            self.labels = []
            self.counts = self.n[:, None].copy()
        # gender per speaker: majority of known values; NaN when unknown
        self.female = np.full(len(self.speakers), np.nan)
        if "gender" in manifest.columns:
            g = manifest["gender"].astype(object).where(manifest["gender"].notna(), None)
            g = g.map(lambda v: str(v).upper()[:1] if v is not None else None)
            frame = pd.DataFrame({"spk": keys.to_numpy(), "g": g.to_numpy()}).dropna()
            frame = frame[frame["g"].isin(["M", "F"])]
            if len(frame):
                frac = frame.assign(f=frame["g"].eq("F").astype(float)).groupby("spk")["f"].mean()
                for s, f in frac.items():
                    self.female[pos[s]] = 1.0 if f > 0.5 else 0.0 if f < 0.5 else 0.5

    def scores(self, parts: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Score candidate partitions; lower is better.

        Score = size term + ``_W_LABEL`` x label deviation + ``_W_GENDER`` x gender deviation.
        The size term sums over parts ``_W_SIZE`` x d + ``_W_BAND`` x max(0, d - band),
        where d = |utterance fraction - target| and band = max(``_SIZE_BAND`` x target,
        one median speaker's share): sizes are free-ish within the band (so that label
        and gender balance can win) and steeply penalised outside it. Label deviation is
        the mean over parts of the total-variation distance between the part's label
        distribution and the whole's; gender deviation the mean over parts of
        |share of female speakers - overall share| among speakers of known gender.

        Parameters
        ----------
        parts : numpy.ndarray
            ``(n_candidates, n_speakers)`` part numbers 0..len(targets)-1.
        targets : numpy.ndarray
            Wanted utterance fraction per part; parts with target 0 are ignored
            except for the size term.

        Returns
        -------
        numpy.ndarray
            ``(n_candidates,)`` scores.
        """
        n_parts = len(targets)
        onehot = (parts[:, None, :] == np.arange(n_parts)[None, :, None]).astype(float)  # T,P,S
        sizes = onehot @ self.n  # T,P
        dev = np.abs(sizes / sizes.sum(1, keepdims=True) - targets)
        band = np.maximum(_SIZE_BAND * targets, self.speaker_share)
        size_dev = (_W_SIZE * dev + _W_BAND * np.maximum(dev - band, 0.0)).sum(1)
        used = targets > 0
        cnt = (onehot @ self.counts)[:, used]  # T,P',L
        overall = self.counts.sum(0) / max(self.counts.sum(), 1.0)
        dist = cnt / np.maximum(cnt.sum(2, keepdims=True), 1.0)
        label_dev = 0.5 * np.abs(dist - overall).sum(2).mean(1)
        known = ~np.isnan(self.female)
        gender_dev = np.zeros(len(parts))
        if known.any() and 0.0 < np.nanmean(self.female) < 1.0:
            fem_all = np.nanmean(self.female)
            n_known = (onehot @ known.astype(float))[:, used]
            n_fem = (onehot @ np.nan_to_num(self.female))[:, used]
            has = n_known > 0
            dev = np.where(has, np.abs(n_fem / np.maximum(n_known, 1.0) - fem_all), 0.0)
            gender_dev = dev.sum(1) / np.maximum(has.sum(1), 1)
        return size_dev + _W_LABEL * label_dev + _W_GENDER * gender_dev

    def best(
        self,
        parts: np.ndarray,
        targets: np.ndarray,
        *,
        min_speakers: Sequence[int] | None = None,
        allow_moves: bool = True,
        max_rounds: int = 100,
    ) -> tuple[np.ndarray, float]:
        """The lowest-scoring candidate, then improved by deterministic local search.

        Starting from the best of ``parts`` (first one on ties), single-speaker moves to
        another part (when ``allow_moves``) and swaps of two speakers between parts are
        scored in one batch per round and the best improvement is taken, until none is
        left or ``max_rounds`` is reached. ``min_speakers`` gives the smallest number of
        speakers each part may keep (default 1 for parts with a positive target).
        """
        n_parts, n_spk = len(targets), parts.shape[1]
        floor = np.array(min_speakers if min_speakers is not None else (targets > 0).astype(int))
        sc = self.scores(parts, targets)
        i = int(np.argmin(sc))
        cur, cur_score = parts[i].copy(), float(sc[i])
        iu, ju = np.triu_indices(n_spk, k=1)
        for _ in range(max_rounds):
            cands = []
            if allow_moves:
                moves = np.repeat(cur[None, :], n_spk * n_parts, axis=0)
                moves[np.arange(n_spk * n_parts), np.repeat(np.arange(n_spk), n_parts)] = np.tile(
                    np.arange(n_parts), n_spk
                )
                cands.append(moves)
            diff = cur[iu] != cur[ju]
            if diff.any():
                swaps = np.repeat(cur[None, :], int(diff.sum()), axis=0)
                r = np.arange(len(swaps))
                swaps[r, iu[diff]] = cur[ju[diff]]
                swaps[r, ju[diff]] = cur[iu[diff]]
                cands.append(swaps)
            if not cands:
                break
            c = np.concatenate(cands)
            counts = (c[:, None, :] == np.arange(n_parts)[None, :, None]).sum(2)
            c = c[(counts >= floor).all(1)]
            if not len(c):
                break
            sc = self.scores(c, targets)
            j = int(np.argmin(sc))
            if sc[j] >= cur_score - 1e-12:
                break
            cur, cur_score = c[j].copy(), float(sc[j])
        return cur, cur_score


def _orders(rng: np.random.Generator, n_items: int, n_trials: int) -> np.ndarray:
    """``(n_trials, n_items)`` random permutations."""
    return rng.permuted(np.tile(np.arange(n_items), (max(1, n_trials), 1)), axis=1)


def _closest_cut(cum: np.ndarray, start: np.ndarray, target: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per row of ``cum`` (cumulative sizes), the count k in [lo, hi] of items after
    ``start`` whose summed size is closest to ``target`` (first on ties)."""
    n_trials, n_items = cum.shape
    padded = np.concatenate([np.zeros((n_trials, 1)), cum], axis=1)  # padded[:, j] = sum of first j
    rows = np.arange(n_trials)
    base = padded[rows, start]
    k = np.arange(n_items + 1)[None, :]
    ends = np.minimum(start[:, None] + k, n_items)
    err = np.abs(padded[rows[:, None], ends] - base[:, None] - target)
    err[(k < lo[:, None]) | (k > hi[:, None])] = np.inf
    return np.argmin(err, axis=1)


def _assign_in_order(orders: np.ndarray, cuts: Sequence[np.ndarray], labels: Sequence[int], rest: int) -> np.ndarray:
    """Part number per item: the first ``cuts[0]`` items of each order get ``labels[0]``,
    the next ``cuts[1]`` get ``labels[1]``, ... and the remaining ones ``rest``."""
    n_trials, n_items = orders.shape
    pos = np.arange(n_items)[None, :]
    in_order = np.full((n_trials, n_items), rest)
    start = np.zeros(n_trials, dtype=int)
    for cut, lab in zip(cuts, labels, strict=True):
        in_order[(pos >= start[:, None]) & (pos < (start + cut)[:, None])] = lab
        start = start + cut
    parts = np.empty_like(in_order)
    parts[np.arange(n_trials)[:, None], orders] = in_order
    return parts


# --------------------------------------------------------------------------- protocols


def speaker_split(
    manifest: pd.DataFrame,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    n_trials: int = _N_TRIALS,
) -> pd.Series:
    """Partition speakers into train / val / test (no speaker in two parts).

    ``n_trials`` random speaker orders (drawn from ``numpy.random.default_rng(seed)``)
    are each cut into test, val and train so that the parts' utterance counts are
    as close as possible to the requested fractions. The candidate with the lowest
    score (deviation from the requested sizes, total-variation distance between
    each part's label distribution and the whole's, deviation of each part's share
    of female speakers from the whole's where gender is known) is then improved by
    single-speaker moves and pairwise swaps while the score drops. Sizes may stray
    from the targets by up to a quarter of the target (or one typical speaker) when
    that buys better label or gender balance. Every part keeps at least one speaker.
    Deterministic for a given manifest and seed.

    Parameters
    ----------
    manifest : pandas.DataFrame
        Needs ``speaker`` and ``label``; ``gender`` and ``corpus`` are used when present.
    val_fraction, test_fraction : float
        Wanted fraction of utterances in val and test. ``val_fraction=0`` gives no val part.
    seed : int
        Seed of the candidate search.
    n_trials : int
        Number of random candidates scored.

    Returns
    -------
    pandas.Series
        The assignment (``"train"``/``"val"``/``"test"``), aligned to ``manifest.index``.

    Raises
    ------
    SplitError
        If fractions are invalid or there are too few speakers for one per part.
    """
    if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and val_fraction + test_fraction < 1):
        raise SplitError(f"invalid fractions val={val_fraction}, test={test_fraction}")
    stats = _SpeakerStats(manifest)
    n_spk = len(stats.speakers)
    need = 3 if val_fraction > 0 else 2
    if n_spk < need:
        raise SplitError(
            f"speaker-split needs at least {need} speakers (one per part); the manifest has "
            f"{n_spk} ({stats.speakers}). Use the 'emobox' protocol for such corpora."
        )
    rng = np.random.default_rng(seed)
    targets = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    total = stats.n.sum()
    orders = _orders(rng, n_spk, n_trials)
    cum = np.cumsum(stats.n[orders], axis=1)
    t = len(orders)
    zero, one = np.zeros(t, dtype=int), np.ones(t, dtype=int)
    k_test = _closest_cut(cum, zero, test_fraction * total, one, np.full(t, n_spk - need + 1))
    cuts, labels = [k_test], [2]
    if val_fraction > 0:
        k_val = _closest_cut(cum, k_test, val_fraction * total, one, n_spk - k_test - 1)
        cuts.append(k_val)
        labels.append(1)
    candidates = _assign_in_order(orders, cuts, labels, rest=0)
    parts, score = stats.best(candidates, targets, min_speakers=[1, int(val_fraction > 0), 1])
    names = np.array(["train", "val", "test"])
    spk_part = dict(zip(stats.speakers, names[parts], strict=True))
    out = _speaker_keys(manifest).map(spk_part).astype(object).rename("split")
    out.attrs.update(
        protocol="speaker-split",
        fold=0,
        seed=seed,
        score=score,
        note=f"speaker-level split of {n_spk} speakers (val {val_fraction:.0%}, test {test_fraction:.0%} targeted)",
    )
    return out


def column_split(manifest: pd.DataFrame, *, val_fraction: float = 0.15, seed: int = 0) -> pd.Series:
    """A manifest's own ``split`` column (train / val / test) as the assignment; without val rows, validation is
    carved from the training part (:func:`carve_validation`)."""
    _require_columns(manifest, ["split"])
    assignment = _new_assignment(manifest.index)
    assignment[:] = manifest["split"].astype(str).to_numpy()
    note = "the manifest's split column, as given"
    if not (assignment == "val").any():
        assignment = carve_validation(manifest, assignment, fraction=val_fraction, seed=seed)
        note += "; " + assignment.attrs.get("note", "validation carved from train")
    assignment.attrs.update(protocol="split-column", fold=0, seed=seed, note=note)
    return assignment


def stratified_folds(manifest: pd.DataFrame, n: int = _CV_DEFAULT_FOLDS, *, seed: int = 0,
                     val_fraction: float = 0.15) -> list[pd.Series]:
    """``n`` label-stratified folds of clips (for a corpus without speakers): NOT speaker independent.

    Each clip is tested once; validation is a label-stratified part of each
    fold's training clips.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = manifest["label"].astype(str).to_numpy()
    out = []
    for k, (_, test) in enumerate(StratifiedKFold(n_splits=n, shuffle=True, random_state=seed).split(labels, labels)):
        assignment = _new_assignment(manifest.index, fill="train")
        assignment.iloc[test] = "test"
        assignment = carve_validation(manifest.assign(speaker="?"), assignment, fraction=val_fraction, seed=seed)
        assignment.attrs.update(protocol="stratified-cv", fold=k, seed=seed,
                                note="stratified folds of clips: NOT speaker independent (the manifest names no "
                                     "speakers); validation at utterance level")
        out.append(assignment)
    return out


def _default_cv_folds(n_speakers: int) -> int:
    return n_speakers if n_speakers <= _CV_MAX_LOSO else _CV_DEFAULT_FOLDS


def speaker_cv_folds(
    manifest: pd.DataFrame,
    *,
    n_folds: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.15,
    n_trials: int = _N_TRIALS,
    speaker_folds: dict[str, int] | None = None,
) -> list[pd.Series]:
    """Leave-speaker(s)-out cross-validation: every speaker is tested exactly once.

    With ``n_folds=None`` the number of folds is the number of speakers when there
    are at most 10 (leave-one-speaker-out; e.g. SAVEE 4, EmoDB 10, IEMOCAP 10) and 5
    otherwise (e.g. RAVDESS 24 speakers -> 4 or 5 per fold, CREMA-D 91). When
    speakers are grouped, ``n_trials`` random groupings (speakers dealt in random
    order to the fold with the fewest utterances; fold speaker counts differ by at
    most one) are scored like :func:`speaker_split` (equal fold sizes, label
    distributions, gender shares), the best is improved by speaker swaps between
    folds, and folds are numbered by their first (sorted) speaker. Within each fold
    a validation part is carved from the training speakers with
    :func:`carve_validation`.

    Parameters
    ----------
    manifest : pandas.DataFrame
        Needs ``speaker`` and ``label``.
    n_folds : int, optional
        Number of folds, 2..number of speakers.
    seed : int
        Seed of the grouping search and of the validation carve.
    val_fraction : float
        Passed to :func:`carve_validation` as ``fraction`` (0 disables val).
    n_trials : int
        Number of random groupings scored (unused for leave-one-speaker-out).
    speaker_folds : dict, optional
        A fixed speaker -> 0-based fold map (a stored fold file, see
        :func:`stored_speaker_folds`); used only when it covers every speaker of the
        manifest, else the seeded search runs and the assignment's ``note`` says so.

    Returns
    -------
    list of pandas.Series
        One assignment per fold; folds are ordered by their first (sorted) test speaker.
    """
    stats = _SpeakerStats(manifest)
    n_spk = len(stats.speakers)
    k = _default_cv_folds(n_spk) if n_folds is None else int(n_folds)
    if not 2 <= k <= n_spk:
        raise SplitError(f"speaker-cv needs 2 <= n_folds <= number of speakers ({n_spk}); got {k}")
    note = ""
    if speaker_folds is not None and set(stats.speakers) - set(speaker_folds):
        missing = sorted(set(stats.speakers) - set(speaker_folds))
        note = f"stored folds not used: {len(missing)} speaker(s) are not in them (e.g. {missing[:3]}); seeded search instead"
        speaker_folds = None
    if speaker_folds is not None:
        fold_of = np.array([int(speaker_folds[s]) for s in stats.speakers])
        k = int(fold_of.max()) + 1
    elif k == n_spk:
        fold_of = np.arange(n_spk)
    else:
        rng = np.random.default_rng(seed)
        targets = np.full(k, 1.0 / k)
        cap = int(np.ceil(n_spk / k))
        orders = _orders(rng, n_spk, n_trials)
        t = len(orders)
        rows = np.arange(t)
        sizes = np.zeros((t, k))
        members = np.zeros((t, k), dtype=int)
        parts = np.empty((t, n_spk), dtype=int)
        for i in range(n_spk):  # deal speakers, in each order, to the open fold with fewest utterances
            spk = orders[:, i]
            f = np.argmin(np.where(members < cap, sizes, np.inf), axis=1)
            parts[rows, spk] = f
            sizes[rows, f] += stats.n[spk]
            members[rows, f] += 1
        ok = (members > 0).all(1)
        best, _ = stats.best(parts[ok], targets, allow_moves=False)  # swaps keep speakers per fold
        # renumber folds by their first speaker so that the order is stable and readable
        first = {f: min(np.flatnonzero(best == f)) for f in range(k)}
        rank = {f: r for r, f in enumerate(sorted(first, key=first.get))}
        fold_of = np.array([rank[f] for f in best])
    keys = _speaker_keys(manifest)
    spk_fold = dict(zip(stats.speakers, fold_of, strict=True))
    utt_fold = keys.map(spk_fold).to_numpy()
    folds = []
    for f in range(k):
        a = _new_assignment(manifest.index, "train")
        a[utt_fold == f] = "test"
        a.attrs.update(protocol="speaker-cv", fold=f, seed=seed, n_folds=k)
        a = carve_validation(manifest, a, fraction=val_fraction, seed=seed)
        a.attrs.update(protocol="speaker-cv", fold=f, seed=seed, n_folds=k)
        a.attrs["test_speakers"] = sorted(s for s, ff in spk_fold.items() if ff == f)
        if note:
            a.attrs["note"] = "; ".join(filter(None, [a.attrs.get("note", ""), note]))
        folds.append(a)
    return folds


def carve_validation(
    manifest: pd.DataFrame,
    assignment: pd.Series,
    *,
    fraction: float = 0.15,
    seed: int = 0,
    n_trials: int = _N_TRIALS,
) -> pd.Series:
    """Move about ``fraction`` of the training utterances to ``"val"``; never touch test.

    Speaker level (the default): whole training speakers move to val, chosen by the
    same seeded search as :func:`speaker_split` (size close to ``fraction`` of the
    training utterances, label distribution close to train's, gender shares close
    to train's), with at least one val speaker and at least two speakers left in
    train. This keeps val speaker independent of train and test.

    Utterance level (fallback): when there are fewer than 3 training speakers (TESS
    EmoBox: 2), when a training speaker is unknown, or when the assignment already
    shares speakers between train and test (EmoBox CREMA-D, EmoDB, TESS), a
    label-stratified random ``fraction`` of each label's training utterances moves
    to val. ``attrs["note"]`` says which was done.

    Parameters
    ----------
    manifest : pandas.DataFrame
        The manifest the assignment is aligned to.
    assignment : pandas.Series
        Current assignment; existing ``"val"`` entries are kept as they are.
    fraction : float
        Wanted fraction of the training utterances moved to val; 0 returns a copy.
    seed : int
        Seed of the search / the stratified draw.

    Returns
    -------
    pandas.Series
        A new assignment (the input is not modified); ``"test"`` and ``"unused"`` entries
        are identical to the input's.
    """
    _check_aligned(manifest, assignment)
    out = assignment.astype(object).copy().rename("split")
    out.attrs = dict(assignment.attrs)
    train = out.eq("train")
    if fraction <= 0 or not train.any():
        out.attrs["note"] = "no validation part carved"
        return out
    if not 0 < fraction < 1:
        raise SplitError(f"fraction must be in [0, 1); got {fraction}")
    reason = None
    if "speaker" not in manifest.columns:
        reason = "the manifest has no speaker column"
    elif manifest.loc[train, "speaker"].isna().any():
        reason = "some training utterances have no speaker"
    else:
        keys = _speaker_keys(manifest)
        train_spk = set(keys[train])
        test_spk = set(keys[out.eq("test")])
        if len(train_spk) < 3:
            reason = f"only {len(train_spk)} training speaker(s)"
        elif train_spk & test_spk:
            reason = (
                f"{len(train_spk & test_spk)} speaker(s) are in both train and test "
                "(protocol is not speaker independent)"
            )
    rng = np.random.default_rng(seed)
    if reason is not None:
        _require_columns(manifest, ["label"])
        labels = manifest["label"].astype(object).where(manifest["label"].notna(), "<na>")
        moved = 0
        for lab in sorted(pd.unique(labels[train]).tolist(), key=str):
            idx = np.flatnonzero((train & labels.eq(lab)).to_numpy())
            take = int(round(fraction * len(idx)))
            if take == 0 and len(idx) >= 2:
                take = 1
            take = min(take, len(idx) - 1) if len(idx) > 1 else 0
            if take > 0:
                chosen = rng.choice(idx, size=take, replace=False)
                out.iloc[chosen] = "val"
                moved += take
        out.attrs["note"] = (
            f"validation carved at utterance level ({moved} utterances, stratified by label) "
            f"because {reason}; val shares speakers with train"
        )
        out.attrs["val_level"] = "utterance"
        return out
    stats = _SpeakerStats(manifest, mask=train)
    n_spk = len(stats.speakers)
    targets = np.array([1.0 - fraction, fraction])
    orders = _orders(rng, n_spk, n_trials)
    cum = np.cumsum(stats.n[orders], axis=1)
    t = len(orders)
    lo, hi = np.ones(t, dtype=int), np.full(t, n_spk - 2)  # >= 1 val speaker, >= 2 left in train
    k_val = _closest_cut(cum, np.zeros(t, dtype=int), fraction * cum[0, -1], lo, hi)
    parts, _ = stats.best(_assign_in_order(orders, [k_val], [1], rest=0), targets, min_speakers=[2, 1])
    val_spk = {s for s, p in zip(stats.speakers, parts, strict=True) if p == 1}
    moving = train & _speaker_keys(manifest).isin(val_spk)
    out[moving] = "val"
    out.attrs["note"] = (
        f"validation carved at speaker level: {len(val_spk)} of {n_spk} training speakers "
        f"({int(moving.sum())} utterances, {moving.sum() / train.sum():.0%} of train)"
    )
    out.attrs["val_level"] = "speaker"
    out.attrs["val_speakers"] = sorted(val_spk)
    return out


# --------------------------------------------------------------------------- EmoBox


def _normalise_corpus(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    aliases = {"crema": "cremad", "berlin": "emodb", "berlinemodb": "emodb"}
    return aliases.get(key, key)


def _folds_dir():  # -> importlib.resources.abc.Traversable
    return importlib.resources.files("serlib.data") / "folds"


@functools.lru_cache(maxsize=None)
def _read_fold_file(corpus: str) -> pd.DataFrame:
    res = _folds_dir() / f"emobox_{corpus}.csv.gz"
    if not res.is_file():
        raise SplitError(
            f"no packaged EmoBox fold file for {corpus!r} ({res}); corpora with one: {list(EMOBOX_CORPORA)}"
        )
    with res.open("rb") as fh:
        df = pd.read_csv(fh, compression="gzip", dtype={"utt_id": str, "split": str, "label": str})
    return df


def stored_speaker_folds(corpus: str) -> dict[str, int] | None:
    """The packaged speaker -> 0-based fold map of ``speaker-cv`` for ``corpus``, or ``None``.

    Corpora with more than 10 speakers group them into 5 folds by a seeded
    search; storing the result (``folds/speaker_cv_<corpus>.csv``) keeps the
    folds fixed when the search code changes. CREMA-D has one (sex balanced).
    """
    res = _folds_dir() / f"speaker_cv_{_normalise_corpus(corpus)}.csv"
    if not res.is_file():
        return None
    with res.open("rb") as fh:
        table = pd.read_csv(fh, dtype={"speaker": str}, comment="#")
    return dict(zip(table["speaker"], table["fold"].astype(int)))


def load_emobox_fold_file(corpus: str) -> pd.DataFrame:
    """The packaged EmoBox fold table of a corpus: columns ``fold`` (0-based), ``split``, ``utt_id``, ``label``."""
    return _read_fold_file(_normalise_corpus(corpus)).copy()


def _infer_corpus(manifest: pd.DataFrame, corpus: str | None) -> str:
    if corpus is not None:
        return _normalise_corpus(corpus)
    if "corpus" in manifest.columns:
        names = manifest["corpus"].dropna().unique()
        if len(names) == 1:
            return _normalise_corpus(names[0])
    raise SplitError("the emobox protocol needs corpus=... (the manifest names no single corpus)")


def emobox_folds(
    corpus: str,
    manifest: pd.DataFrame,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    warn: bool = True,
) -> list[pd.Series]:
    """EmoBox folds of ``corpus`` as assignments aligned to ``manifest.index``.

    Manifest rows are matched to the fold file by ``utt_id`` (rows of other corpora,
    when the manifest has a ``corpus`` column, are ignored). Manifest utterances the
    fold file does not list get ``"unused"``. Fold-file utterances the manifest lacks
    (the shared RAVDESS copy misses 6 files) are tolerated: their number is stored in
    ``attrs["n_missing"]`` (the first 20 ids in ``attrs["missing_ids"]``) and, with ``warn=True``,
    reported once per call as a :class:`FoldFileWarning`. Rows whose manifest label
    differs from the fold file's are counted in ``attrs["n_label_mismatch"]`` (the
    assignment still uses them). Within each fold a validation part is carved from
    the training part with :func:`carve_validation` (speaker level where the fold is
    speaker independent, utterance level otherwise).

    Parameters
    ----------
    corpus : str
        One of :data:`EMOBOX_CORPORA` (``"crema-d"`` etc. are normalised).
    manifest : pandas.DataFrame
        Needs ``utt_id`` and ``label`` (``speaker`` for the speaker-level val carve).
    seed : int
        Seed of the validation carve.
    val_fraction : float
        Fraction of each fold's training utterances moved to val (0 disables).
    warn : bool
        Emit a :class:`FoldFileWarning` for missing ids / label mismatches.

    Returns
    -------
    list of pandas.Series
        One assignment per EmoBox fold (list position = 0-based fold number).
    """
    name = _normalise_corpus(corpus)
    table = _read_fold_file(name)
    _require_columns(manifest, ["utt_id"])
    if not manifest.index.is_unique:
        raise SplitError("manifest.index must be unique")
    rows = manifest
    if "corpus" in manifest.columns and manifest["corpus"].nunique(dropna=True) > 1:
        rows = manifest[manifest["corpus"].map(lambda c: _normalise_corpus(c) if pd.notna(c) else None) == name]
    ids = rows["utt_id"].astype(str)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].unique()[:5].tolist()
        raise SplitError(f"manifest utt_id values are not unique for {name} (e.g. {dup})")
    pos_of = pd.Series(rows.index, index=ids.to_numpy())
    all_ids = table["utt_id"].drop_duplicates()
    missing = sorted(set(all_ids) - set(pos_of.index))
    mismatch = 0
    if "label" in manifest.columns:
        first = table.drop_duplicates("utt_id").set_index("utt_id")["label"]
        common = first.index.intersection(pos_of.index)
        man_lab = manifest.loc[pos_of[common].to_numpy(), "label"].astype(object).to_numpy()
        mismatch = int((man_lab != first[common].to_numpy()).sum())
    if warn and (missing or mismatch):
        msg = f"EmoBox {name}: "
        parts = []
        if missing:
            parts.append(f"{len(missing)} fold-file utterance(s) not in the manifest (e.g. {missing[:3]})")
        if mismatch:
            parts.append(f"{mismatch} utterance(s) whose manifest label differs from the fold file's")
        warnings.warn(msg + "; ".join(parts), FoldFileWarning, stacklevel=2)
    folds = []
    for f, g in table.groupby("fold", sort=True):
        a = _new_assignment(manifest.index)
        g = g[g["utt_id"].isin(pos_of.index)]
        a.loc[pos_of[g["utt_id"]].to_numpy()] = g["split"].to_numpy()
        a.attrs.update(protocol="emobox", corpus=name, fold=int(f), seed=seed)
        a = carve_validation(manifest, a, fraction=val_fraction, seed=seed)
        a.attrs.update(
            protocol="emobox",
            corpus=name,
            fold=int(f),
            seed=seed,
            n_missing=len(missing),
            missing_ids=list(missing[:_MAX_IDS_IN_ATTRS]),
            n_label_mismatch=mismatch,
        )
        folds.append(a)
    return folds


def _emobox_n_folds(corpus: str) -> int:
    return int(_read_fold_file(_normalise_corpus(corpus))["fold"].nunique())


# --------------------------------------------------------------------------- entry points


def n_folds(manifest: pd.DataFrame, protocol: str, corpus: str | None = None, folds: int | None = None) -> int:
    """Number of folds of ``protocol`` for this manifest (1 for ``speaker-split`` and ``split-column``; ``folds``
    overrides the default of ``speaker-cv`` and ``stratified-cv``, 5).

    ``speaker-cv`` uses the default of :func:`speaker_cv_folds`; ``emobox`` counts the
    folds in the packaged fold file of ``corpus`` (inferred from the manifest's
    ``corpus`` column when not given).
    """
    if protocol in ("speaker-split", "split-column", *LOCO_CLASSES):
        return 1
    if protocol == "stratified-cv":
        return int(folds or _CV_DEFAULT_FOLDS)
    if protocol == "speaker-cv" and folds:
        return int(folds)
    if protocol == "speaker-cv":
        if len(manifest) == 0:
            raise SplitError("no utterances to split (no usable clips)")
        stored = stored_speaker_folds(corpus) if corpus else None
        if stored and set(_speaker_keys(manifest)) <= set(stored):
            return max(stored.values()) + 1
        return _default_cv_folds(_speaker_keys(manifest).nunique())
    if protocol == "emobox":
        return _emobox_n_folds(_infer_corpus(manifest, corpus))
    raise SplitError(f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}")


def get_split(
    manifest: pd.DataFrame,
    protocol: str,
    *,
    fold: int = 0,
    seed: int = 0,
    corpus: str | None = None,
    val_fraction: float = 0.15,
    folds: int | None = None,
) -> pd.Series:
    """The single entry point: the assignment of fold ``fold`` (0-based) of ``protocol``.

    Parameters
    ----------
    manifest : pandas.DataFrame
        The corpus manifest.
    protocol : str
        One of :data:`PROTOCOLS`.
    fold : int
        0-based fold number; ``speaker-split`` has only fold 0.
    seed : int
        Seed of the speaker search and of the validation carve.
    corpus : str, optional
        EmoBox corpus name (inferred from the manifest's ``corpus`` column if omitted).
    val_fraction : float
        Wanted validation fraction (of all utterances for ``speaker-split``, of the
        training utterances otherwise).

    Returns
    -------
    pandas.Series
        The assignment, with ``attrs`` ``protocol``, ``fold``, ``seed`` and ``note``.

    Raises
    ------
    SplitError
        For an unknown protocol or a fold outside ``0..n_folds-1`` (the message names the range).
    """
    if protocol not in PROTOCOLS:
        raise SplitError(f"unknown protocol {protocol!r}; choose one of {list(PROTOCOLS)}")
    if protocol == "emobox":
        corpus = _infer_corpus(manifest, corpus)
    total = n_folds(manifest, protocol, corpus, folds)
    if not isinstance(fold, (int, np.integer)) or not 0 <= fold < total:
        shown = f"{fold} (fold {fold + 1} counting from 1)" if isinstance(fold, (int, np.integer)) else repr(fold)
        raise SplitError(
            f"fold index {shown} is out of range for protocol {protocol!r}: valid 0-based indices are "
            f"0..{total - 1}, i.e. folds 1..{total} ({total} fold(s))"
        )
    if len(manifest) == 0:
        raise SplitError("no utterances to split (no usable clips)")
    if protocol in LOCO_CLASSES:
        held_out = pd.Series("test", index=manifest.index, dtype=object)
        held_out.attrs.update(protocol=protocol, fold=0, seed=seed,
                              note="every clip is a test clip: training and validation speakers come from other corpora")
        return held_out
    if protocol == "speaker-split":
        return speaker_split(manifest, val_fraction=val_fraction, seed=seed)
    if protocol == "split-column":
        return column_split(manifest, val_fraction=val_fraction, seed=seed)
    if protocol == "stratified-cv":
        return stratified_folds(manifest, total, seed=seed, val_fraction=val_fraction)[fold]
    if protocol == "speaker-cv":
        stored = None if folds else (stored_speaker_folds(corpus) if corpus else None)
        return speaker_cv_folds(manifest, n_folds=folds or None, seed=seed, val_fraction=val_fraction,
                                speaker_folds=stored)[fold]
    assert corpus is not None
    return emobox_folds(corpus, manifest, seed=seed, val_fraction=val_fraction)[fold]


def split_table(manifest: pd.DataFrame, assignment: pd.Series) -> pd.DataFrame:
    """Per-part summary for reports: utterances, speakers and per-label counts.

    Returns
    -------
    pandas.DataFrame
        Index ``train``, ``val``, ``test`` (and ``unused`` when present); columns
        ``utterances``, ``n_speakers``, ``speakers`` (sorted list) and one count column
        per label (canonical order first).
    """
    _check_aligned(manifest, assignment)
    parts = [p for p in (*SPLITS, UNUSED) if p in set(assignment) or p in SPLITS]
    spk = manifest["speaker"].astype(str) if "speaker" in manifest.columns else None
    labels = manifest["label"] if "label" in manifest.columns else pd.Series(dtype=object)
    present = [lab for lab in pd.unique(labels.dropna()).tolist()]
    order = [lab for lab in CANONICAL_LABELS if lab in present] + sorted(
        (lab for lab in present if lab not in CANONICAL_LABELS), key=str
    )
    rows = []
    for p in parts:
        m = assignment.eq(p)
        speakers = sorted(spk[m & manifest["speaker"].notna()].unique()) if spk is not None else []
        row = {"utterances": int(m.sum()), "n_speakers": len(speakers), "speakers": speakers}
        counts = labels[m].value_counts()
        row.update({lab: int(counts.get(lab, 0)) for lab in order})
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(parts, name="split"))


def leaking_speakers(manifest: pd.DataFrame, assignment: pd.Series) -> dict[str, list[str]]:
    """Speakers found in more than one of train / val / test, with the parts they are in.

    ``"unused"`` utterances are ignored.
    """
    _check_aligned(manifest, assignment)
    keys = _speaker_keys(manifest)
    used = assignment.isin(SPLITS)
    frame = pd.DataFrame({"spk": keys[used].to_numpy(), "part": assignment[used].astype(str).to_numpy()})
    parts = frame.groupby("spk")["part"].agg(lambda s: sorted(set(s), key=SPLITS.index))
    return {s: p for s, p in parts.items() if len(p) > 1}


def assert_speaker_independent(manifest: pd.DataFrame, assignment: pd.Series, *, test_only: bool = False) -> None:
    """Raise :class:`SplitError` naming every speaker found in more than one part.

    With ``test_only`` only test speakers count: a validation part carved at
    utterance level from a single training speaker (TESS leave-one-speaker-out)
    shares speakers with train by construction, but test stays unseen.

    Raises
    ------
    SplitError
        If any speaker has utterances in two of train / val / test (or, with
        ``test_only``, in test and another part).
    """
    leaks = leaking_speakers(manifest, assignment)
    if test_only:
        leaks = {s: p for s, p in leaks.items() if "test" in p}
    if leaks:
        shown = ", ".join(f"{s} ({'+'.join(p)})" for s, p in list(leaks.items())[:20])
        more = f" and {len(leaks) - 20} more" if len(leaks) > 20 else ""
        raise SplitError(f"{len(leaks)} speaker(s) leak between parts: {shown}{more}")


# --------------------------------------------------------------------------- fold-file builder


def _emobox_utt_id(corpus: str, key: str, path: str) -> str:
    """Our utt_id for an EmoBox row: the file stem of ``path``, checked against ``key``."""
    stem = Path(path).stem
    # EmoBox keys are "<corpus>-<stem>", with "_" turned into "-" for some corpora
    if key not in (f"{corpus}-{stem}", f"{corpus}-{stem.replace('_', '-')}"):
        raise SplitError(f"EmoBox key {key!r} does not match path {path!r}")
    return stem


def build_emobox_fold_file(csv_path: str | Path, out_path: str | Path) -> pd.DataFrame:
    """Turn one EmoBox ``<corpus>_folds.csv`` into a compact ``emobox_<corpus>.csv.gz``.

    The input has columns ``fold, split, key, path, emotion, length_s, sample_rate``
    and sits next to EmoBox's ``label_map.json``. The output has columns ``fold``
    (0-based: EmoBox fold ``k`` becomes ``k - 1``), ``split`` (EmoBox's ``train`` /
    ``test``), ``utt_id`` (the stem of ``path``, i.e. serlib's utt_id) and ``label``
    (canonical name: EmoBox emotion -> label_map.json, matched case-insensitively,
    -> lower case; ``Boredom`` etc.). Rows are sorted by fold, split, utt_id and the
    gzip header carries no timestamp, so rebuilding gives identical bytes.

    Returns
    -------
    pandas.DataFrame
        The table written.
    """
    csv_path, out_path = Path(csv_path), Path(out_path)
    corpus = csv_path.name.removesuffix("_folds.csv")
    raw = pd.read_csv(csv_path, dtype={"key": str, "path": str, "emotion": str, "split": str})
    lm_path = csv_path.parent / "label_map.json"
    label_map = {k.lower(): v for k, v in json.loads(lm_path.read_text()).items()}
    emotion = raw["emotion"].str.lower()
    unknown = sorted(set(emotion) - set(label_map))
    if unknown:
        raise SplitError(f"{csv_path}: emotions {unknown} are not in {lm_path}")
    label = emotion.map(label_map).str.lower()
    bad = sorted(set(label) - set(CANONICAL_LABELS))
    if bad:
        raise SplitError(f"{csv_path}: labels {bad} are not canonical {CANONICAL_LABELS}")
    if not set(raw["split"]) <= {"train", "test"}:
        raise SplitError(f"{csv_path}: unexpected split names {sorted(set(raw['split']))}")
    out = pd.DataFrame(
        {
            "fold": raw["fold"].astype(int) - int(raw["fold"].min()),
            "split": raw["split"],
            "utt_id": [_emobox_utt_id(corpus, k, p) for k, p in zip(raw["key"], raw["path"], strict=True)],
            "label": label,
        }
    )
    if out.duplicated(["fold", "utt_id"]).any():
        raise SplitError(f"{csv_path}: an utterance appears twice in one fold")
    out = out.sort_values(["fold", "split", "utt_id"], kind="stable").reset_index(drop=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(out.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    out_path.write_bytes(buf.getvalue())
    return out


def build_all_emobox_fold_files(emobox_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Build ``emobox_<corpus>.csv.gz`` for every corpus of :data:`EMOBOX_CORPORA` found in ``emobox_dir``.

    ``emobox_dir`` holds ``<corpus>/<corpus>_folds.csv`` and ``<corpus>/label_map.json``;
    ``out_dir`` defaults to the package's ``serlib/data/folds/``.
    """
    emobox_dir = Path(emobox_dir)
    target = Path(out_dir) if out_dir is not None else Path(__file__).resolve().parent / "folds"
    written = {}
    for corpus in EMOBOX_CORPORA:
        csv = emobox_dir / corpus / f"{corpus}_folds.csv"
        if csv.is_file():
            written[corpus] = target / f"emobox_{corpus}.csv.gz"
            build_emobox_fold_file(csv, written[corpus])
    if not written:
        raise SplitError(f"no <corpus>/<corpus>_folds.csv found under {emobox_dir}")
    _read_fold_file.cache_clear()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m serlib.data.splits build-emobox EMOBOX_DIR [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m serlib.data.splits", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-emobox", help="regenerate serlib/data/folds/emobox_<corpus>.csv.gz")
    b.add_argument("emobox_dir", type=Path, help="folder with <corpus>/<corpus>_folds.csv + label_map.json")
    b.add_argument("--out", type=Path, default=None, help="output folder (default: serlib/data/folds)")
    args = parser.parse_args(argv)
    if args.cmd == "build-emobox":
        for corpus, path in build_all_emobox_fold_files(args.emobox_dir, args.out).items():
            t = pd.read_csv(path)
            sizes = t.groupby(["fold", "split"]).size().unstack(fill_value=0)
            print(
                f"{corpus}: {path} ({path.stat().st_size} bytes), {len(sizes)} fold(s), "
                f"train/test per fold: {sorted(set(zip(sizes['train'], sizes['test']))) }"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
