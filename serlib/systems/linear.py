"""Linear heads on fixed per-clip features: the classifier, its pickle-free file, and one split's run.

A linear head is scikit-learn's ``SimpleImputer(mean) -> StandardScaler ->
LinearSVC | LogisticRegression`` (class-balanced), ``C`` chosen on the
validation speakers (:func:`fit_linear_head`). The openSMILE baselines
(:mod:`serlib.systems.opensmile_linear`) and the Whisper-base linear heads
(:mod:`serlib.systems.whisper_linear`) are this head on their own features.

After fitting, the head's numbers are kept in the run folder as
``head.safetensors`` (:class:`LinearHead`: ``impute``, ``mean``, ``scale``,
``coef``, ``intercept``, the class names and whether its outputs are
probabilities or SVM decision scores), so the head scores new files without
scikit-learn and without pickle. A head trained on per-speaker standardised
features (``-spkz``, transductive) keeps no file: it cannot score a lone clip.

A run folder holds ``config.yaml``, ``provenance.json``, ``metrics.json``
(written last), ``predictions.csv`` (``utt_id, speaker, true, predicted`` and
``p_<label>`` probabilities for logistic regression or ``score_<label>``
decision values for the SVM, which has no probabilities), ``head.safetensors``
and the confusion/per-class figures.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serlib.core.tensors import ShippedModelError, read_tensors
from serlib.systems.base import select_classes, softmax, split_rows, write_run

if TYPE_CHECKING:  # pragma: no cover - scikit-learn is imported where a head is built
    from sklearn.pipeline import Pipeline

    from serlib.config import Config

HEAD_FILE = "head.safetensors"
"""The fitted head in a run folder (heads are not committed: they are rebuilt by re-running the fold)."""


class BaselineError(ValueError):
    """A linear head cannot be fitted on the given data (one clear line says why)."""


CLASSIFIERS = ("svm", "logreg")


# C tried for the linear models, per functional set. After standardisation a clip's squared norm is about
# the number of features, so the useful range of C shrinks roughly as 1/dims: with ComParE's 6373 values
# the linear SVM reaches its hard-margin solution (identical validation UARs) from about C = 1e-4 on
# RAVDESS, and LinearSVC needs minutes per fit above 1e-2 while changing nothing.
LINEAR_C_GRIDS = {
    "egemaps": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    "compare": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
}


LINEAR_C_GRID = LINEAR_C_GRIDS["egemaps"]


FUNCTIONAL_SETS = ("egemaps", "compare")


SPEAKER_NORM_SUFFIX = "spkz"


def functional_model_name(feature_set: str, classifier: str, speaker_norm: bool = False) -> str:
    """``egemaps-svm``, ``compare-logreg-spkz``, ... (the run-folder model name)."""
    return f"{feature_set}-{classifier}" + (f"-{SPEAKER_NORM_SUFFIX}" if speaker_norm else "")


def parse_functional_model(name: str) -> tuple[str, str, bool]:
    """``"compare-logreg-spkz"`` -> ``("compare", "logreg", True)``; raises :class:`BaselineError` otherwise."""
    parts = name.split("-")
    speaker_norm = len(parts) == 3 and parts[2] == SPEAKER_NORM_SUFFIX
    if len(parts) not in (2, 3) or (len(parts) == 3 and not speaker_norm) or parts[0] not in FUNCTIONAL_SETS \
            or parts[1] not in CLASSIFIERS:
        raise BaselineError(f"not a functional baseline name: {name!r} (expected <{'|'.join(FUNCTIONAL_SETS)}>-"
                            f"<{'|'.join(CLASSIFIERS)}>[-{SPEAKER_NORM_SUFFIX}])")
    return parts[0], parts[1], speaker_norm


def is_functional_model(name: str) -> bool:
    try:
        parse_functional_model(name)
    except BaselineError:
        return False
    return True


def make_linear_classifier(classifier: str, C: float, seed: int = 0) -> "Pipeline":
    """Mean imputation -> StandardScaler -> LinearSVC or LogisticRegression, balanced class weights."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if classifier == "svm":
        model = LinearSVC(C=C, class_weight="balanced", dual="auto", max_iter=5000, random_state=seed)
    elif classifier == "logreg":
        model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)
    else:
        raise BaselineError(f"unknown classifier {classifier!r}: use one of {CLASSIFIERS}")
    return make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler(), model)


