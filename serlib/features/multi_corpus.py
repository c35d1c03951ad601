"""Several corpora as one table of pooled encoder features, for heads trained on more than one corpus.

A run of a ``-multi`` system (:mod:`serlib.systems.whisper_multi`) trains on its
own corpus's training speakers plus every clip of the corpora its config lists
in ``data.extra_train``. This module builds that table and its two choices:

**Which clips.** The target corpus's class set applies. An extra corpus's clips
of classes the target lacks are either dropped (``encoder.extra_classes: drop``)
or kept as extra outputs of the head that are masked when scoring
(``mask``: the head's probabilities are the softmax over the target classes
only). :func:`training_classes` gives the head's outputs, target classes first.

**How much each corpus weighs** (``encoder.corpus_weight``). ``clips``: every
training clip the same (CREMA-D's 7,442 clips then outweigh a 500-clip corpus);
``balanced``: each corpus's clips weigh the same in total; ``own-half``: the corpus's
own training clips weigh as much as all the others together, which share the other
half equally (:func:`corpus_weights`). Corpus weights multiply the class weights.

**How features are standardised** (``encoder.corpus_norm``). ``pooled``: every
row with the statistics of all training rows. ``per-corpus``: each corpus with
the statistics of its own training rows, so a corpus's recording conditions
and speaker mix are taken out before the head sees it. A corpus without
training rows (the held-out corpus of leave-one-corpus-out) then uses the
pooled training statistics (*inductive*); :func:`standardise` can instead give
it its own statistics (*transductive*: it reads every test clip first), which
the report labels as such.

In a leave-one-corpus-out run the target corpus has no training or validation
speakers; validation speakers are then carved from each extra corpus that has
at least three speakers (:func:`serlib.data.splits.carve_validation`).
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import pandas as pd

from serlib.data.corpora import ordered_labels

EXTRA_CLASSES = ("drop", "mask")
CORPUS_NORMS = ("pooled", "per-corpus")
CORPUS_WEIGHTS = ("clips", "balanced", "own-half")
OPTIONS: dict[str, tuple[str, ...]] = {
    "plain": ("encoder.extra_classes=drop", "encoder.corpus_norm=pooled", "encoder.corpus_weight=clips"),
    "per-corpus": ("encoder.extra_classes=drop", "encoder.corpus_norm=per-corpus", "encoder.corpus_weight=clips"),
    "mask": ("encoder.extra_classes=mask", "encoder.corpus_norm=pooled", "encoder.corpus_weight=clips"),
    "balanced": ("encoder.extra_classes=drop", "encoder.corpus_norm=pooled", "encoder.corpus_weight=balanced"),
    "own-half": ("encoder.extra_classes=drop", "encoder.corpus_norm=pooled", "encoder.corpus_weight=own-half"),
}
"""The ways of joining corpora tried on validation speakers, as config overrides: the plain join (extra classes
dropped, one standardisation, every clip weighing the same) and each change to it alone."""


@dataclass
class MultiCorpusTable:
    """The target corpus's usable clips, then every extra corpus's, with one split and one feature row each."""

    usable: pd.DataFrame  # utt_id, label, speaker, corpus (target rows first, then each extra corpus)
    assignment: pd.Series  # "train" / "val" / "test" on ``usable``'s index; extra corpora never test
    features: np.ndarray  # (n, layers, dim) pooled encoder features, NaN rows for clips the encoder quarantined
    target: str
    fingerprints: dict[str, str]  # extra corpus -> data fingerprint

    @property
    def corpus(self) -> np.ndarray:
        return self.usable["corpus"].to_numpy().astype(str)

    @property
    def n_target(self) -> int:
        return int((self.corpus == self.target).sum())


def build_table(target_usable: pd.DataFrame, target_assignment: pd.Series, target_features: np.ndarray,
                target: str, extras: dict[str, tuple[pd.DataFrame, np.ndarray, str]], *,
                val_fraction: float = 0.15, seed: int = 0) -> MultiCorpusTable:
    """Join the target corpus (its split as given) and each extra corpus (all training, or carved, see below).

    ``extras`` maps a corpus name to its usable clips, their pooled features and
    its data fingerprint. When the target has no training rows (leave-one-corpus-out),
    about ``val_fraction`` of each extra corpus's speakers become validation speakers.
    """
    from serlib.data.splits import SplitError, carve_validation

    held_out = not (target_assignment.reindex(target_usable.index) == "train").any()
    frames = [target_usable[["utt_id", "label", "speaker"]].assign(corpus=target)]
    parts = [target_assignment.reindex(target_usable.index).to_numpy().astype(object)]
    feats = [target_features]
    for corpus, (usable, features, _) in extras.items():
        part = pd.Series("train", index=usable.index, dtype=object)
        if held_out:
            try:
                part = carve_validation(usable, part, fraction=val_fraction, seed=seed)
            except SplitError:  # too few speakers to spare any (TESS has two): all of them train
                pass
        rows = usable[["utt_id", "label", "speaker"]].astype({"utt_id": str, "speaker": str})
        frames.append(rows.assign(utt_id=corpus + "/" + rows["utt_id"], speaker=corpus + "/" + rows["speaker"],
                                  corpus=corpus))  # other people: ids and speakers never collide with the target's
        parts.append(part.to_numpy().astype(object))
        feats.append(features)
    joined = pd.concat(frames, ignore_index=True)
    assignment = pd.Series(np.concatenate(parts), index=joined.index, dtype=object)
    return MultiCorpusTable(joined, assignment, np.concatenate(feats).astype(np.float32), target,
                            {c: fp for c, (_, _, fp) in extras.items()})


def training_classes(target_classes: list[str], table: MultiCorpusTable, extra_classes: str) -> list[str]:
    """The head's outputs: the target classes, then (``mask``) every other class of the training rows."""
    if extra_classes not in EXTRA_CLASSES:
        raise ValueError(f"encoder.extra_classes={extra_classes!r}: use one of {', '.join(EXTRA_CLASSES)}")
    if extra_classes == "drop":
        return list(target_classes)
    trained = table.usable["label"][(table.assignment == "train").to_numpy()]
    return list(target_classes) + [c for c in ordered_labels(set(trained)) if c not in target_classes]


