"""``baseline-svm``: MFCC statistics + an RBF SVM, on the same cached MFCCs the network sees.

Each utterance becomes one vector: per-coefficient mean, standard deviation,
minimum and maximum of its frames, plus mean and standard deviation of the
first-order deltas (6 x 40 = 240 values), standardised on the training split;
an RBF SVM (``gamma="scale"``, class-balanced), ``C`` chosen on the validation
speakers (ties go to the first, smaller ``C``) and refitted on the training
speakers, tested once.

The fitted SVM is kept as ``svm.safetensors`` (:class:`RBFHead`: the scaler,
support vectors, dual coefficients, intercepts and ``gamma``), so a run scores
new files without scikit-learn's pickles. The SVM has no probabilities: its
outputs are scikit-learn's one-vs-rest decision values (votes of the one-vs-one
classifiers plus their scaled confidences), whose largest is the predicted class.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from serlib.core.tensors import ShippedModelError, read_tensors
from serlib.systems.base import CannotPredictFiles, FilePredictor, select_classes, split_data, write_run

if TYPE_CHECKING:  # pragma: no cover
    from serlib.config import Config
    from serlib.features.frames import FileFrames
    from serlib.features.prepared import Prepared

C_GRID = (0.1, 1.0, 10.0, 100.0)
"""``C`` values tried on the validation speakers."""

SVM_FILE = "svm.safetensors"


def mfcc_statistics(frames: np.ndarray) -> np.ndarray:
    """Utterance vector: mean, std, min, max of the frames and mean, std of their deltas."""
    delta = np.diff(frames, axis=0) if frames.shape[0] > 1 else np.zeros_like(frames)
    return np.concatenate([frames.mean(0), frames.std(0), frames.min(0), frames.max(0), delta.mean(0), delta.std(0)])


@dataclass
class RBFHead:
    """A fitted ``StandardScaler -> SVC(kernel="rbf")`` pipeline's numbers, scored in numpy as scikit-learn does."""

    labels: list[str]  # scikit-learn's classes_
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    support_vectors: np.ndarray  # (n_sv, d), grouped by class
    dual_coef: np.ndarray  # (n_classes - 1, n_sv)
    intercept: np.ndarray  # (n_classes * (n_classes - 1) / 2,), pairs (0,1), (0,2), ..., (1,2), ...
    n_support: np.ndarray  # (n_classes,)
    gamma: float

    @classmethod
    def from_pipeline(cls, pipeline: Any, X_train: np.ndarray) -> "RBFHead":
        """The numbers of a fitted pipeline; ``gamma="scale"`` is 1 / (d * var) of the scaled training features."""
        scaler, svc = pipeline[0], pipeline[-1]
        scaled = np.asarray(scaler.transform(X_train), dtype=np.float64)  # as SVC sees it
        gamma = float(svc.gamma if not isinstance(svc.gamma, str) else 1.0 / (scaled.shape[1] * scaled.var()))
        return cls([str(c) for c in svc.classes_], scaler.mean_, scaler.scale_, svc.support_vectors_,
                   svc.dual_coef_, svc.intercept_, svc.n_support_, gamma)

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        from serlib.core.files import atomic_write

        arrays = {"mean": self.mean, "scale": self.scale, "support_vectors": self.support_vectors,
                  "dual_coef": self.dual_coef, "intercept": self.intercept}
        arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float64)) for k, v in arrays.items()}
        arrays["n_support"] = np.asarray(self.n_support, dtype=np.int64)
        metadata = {"head": json.dumps({"classes": self.labels, "gamma": self.gamma})}
        atomic_write(Path(path), lambda tmp: save_file(arrays, str(tmp), metadata=metadata), "the run folder")
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> "RBFHead":
        from safetensors import safe_open

        arrays = read_tensors(path)
        with safe_open(str(path), framework="numpy") as fh:
            metadata = fh.metadata() or {}
        try:
            head = json.loads(metadata["head"])
            return cls([str(c) for c in head["classes"]], arrays["mean"], arrays["scale"], arrays["support_vectors"],
                       arrays["dual_coef"], arrays["intercept"], arrays["n_support"], float(head["gamma"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ShippedModelError(f"{path} is not a serlib RBF SVM (missing {exc})") from None

    def pairwise(self, X: np.ndarray) -> np.ndarray:
        """The one-vs-one decision values ``(n, pairs)`` (scikit-learn's ``decision_function_shape="ovo"``)."""
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        sq = (Z * Z).sum(1)[:, None] + (self.support_vectors ** 2).sum(1)[None] - 2 * Z @ self.support_vectors.T
        K = np.exp(-self.gamma * np.maximum(sq, 0.0))
        start = np.r_[0, np.cumsum(self.n_support)]
        out, k = [], 0
        for i in range(len(self.n_support)):
            for j in range(i + 1, len(self.n_support)):
                si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
                out.append(K[:, si] @ self.dual_coef[j - 1, si] + K[:, sj] @ self.dual_coef[i, sj] + self.intercept[k])
                k += 1
        return np.stack(out, axis=1)

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """One-vs-rest decision values ``(n, n_classes)``: votes plus confidences scaled into (-1/3, 1/3)."""
        dec = self.pairwise(X)
        n = len(self.labels)
        votes, confidence, k = np.zeros((len(dec), n)), np.zeros((len(dec), n)), 0
        for i in range(n):
            for j in range(i + 1, n):
                confidence[:, i] += dec[:, k]
                confidence[:, j] -= dec[:, k]
                votes[dec[:, k] > 0, i] += 1
                votes[dec[:, k] <= 0, j] += 1
                k += 1
        return votes + confidence / (3 * (np.abs(confidence) + 1))


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Fit the MFCC-statistics RBF SVM on one split and write its run folder (with ``svm.safetensors``)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from serlib.evaluation.metrics import bootstrap_ci, classification_report_dict, unweighted_average_recall

    features = prepared.features
    start = time.perf_counter()
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = select_classes(features.usable, config.data.classes)
    parts = {p: split_data(features, split, classes, p) for p in ("train", "val", "test")}
    X = {p: np.stack([mfcc_statistics(v[0]) for v in d.variants]) for p, d in parts.items()}
    y = {p: np.array([classes[i] for i in d.y]) for p, d in parts.items()}

    def make(c: float):
        return make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale", class_weight="balanced",
                                                   random_state=config.seed))

    search = {c: unweighted_average_recall(y["val"], make(c).fit(X["train"], y["train"]).predict(X["val"]))
              for c in C_GRID}
    best_c = max(search, key=search.get)
    model = make(best_c).fit(X["train"], y["train"])
    RBFHead.from_pipeline(model, X["train"]).save(out / SVM_FILE)
    pred = model.predict(X["test"])
    test_report = classification_report_dict(y["test"], pred, classes)
    lo, hi = bootstrap_ci(y["test"], pred, seed=config.seed)
    predictions = pd.DataFrame({"utt_id": parts["test"].ids, "speaker": parts["test"].speakers, "true": y["test"],
                                "predicted": pred})
    metrics = {
        "model": "baseline-svm",
        "labels": classes,
        "sizes": {p: len(d.ids) for p, d in parts.items()},
        "speakers": {p: sorted(set(d.speakers)) for p, d in parts.items()},
        "best_val_uar": search[best_c],
        "best_epoch": None,
        "val_search": {str(c): u for c, u in search.items()},
        "chosen_C": best_c,
        "test": test_report,
        "test_uar_ci95": [lo, hi],
    }
    write_run(out, config, metrics, predictions, dict(
        seed=config.seed, data_fingerprint=features.fingerprint, feature_cache=features.key,
        denoise=config.preprocess.denoise, wall_seconds=round(time.perf_counter() - start, 2), **extra))
    return metrics


@dataclass
class MFCCStatisticsPredictor(FilePredictor):
    """The run's MFCC frames of a file (its own preprocessing and features) -> statistics -> the RBF SVM."""

    frames: "FileFrames"
    head: RBFHead
    info: dict[str, Any] = field(default_factory=dict)
    outputs: str = "score"

    def __post_init__(self) -> None:
        self.labels = list(self.head.labels)

    def featurize(self, path: str | Path) -> np.ndarray:
        return mfcc_statistics(self.frames(path))

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return self.head.outputs(np.stack(list(arrays)))


def predictor(source: Path) -> MFCCStatisticsPredictor:
    """The run folder's SVM on MFCC statistics (``svm.safetensors`` is not committed: re-run to get it)."""
    from serlib.config import config_from_model_file, read_yaml_file
    from serlib.features.frames import FileFrames

    if not (source / SVM_FILE).is_file():
        raise CannotPredictFiles(f"{source}: no {SVM_FILE} (fitted models are not committed: re-run this fold)")
    config = config_from_model_file(read_yaml_file(source / "config.yaml"), str(source / "config.yaml"))
    return MFCCStatisticsPredictor(FileFrames(config), RBFHead.read(source / SVM_FILE), {"source": str(source)})


__all__ = ["C_GRID", "SVM_FILE", "RBFHead", "MFCCStatisticsPredictor", "mfcc_statistics", "fit", "predictor"]