def speaker_standardize(X: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """Z-score the rows of each speaker with that speaker's own mean and std (NaN rows ignored; std 0 -> 1)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty_like(X)
    speakers = np.asarray(speakers).astype(str)
    for spk in np.unique(speakers):
        rows = speakers == spk
        block = X[rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a speaker whose rows are all missing
            mean, std = np.nanmean(block, 0), np.nanstd(block, 0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        out[rows] = (block - np.nan_to_num(mean)) / std
    return out


@dataclass
class LinearHead:
    """A fitted linear head's numbers: the arithmetic of scikit-learn's pipeline, without scikit-learn.

    A missing value is replaced by ``impute``, then ``z = (x - mean) / scale`` and
    ``s = z @ coef.T + intercept``. Probabilities (``output="p"``, logistic
    regression) are the softmax of ``s``, or for two classes the logistic sigmoid of
    its single column; decision scores (``output="score"``, the SVM) are ``s``, or
    ``(-s, s)`` for two classes, as the run's ``predictions.csv`` writes them.
    """

    labels: list[str]  # in the order of the rows of ``coef`` (scikit-learn's ``classes_``)
    impute: np.ndarray  # (d,)
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    coef: np.ndarray  # (n_classes, d), or (1, d) for two classes
    intercept: np.ndarray  # (n_classes,), or (1,)
    output: str = "p"

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> "LinearHead":
        """The numbers of a fitted ``SimpleImputer -> StandardScaler -> LogisticRegression | LinearSVC`` pipeline."""
        steps = list(getattr(pipeline, "named_steps", {}).values())
        if len(steps) != 3 or not (hasattr(steps[0], "statistics_") and hasattr(steps[1], "scale_")
                                   and hasattr(steps[2], "coef_")):
            raise ShippedModelError("a linear head is a fitted SimpleImputer -> StandardScaler -> "
                                    "LogisticRegression or LinearSVC pipeline")
        imputer, scaler, clf = steps
        return cls([str(c) for c in clf.classes_], imputer.statistics_, scaler.mean_, scaler.scale_, clf.coef_,
                   clf.intercept_, "p" if hasattr(clf, "predict_proba") else "score")

    def arrays(self) -> dict[str, np.ndarray]:
        """The head's tensors, float32 (probabilities stay within 1e-6 of the pipeline's)."""
        values = {"impute": self.impute, "mean": self.mean, "scale": self.scale, "coef": self.coef,
                  "intercept": self.intercept}
        return {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in values.items()}

    def save(self, path: str | Path) -> Path:
        """Write ``path`` as safetensors (no pickle): the tensors, and the classes (and the output kind) in the header."""
        from safetensors.numpy import save_file

        from serlib.core.files import atomic_write

        metadata = {"classes": json.dumps(self.labels)}  # a logistic head's header holds one key: reproducible
        if self.output != "p":
            metadata["output"] = self.output
        path = Path(path)
        atomic_write(path, lambda tmp: save_file(self.arrays(), str(tmp), metadata=metadata), "the run folder")
        return path

    @classmethod
    def read(cls, path: str | Path) -> "LinearHead":
        """The head :meth:`save` wrote (raises :class:`ShippedModelError` naming the file when it is not one)."""
        from safetensors import safe_open

        tensors = read_tensors(path)
        with safe_open(str(path), framework="numpy") as fh:
            metadata = fh.metadata() or {}
        missing = {"impute", "mean", "scale", "coef", "intercept"} - set(tensors)
        if missing or "classes" not in metadata:
            raise ShippedModelError(f"{path} is not a serlib linear head (missing {sorted(missing) or 'classes'})")
        return cls.from_arrays(tensors, json.loads(metadata["classes"]), metadata.get("output", "p"))

    @classmethod
    def from_arrays(cls, tensors: dict[str, np.ndarray], labels: Sequence[str], output: str = "p") -> "LinearHead":
        """A head from its tensors (a file's or a shipped model's) and class names."""
        if output not in ("p", "score"):
            raise ShippedModelError(f"a linear head's output is 'p' or 'score', not {output!r}")
        f32 = {k: np.asarray(tensors[k], dtype=np.float32) for k in ("impute", "mean", "scale", "coef", "intercept")}
        return cls([str(c) for c in labels], f32["impute"], f32["mean"], f32["scale"], f32["coef"], f32["intercept"],
                   output)

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """Probabilities or decision scores ``(n, len(labels))`` of feature rows ``(n, d)``."""
        X = np.asarray(X, dtype=np.float64)
        X = np.where(np.isnan(X), self.impute.astype(np.float64), X)
        Z = (X - self.mean.astype(np.float64)) / self.scale.astype(np.float64)
        scores = Z @ self.coef.astype(np.float64).T + self.intercept.astype(np.float64)
        if self.output == "score":
            return np.concatenate([-scores, scores], axis=1) if self.coef.shape[0] == 1 else scores
        if self.coef.shape[0] == 1:  # two classes: P(labels[1]) = sigmoid(score)
            p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        return softmax(scores)

    def within(self, classes: Sequence[str]) -> "LinearHead":
        """This head scoring ``classes`` only (the rows of its other, masked classes removed)."""
        if set(self.labels) <= set(classes) or self.coef.shape[0] == 1:
            return self
        keep = [self.labels.index(c) for c in classes]
        return replace(self, labels=[self.labels[k] for k in keep], coef=self.coef[keep], intercept=self.intercept[keep])

    def reading_raw(self, statistics: tuple[np.ndarray, np.ndarray] | None) -> "LinearHead":
        """This head taking features before a standardisation ``(x - mean) / std`` its inputs had (``None``: as is)."""
        if statistics is None:
            return self
        mean, std = (np.asarray(v, dtype=np.float64) for v in statistics)
        return replace(self, impute=mean + std * self.impute, mean=mean + std * self.mean, scale=std * self.scale)


def save_linear_head(pipeline: Any, path: str | Path) -> Path:
    """Save a fitted linear pipeline as ``head.safetensors`` (:class:`LinearHead`)."""
    return LinearHead.from_pipeline(pipeline).save(path)


def read_linear_head(path: str | Path) -> LinearHead:
    """The :class:`LinearHead` that :func:`save_linear_head` wrote."""
    return LinearHead.read(path)


def fit_weighted(pipeline: Any, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> Any:
    """``pipeline.fit(X, y)``, with ``sample_weight`` passed to its last step (the classifier) when given."""
    if sample_weight is None:
        return pipeline.fit(X, y)
    return pipeline.fit(X, y, **{f"{pipeline.steps[-1][0]}__sample_weight": sample_weight})


def predict_within(model: Any, X: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``model.predict(X)``, or, when the model knows more classes than ``classes``, the best of ``classes``."""
    known = [str(c) for c in model.classes_]
    if set(known) <= set(classes):
        return model.predict(X)
    columns = [known.index(c) for c in classes]
    scores = model.predict_proba(X) if hasattr(model, "predict_proba") else model.decision_function(X)
    return np.asarray(classes, dtype=object)[scores[:, columns].argmax(axis=1)].astype(str)


