"""Cross-corpus tests of the Whisper-base linear head, with and without feature standardisation.

For a group of corpora and their shared classes, a head (logistic regression on
one pooled encoder layer) is trained on fold 1 of each corpus A's primary
protocol (layer and ``C`` chosen on A's validation speakers), then tested on A's
test speakers (the diagonal) and on every clip of each other corpus B with a
shared label (off-diagonal). The head is deterministic, so one seed suffices.

Frozen features carry the recording conditions and the language of a corpus. The
``normalisation`` settings study that:

* ``none``: the head's own z-scoring, with training statistics only;
* ``corpus``: each corpus z-scored with its own mean and std before the head
  (**transductive**: it uses the unlabelled clips of the test corpus);
* ``speaker``: each speaker z-scored with their own statistics
  (**transductive**: it uses the unlabelled clips of each test speaker).

Each (group, training corpus, normalisation) is one JSON file under
``<results>/cross-corpus/whisper-logreg/<group>/``, with its provenance; a file is
reused only for the same encoder, corpora fingerprints, classes and normalisation.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from serlib.config import Config, load_config
from serlib.core.runs import PROJECT_ROOT, default_results_dir, provenance, read_json, write_json
from serlib.data.corpora import CANONICAL_LABELS, read_corpus
from serlib.experiments.crosscorpus import GROUPS
from serlib.features.prepared import locate_corpus

NORMALISATIONS = ("none", "corpus", "speaker")
TRANSDUCTIVE = {"none": False, "corpus": True, "speaker": True}


def corpus_embeddings(corpus: str, config: Config, data_root: str | Path | None = None
                      ) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Usable clips of a corpus (manifest rows the encoder could read), their pooled features, the encoder."""
    from serlib.features.cache import data_fingerprint
    from serlib.features.encoders.pooled import compute_embeddings

    scan = read_corpus(corpus, locate_corpus(corpus, data_root))
    enc = config.encoder
    es = compute_embeddings(scan.manifest, backend=enc.backend, mode=enc.mode, compute_type=enc.compute_type)
    ok = es.ok
    manifest = scan.manifest[ok].reset_index(drop=True)
    return manifest, es.features[ok], {**es.encoder, "fingerprint": data_fingerprint(scan.manifest)}


