"""Linear heads on a frozen Whisper-base encoder.

Each clip's encoder frames are pooled (mean + standard deviation over the
frames that hold audio, per layer; :mod:`serlib.embeddings` caches them once
per corpus). A head is a linear classifier (logistic regression or a linear
SVM, class-balanced, z-scored inputs) on one layer's pooled vector, or on the
mean of every layer's. Which layer (``encoder.layer: auto``) and which ``C`` are
chosen on the validation speakers of each fold only; the test clips are scored
once. The run folder is written by :func:`serlib.baseline.fit_functional_baseline`,
so encoder heads, openSMILE baselines and the network share one format.

The encoder: Whisper-base (OpenAI, MIT licence) as converted for CTranslate2
(Systran faster-whisper-base, MIT), shipped in two PyPI wheels; see
:mod:`serlib.encoders`. Audio enters at 16 kHz mono with no VAD, denoising or
level normalisation.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
    from .embeddings import EmbeddingSet
    from .experiment import Prepared

HEAD_C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
"""``C`` values tried on the validation speakers (inputs are z-scored, so these span weak to weak-ish regularisation)."""


def encoder_embeddings(prepared: "Prepared", config: "Config", *, progress: bool = False) -> "EmbeddingSet":
    """The pooled encoder features of every clip of the corpus (from the on-disk cache after the first call).

    Memoised on ``prepared``, so the folds and seeds of one protocol load the cache once.
    """
    from .embeddings import compute_embeddings

    enc = config.encoder
    key = (enc.backend, enc.mode, enc.compute_type)
    memo = prepared.__dict__.setdefault("_embeddings", {})
    if key not in memo:
        memo[key] = compute_embeddings(prepared.scan.manifest, backend=enc.backend, mode=enc.mode,
                                       compute_type=enc.compute_type, cache_dir=prepared_cache_root(prepared),
                                       threads=config.train.num_threads or None,  # None: $SERLIB_THREADS
                                       progress=progress)
    return memo[key]


def prepared_cache_root(prepared: "Prepared") -> Path | None:
    """The cache root that holds ``prepared``'s feature cache (``<cache>/<corpus>/<key>`` -> ``<cache>``), if any."""
    path = getattr(prepared.features, "path", None)
    return Path(path).parents[1] if path is not None else None


def aligned_rows(manifest: pd.DataFrame, usable: pd.DataFrame) -> np.ndarray:
    """For each row of ``usable``, its position in ``manifest`` by ``utt_id`` (-1 when absent)."""
    row = {u: i for i, u in enumerate(manifest["utt_id"].astype(str))}
    return np.array([row.get(str(u), -1) for u in usable["utt_id"]], dtype=np.int64)


def layer_candidates(n_layers: int, choice: int | str) -> list[int | str]:
    """The layer options a head may use: one index, ``"mean"`` (of all layers), or all of them for ``auto``."""
    if choice == "auto":
        return list(range(n_layers)) + (["mean"] if n_layers > 1 else [])
    if choice == "last":
        return [n_layers - 1]
    if choice != "mean" and not 0 <= int(choice) < n_layers:
        raise ValueError(f"encoder.layer={choice} but this encoder has layers 0..{n_layers - 1}")
    return [choice]


def layer_matrix(features: np.ndarray, layer: int | str) -> np.ndarray:
    """``(n, n_layers, d)`` -> ``(n, d)``: one layer, or the mean over layers (NaN rows stay NaN)."""
    return features.mean(axis=1) if layer == "mean" else features[:, int(layer)]


def aligned_features(embeddings: "EmbeddingSet", usable: pd.DataFrame) -> np.ndarray:
    """Rows of ``embeddings.features`` in the order of ``usable`` (NaN for clips the encoder quarantined)."""
    index = aligned_rows(embeddings.manifest, usable)
    out = np.full((len(usable),) + embeddings.features.shape[1:], np.nan, dtype=np.float32)
    out[index >= 0] = embeddings.features[index[index >= 0]]
    return out


def _validation_uar(X: np.ndarray, y: np.ndarray, rows: dict[str, np.ndarray], classifier: str, c: float,
                    seed: int) -> float:
    from .baseline import make_linear_classifier
    from .metrics import unweighted_average_recall

    train, val = rows["train"], rows["val"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is recorded by the final fit
        model = make_linear_classifier(classifier, c, seed).fit(X[train], y[train])
    return float(unweighted_average_recall(y[val], model.predict(X[val])))


def select_layer(features: np.ndarray, usable: pd.DataFrame, assignment: pd.Series, classes: Sequence[str],
                 candidates: Sequence[int | str], *, classifier: str = "logreg",
                 c_grid: Sequence[float] = HEAD_C_GRID, seed: int = 0) -> tuple[int | str, dict[str, float]]:
    """The layer whose best ``C`` gives the highest validation UAR, and each candidate's best validation UAR.

    Only training and validation clips are read; ties go to the earlier candidate.
    """
    from .baseline import _split_rows

    rows = _split_rows(usable, assignment, list(classes))
    y = usable["label"].to_numpy().astype(str)
    scores: dict[str, float] = {}
    for layer in candidates:
        X = layer_matrix(features, layer)
        ok = ~np.isnan(X).any(axis=1)
        fit_rows = {p: r[ok[r]] for p, r in rows.items()}
        scores[str(layer)] = max(_validation_uar(X, y, fit_rows, classifier, c, seed) for c in c_grid)
    best = max(candidates, key=lambda layer: scores[str(layer)])
    return best, scores


def fit_encoder_head(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: str | Path, *,
                     classifier: str = "logreg", model_name: str = "whisper-logreg",
                     extra_provenance: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Train and test one linear head on one split; writes the run folder, returns its metrics."""
    from .baseline import fit_functional_baseline
    from .train import select_classes

    embeddings = encoder_embeddings(prepared, config, progress=progress)
    usable = prepared.features.usable
    features = aligned_features(embeddings, usable)
    classes = select_classes(usable, config.data.classes)
    candidates = layer_candidates(features.shape[1], config.encoder.layer)
    layer, layer_search = (candidates[0], {}) if len(candidates) == 1 else select_layer(
        features, usable, assignment, classes, candidates, classifier=classifier, seed=config.seed)
    extra = {"encoder": {**embeddings.encoder, "embedding_cache": embeddings.key}, "layer": str(layer),
             "layer_search_val_uar": layer_search, "encoder_quarantined": int(len(embeddings.quarantine)),
             **(extra_provenance or {})}
    return fit_functional_baseline(layer_matrix(features, layer), usable, assignment, config, out_dir,
                                   classifier=classifier, feature_set=f"whisper-base/{config.encoder.mode}/layer-{layer}",
                                   c_grid=HEAD_C_GRID, model_name=model_name, data_fingerprint=prepared.features.fingerprint,
                                   feature_cache=embeddings.key, extra_provenance=extra)


__all__ = ["HEAD_C_GRID", "encoder_embeddings", "layer_candidates", "layer_matrix", "aligned_features",
           "select_layer", "fit_encoder_head"]