def fit_linear_head(
    functionals: np.ndarray,
    usable_manifest: pd.DataFrame,
    assignment: pd.Series,
    config: Config,
    out_dir: str | Path,
    *,
    classifier: str = "svm",
    speaker_norm: bool = False,
    feature_set: str = "egemaps",
    c_grid: Sequence[float] | None = None,
    refit: str = "train",
    model_name: str | None = None,
    data_fingerprint: str = "",
    feature_cache: str = "",
    extra_provenance: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    train_classes: Sequence[str] | None = None,
    input_statistics: tuple[np.ndarray, np.ndarray] | None = None,
    sample_weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit a linear head on fixed per-clip features (one split) and write its run folder.

    Parameters
    ----------
    functionals
        ``(len(usable_manifest), dims)``, row ``i`` for clip ``usable_manifest.iloc[i]``
        (:meth:`serlib.features.functionals.FunctionalSet.matrix`); all-NaN rows are
        clips without functionals: dropped from train/val, mean-imputed on test
        so the test clips stay those of every other system.
    usable_manifest, assignment
        The usable clips and their ``train``/``val``/``test`` split on the same
        index (:func:`serlib.features.prepared.split_for`); only ``config.data.classes``
        (default: every label present) are used.
    classifier
        ``"svm"`` (LinearSVC) or ``"logreg"`` (LogisticRegression).
    speaker_norm
        Per-speaker standardisation (transductive on test speakers; see the module docstring).
    c_grid, refit
        ``C`` values tried on the validation speakers (default :data:`LINEAR_C_GRIDS` of
        ``feature_set``); ``"train"`` or ``"train+val"`` for the final fit.
    model_name
        Default :func:`functional_model_name` of ``feature_set``, ``classifier``, ``speaker_norm``.
    data_fingerprint, feature_cache, extra_provenance
        Recorded in ``provenance.json``.
    classes
        The classes scored (default ``config.data.classes``, or every label present).
    train_classes
        The classes trained, when more than ``classes`` (extra outputs that are masked:
        every prediction and probability is taken over ``classes`` only).
    input_statistics
        ``(mean, std)`` the inputs were standardised with before this call; the saved
        head folds them in, so it reads raw features.

    Returns
    -------
    The ``metrics.json`` dict: ``test`` report, ``val_search`` (``C`` -> validation UAR),
    ``chosen_C``, ``speaker_norm``, ``transductive``, ``refit``, missing-clip counts, ...
    """
    from sklearn.exceptions import ConvergenceWarning

    from serlib.evaluation.metrics import bootstrap_ci, classification_report_dict, unweighted_average_recall

    start = time.perf_counter()
    if classifier not in CLASSIFIERS:
        raise BaselineError(f"unknown classifier {classifier!r}: use one of {CLASSIFIERS}")
    if refit not in ("train", "train+val"):
        raise BaselineError(f"refit must be 'train' or 'train+val', not {refit!r}")
    X_all = np.asarray(functionals, dtype=np.float64)
    if X_all.ndim != 2 or X_all.shape[0] != len(usable_manifest):
        raise BaselineError(f"functionals have shape {X_all.shape}, expected ({len(usable_manifest)}, dims): "
                            "one row per usable clip")
    if c_grid is None:
        c_grid = LINEAR_C_GRIDS.get(feature_set, LINEAR_C_GRID)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = model_name or functional_model_name(feature_set, classifier, speaker_norm)
    classes = list(classes) if classes is not None else select_classes(usable_manifest, config.data.classes)
    rows = split_rows(usable_manifest, assignment, classes)
    if train_classes is not None:
        rows["train"] = split_rows(usable_manifest, assignment, list(train_classes))["train"]
    for part in ("train", "val", "test"):
        if len(rows[part]) == 0:
            raise BaselineError(f"the {part} split has no clips of the classes {classes}")
    missing = np.isnan(X_all).all(axis=1)
    if speaker_norm:
        used = np.concatenate(list(rows.values()))
        X_all = X_all.copy()
        X_all[used] = speaker_standardize(X_all[used], usable_manifest["speaker"].iloc[used])
    fit_rows = {p: r[~missing[r]] if p != "test" else r for p, r in rows.items()}
    X = {p: X_all[r] for p, r in fit_rows.items()}
    y = {p: usable_manifest["label"].to_numpy()[r].astype(str) for p, r in fit_rows.items()}

    warned = []

    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)

    def fit(c: float, X_fit: np.ndarray, y_fit: np.ndarray, w_fit: np.ndarray | None = None) -> Pipeline:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = fit_weighted(make_linear_classifier(classifier, c, config.seed), X_fit, y_fit, w_fit)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            warned.append(c)
        return model

    w = {p: None if weights is None else weights[r] for p, r in fit_rows.items()}
    search = {float(c): unweighted_average_recall(y["val"], predict_within(fit(c, X["train"], y["train"], w["train"]),
                                                                           X["val"], classes))
              for c in sorted(c_grid)}
    best_c = max(search, key=search.get)  # first maximum: ties go to the smaller C
    if refit == "train":
        model = fit(best_c, X["train"], y["train"], w["train"])
    else:
        model = fit(best_c, np.concatenate([X["train"], X["val"]]), np.concatenate([y["train"], y["val"]]),
                    None if weights is None else np.concatenate([w["train"], w["val"]]))
    if not speaker_norm:  # the fitted numbers, for predicting files and shipping (no pickle, ~40 KB)
        LinearHead.from_pipeline(model).within(classes).reading_raw(input_statistics).save(out / HEAD_FILE)
    pred = predict_within(model, X["test"], classes)
    test_report = classification_report_dict(y["test"], pred, classes)
    lo, hi = bootstrap_ci(y["test"], pred, seed=config.seed)
    test_rows = fit_rows["test"]
    predictions = pd.DataFrame({"utt_id": usable_manifest["utt_id"].to_numpy()[test_rows].astype(str),
                                "speaker": usable_manifest["speaker"].to_numpy()[test_rows].astype(str),
                                "true": y["test"], "predicted": pred})
    order = [list(model.classes_).index(c) if c in model.classes_ else None for c in classes]
    if classifier == "logreg":
        scores, prefix = model.predict_proba(X["test"]), "p_"
        if len(order) < len(model.classes_):  # masked extra outputs: renormalise over the scored classes
            scores = scores / scores[:, [k for k in order if k is not None]].sum(axis=1, keepdims=True)
    else:
        scores, prefix = model.decision_function(X["test"]), "score_"
        if scores.ndim == 1:  # two classes: one column, positive = classes_[1]
            scores = np.stack([-scores, scores], axis=1)
    for c, k in zip(classes, order):
        predictions[f"{prefix}{c}"] = np.round(scores[:, k], 5) if k is not None else 0.0
    metrics = {
        "model": name,
        "labels": classes,
        "sizes": {p: int(len(r)) for p, r in fit_rows.items()},
        "speakers": {p: sorted(set(usable_manifest["speaker"].to_numpy()[r].astype(str))) for p, r in fit_rows.items()},
        "best_val_uar": search[best_c],
        "best_epoch": None,
        "val_search": {str(c): u for c, u in search.items()},
        "c_grid": [float(c) for c in sorted(c_grid)],
        "chosen_C": best_c,
        "classifier": {"svm": "LinearSVC (one-vs-rest, squared hinge)", "logreg": "LogisticRegression (multinomial)"}[classifier],
        "class_weight": "balanced",
        "feature_set": feature_set,
        "n_features": int(X_all.shape[1]),
        "speaker_norm": bool(speaker_norm),
        "transductive": bool(speaker_norm),
        "refit": refit,
        "missing_clips": {p: int(missing[r].sum()) for p, r in rows.items()},  # train/val dropped, test imputed
        "convergence_warnings_C": sorted(set(warned)),
        "test": test_report,
        "test_uar_ci95": [lo, hi],
        "test_uar_ci95_method": "percentile bootstrap over utterances (per run); speaker-clustered CIs: serlib.evaluation.stats",
    }
    write_run(out, config, metrics, predictions, dict(
        seed=config.seed, data_fingerprint=data_fingerprint, feature_cache=feature_cache, denoise="none",
        audio="raw clip, 16 kHz mono (no denoising, VAD or level normalisation)", functionals=feature_set,
        speaker_norm=bool(speaker_norm), transductive=bool(speaker_norm),
        wall_seconds=round(time.perf_counter() - start, 2), **(extra_provenance or {})))
    return metrics


__all__ = ["fit_weighted", "predict_within", "HEAD_FILE", "CLASSIFIERS", "FUNCTIONAL_SETS", "LINEAR_C_GRIDS", "LINEAR_C_GRID", "BaselineError",
           "LinearHead", "functional_model_name", "parse_functional_model", "is_functional_model",
           "make_linear_classifier", "speaker_standardize", "save_linear_head", "read_linear_head", "fit_linear_head"]