def corpus_weights(corpora: np.ndarray, how: str, own: str | None = None) -> np.ndarray:
    """Per training clip (its corpus in ``corpora``), weights with mean 1: every clip the same (``clips``), every
    corpus the same in total (``balanced``), or the corpus ``own`` half of the total and the others the same share
    of the rest (``own-half``; ``balanced`` when ``own`` has no training clips)."""
    if how not in CORPUS_WEIGHTS:
        raise ValueError(f"encoder.corpus_weight={how!r}: use one of {', '.join(CORPUS_WEIGHTS)}")
    corpora = np.asarray(corpora).astype(str)
    if how == "clips" or len(corpora) == 0:
        return np.ones(len(corpora))
    names, counts = np.unique(corpora, return_counts=True)
    share = dict.fromkeys(names, 1 / len(names))
    if how == "own-half" and own in share and len(names) > 1:
        share = {c: 0.5 if c == own else 0.5 / (len(names) - 1) for c in names}
    per = {c: len(corpora) * share[c] / n for c, n in zip(names, counts)}
    return np.array([per[c] for c in corpora])


def _stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = x[~np.isnan(x).any(axis=tuple(range(1, x.ndim)))]
    return ok.mean(axis=0), ok.std(axis=0) + 1e-5


@dataclass
class Standardised:
    """Standardised features and the statistics the target corpus's test clips were given."""

    X: np.ndarray  # same shape as the table's features, NaN rows left NaN
    test_mean: np.ndarray  # what a new file of the target's kind is standardised with (shipped with the head)
    test_std: np.ndarray
    per_corpus: dict[str, tuple[int, str]]  # corpus -> (rows its statistics came from, "own training rows" | ...)


def standardise(table: MultiCorpusTable, norm: str, *, own_test_statistics: bool = False) -> Standardised:
    """Standardise every row of ``table`` under ``encoder.corpus_norm`` = ``norm`` (see the module docstring).

    Statistics come from training rows only, except that ``own_test_statistics``
    gives a target corpus without training rows the statistics of all of its own
    clips (transductive).
    """
    if norm not in CORPUS_NORMS:
        raise ValueError(f"encoder.corpus_norm={norm!r}: use one of {', '.join(CORPUS_NORMS)}")
    train = (table.assignment == "train").to_numpy()
    corpus = table.corpus
    pooled = _stats(table.features[train])
    X = np.empty_like(table.features)
    used: dict[str, tuple[int, str]] = {}
    test_stats = pooled
    for name in dict.fromkeys(corpus):
        rows = corpus == name
        own_train = rows & train
        if norm == "per-corpus" and own_train.any():
            stats, how = _stats(table.features[own_train]), ("its own training clips", int(own_train.sum()))
        elif own_test_statistics and name == table.target:
            stats, how = _stats(table.features[rows]), ("its own clips (transductive)", int(rows.sum()))
        else:
            stats, how = pooled, ("every training clip", int(train.sum()))
        X[rows] = (table.features[rows] - stats[0]) / stats[1]
        used[name] = (how[1], how[0])
        if name == table.target:
            test_stats = stats
    return Standardised(X.astype(np.float32), test_stats[0], test_stats[1], used)


def fold_statistics(outer_mean: np.ndarray, outer_std: np.ndarray, inner_mean: np.ndarray,
                    inner_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One standardisation equal to ``(x - outer_mean) / outer_std`` followed by ``(z - inner_mean) / inner_std``."""
    return outer_mean + outer_std * inner_mean, outer_std * inner_std


__all__ = ["CORPUS_NORMS", "CORPUS_WEIGHTS", "EXTRA_CLASSES", "OPTIONS", "corpus_weights", "MultiCorpusTable", "Standardised", "build_table",
           "fold_statistics", "standardise", "training_classes"]