def standardise(X: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """Z-score the rows of each group with the group's own mean and std (std 0 -> 1).

    The same operation as the functional baselines' per-speaker z-score
    (:func:`serlib.systems.linear.speaker_standardize`), here over any grouping.
    """
    from serlib.systems.linear import speaker_standardize

    return speaker_standardize(X, groups)


def normalised(X: np.ndarray, manifest: pd.DataFrame, normalisation: str) -> np.ndarray:
    """Features of one corpus under ``normalisation`` (see the module docstring)."""
    if normalisation == "none":
        return X
    if normalisation == "corpus":
        return standardise(X, ["corpus"] * len(X))
    if normalisation == "speaker":
        return standardise(X, manifest["speaker"].astype(str))
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, not {normalisation!r}")


def _fit_head(X: np.ndarray, manifest: pd.DataFrame, assignment: pd.Series, classes: list[str], seed: int):
    """Choose layer and C on validation speakers, refit on training speakers; returns (model, layer, C, val UAR)."""
    from serlib.evaluation.metrics import unweighted_average_recall
    from serlib.systems.linear import make_linear_classifier
    from serlib.systems.whisper_linear import HEAD_C_GRID, layer_candidates, layer_matrix, select_layer

    layer, _ = select_layer(X, manifest, assignment, classes, layer_candidates(X.shape[1], "auto"), seed=seed)
    split = assignment.reindex(manifest.index).to_numpy()
    y = manifest["label"].to_numpy().astype(str)
    keep = np.isin(y, classes)
    train, val = (split == "train") & keep, (split == "val") & keep
    Xl = layer_matrix(X, layer)
    best = (-1.0, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in HEAD_C_GRID:
            uar = unweighted_average_recall(y[val], make_linear_classifier("logreg", c, seed).fit(Xl[train], y[train]).predict(Xl[val]))
            if uar > best[0]:
                best = (uar, c)
        model = make_linear_classifier("logreg", best[1], seed).fit(Xl[train], y[train])
    return model, layer, best[1], best[0]


def _score(model, X: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from serlib.evaluation.metrics import classification_report_dict

    pred = model.predict(X)
    return classification_report_dict(list(y), list(pred), classes)


def run_pair_row(group: str, corpora: Sequence[str], train_corpus: str, classes: list[str], normalisation: str, *,
                 data: dict[str, tuple[pd.DataFrame, np.ndarray, dict[str, Any]]], results: Path,
                 seed: int = 0) -> dict[str, Any]:
    """One row of the matrix: train on ``train_corpus``, test on every corpus of the group (cached as JSON)."""
    from serlib.data.splits import get_split
    from serlib.systems.whisper_linear import layer_matrix

    out = results / "cross-corpus" / "whisper-logreg" / group / f"{train_corpus}-{normalisation}.json"
    from serlib.systems.whisper_linear import HEAD_C_GRID

    config = load_config(PROJECT_ROOT / "configs" / f"{train_corpus}.yaml")
    encoder = data[train_corpus][2]
    request = {"classes": classes, "normalisation": normalisation, "seed": seed, "encoder": encoder.get("sha256"),
               "backend": encoder.get("backend"), "compute_type": encoder.get("compute_type"),
               "mode": encoder.get("mode"), "protocol": config.data.protocol, "val_fraction": config.data.val_fraction,
               "c_grid": list(HEAD_C_GRID), "fingerprints": {c: data[c][2]["fingerprint"] for c in corpora}}
    if out.is_file() and read_json(out).get("request") == request:
        return read_json(out)
    t0 = time.perf_counter()
    manifest, X, _ = data[train_corpus]
    # the split is made on the whole corpus (as for every other system), then restricted to the shared classes
    assignment = get_split(manifest, config.data.protocol, fold=0, seed=0, corpus=train_corpus,
                           val_fraction=config.data.val_fraction)
    keep = manifest["label"].isin(classes).to_numpy()
    manifest, X = manifest[keep].reset_index(drop=True), X[keep]
    assignment = pd.Series(assignment.to_numpy()[keep], index=manifest.index)
    X = normalised(X.reshape(len(X), -1), manifest, normalisation).reshape(X.shape)
    model, layer, c, val_uar = _fit_head(X, manifest, assignment, classes, seed)
    test = (assignment.reindex(manifest.index) == "test").to_numpy()
    scores = {train_corpus: _score(model, layer_matrix(X, layer)[test], manifest["label"].to_numpy()[test], classes)}
    for other in corpora:
        if other == train_corpus:
            continue
        m, Xo, _ = data[other]
        k = m["label"].isin(classes).to_numpy()
        m, Xo = m[k].reset_index(drop=True), Xo[k]
        Xo = normalised(Xo.reshape(len(Xo), -1), m, normalisation).reshape(Xo.shape)
        scores[other] = _score(model, layer_matrix(Xo, layer), m["label"].to_numpy(), classes)
    row = {"request": request, "train_corpus": train_corpus, "train_protocol": f"{config.data.protocol} fold 1",
           "layer": str(layer), "chosen_C": c, "val_uar": val_uar, "transductive": TRANSDUCTIVE[normalisation],
           "test": {k: {"uar": v["uar"], "accuracy": v["accuracy"], "n": v["n"]} for k, v in scores.items()},
           "provenance": provenance(seed=seed, device="cpu", wall_seconds=round(time.perf_counter() - t0, 2))}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, row)
    return row


def shared_labels(manifests: Sequence[pd.DataFrame]) -> list[str]:
    common = set.intersection(*(set(m["label"]) for m in manifests))
    return [c for c in CANONICAL_LABELS if c in common]


def encoder_matrix(group: str, corpora: Sequence[str], *, normalisation: str = "none",
                   data_root: str | Path | None = None, results: str | Path | None = None,
                   data: dict | None = None) -> tuple[list[str], pd.DataFrame]:
    """Train-corpus x test-corpus UAR matrix of the Whisper head for one group and normalisation."""
    config = load_config()
    data = data if data is not None else {}
    for c in corpora:
        if c not in data:
            data[c] = corpus_embeddings(c, config, data_root)
    classes = shared_labels([data[c][0] for c in corpora])
    results = Path(results or default_results_dir())
    matrix = pd.DataFrame(index=list(corpora), columns=list(corpora), dtype=float)
    for a in corpora:
        row = run_pair_row(group, corpora, a, classes, normalisation, data=data, results=results)
        for b in corpora:
            matrix.loc[a, b] = row["test"][b]["uar"]
    return classes, matrix


ENCODER_GROUPS: dict[str, list[str]] = GROUPS
"""The report's groups, the same as Tier-1's (:data:`serlib.experiments.crosscorpus.GROUPS`)."""


def read_matrix(group: str, corpora: Sequence[str], normalisation: str, results: str | Path | None = None
                ) -> tuple[list[str], pd.DataFrame, dict[str, Any]]:
    """The matrix of one group and normalisation from the saved rows only (never trains); NaN rows are missing."""
    folder = Path(results or default_results_dir()) / "cross-corpus" / "whisper-logreg" / group
    matrix = pd.DataFrame(index=list(corpora), columns=list(corpora), dtype=float)
    rows, classes = {}, []
    for a in corpora:
        path = folder / f"{a}-{normalisation}.json"
        if not path.is_file():
            continue
        rows[a] = read_json(path)
        classes = rows[a]["request"]["classes"]
        for b in corpora:
            if b in rows[a]["test"]:
                matrix.loc[a, b] = rows[a]["test"][b]["uar"]
    return classes, matrix, rows


def off_diagonal_mean(matrix: pd.DataFrame) -> float:
    """Mean UAR over the cells where the test corpus differs from the training corpus."""
    values = [matrix.loc[a, b] for a in matrix.index for b in matrix.columns if a != b]
    return float(np.nanmean(values)) if values else float("nan")


def matrix_summary(matrix: pd.DataFrame) -> dict[str, float]:
    """Mean diagonal (within-corpus) and off-diagonal (cross-corpus) UAR of a matrix, in percent, rounded to 0.1."""
    return {"mean diagonal UAR %": round(100 * float(np.nanmean(np.diag(matrix.to_numpy(float)))), 1),
            "mean off-diagonal UAR %": round(100 * off_diagonal_mean(matrix), 1)}


__all__ = ["ENCODER_GROUPS", "read_matrix", "off_diagonal_mean", "matrix_summary", "NORMALISATIONS", "TRANSDUCTIVE", "corpus_embeddings", "standardise", "normalised", "run_pair_row",
           "shared_labels", "encoder_matrix"]
