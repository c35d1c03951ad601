"""Classical baselines: MFCC statistics + RBF SVM, and openSMILE functionals + linear classifiers.

``baseline-svm`` (:func:`fit_baseline`)
    Each utterance becomes one vector of the same cached MFCCs the network
    sees: per-coefficient mean, standard deviation, minimum and maximum, plus
    mean and standard deviation of the first-order deltas (6 x 40 = 240
    values), standardised on the training split, RBF SVM.

``<set>-<classifier>[-spkz]`` (:func:`fit_functional_baseline`), e.g. ``egemaps-svm``, ``compare-logreg``
    The field's standard baseline: openSMILE eGeMAPSv02 (88) or ComParE_2016
    (6373) functionals (:mod:`serlib.functionals`; openSMILE is under the
    audEERING Research License, non-commercial use only) -> mean imputation ->
    StandardScaler -> linear SVM (``LinearSVC``, one-vs-rest, squared hinge) or
    multinomial logistic regression, both with ``class_weight="balanced"``.
    The suffix ``-spkz`` marks optional per-speaker standardisation: every
    speaker's functionals are z-scored with that speaker's own mean and
    standard deviation over all of its clips in the split's classes. For test
    speakers this uses their (unlabelled) test clips, so it is
    **transductive**; such runs say so in ``metrics.json`` and
    ``provenance.json`` (``speaker_norm``/``transductive``).

Model selection, for every baseline: ``C`` (grids: :data:`C_GRID`, :data:`LINEAR_C_GRIDS`) is chosen on the validation
speakers only (the highest validation UAR; ties go to the smaller, more
regularised ``C``), the model is refitted on the training speakers alone
(``refit="train"``, the default, so that it sees exactly the clips Tier-1
trains on; ``"train+val"`` is available and recorded) and evaluated once on
test. ``metrics.json`` records every ``C`` tried with its validation UAR.

A run folder holds the files of :func:`serlib.train.fit`: ``config.yaml``,
``provenance.json``, ``metrics.json`` (written last), ``predictions.csv``
(``utt_id, speaker, true, predicted`` and ``p_<label>`` probabilities for
logistic regression or ``score_<label>`` decision values for the SVMs, which
have no probabilities) and the confusion/per-class figures.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from .config import Config, save_config
from .features import FeatureSet
from .metrics import bootstrap_ci, classification_report_dict, unweighted_average_recall
from .runs import provenance, write_json
from .train import select_classes, split_data

C_GRID = (0.1, 1.0, 10.0, 100.0)  # RBF SVM of the MFCC-statistics baseline
# C tried for the linear models, per functional set. After standardisation a clip's squared norm is about
# the number of features, so the useful range of C shrinks roughly as 1/dims: with ComParE's 6373 values
# the linear SVM reaches its hard-margin solution (identical validation UARs) from about C = 1e-4 on
# RAVDESS, and LinearSVC needs minutes per fit above 1e-2 while changing nothing.
LINEAR_C_GRIDS = {
    "egemaps": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
    "compare": (1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
}
LINEAR_C_GRID = LINEAR_C_GRIDS["egemaps"]
CLASSIFIERS = ("svm", "logreg")
FUNCTIONAL_SETS = ("egemaps", "compare")
SPEAKER_NORM_SUFFIX = "spkz"


class BaselineError(ValueError):
    """A baseline cannot be fitted on the given data (one clear line says why)."""


# ----------------------------------------------------------------------------- model names


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


# ----------------------------------------------------------------------------- shared pieces


def mfcc_statistics(frames: np.ndarray) -> np.ndarray:
    """Utterance vector: mean, std, min, max of the frames and mean, std of their deltas."""
    delta = np.diff(frames, axis=0) if frames.shape[0] > 1 else np.zeros_like(frames)
    return np.concatenate([frames.mean(0), frames.std(0), frames.min(0), frames.max(0), delta.mean(0), delta.std(0)])


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


def make_linear_classifier(classifier: str, C: float, seed: int = 0) -> Pipeline:
    """Mean imputation -> StandardScaler -> LinearSVC or LogisticRegression, balanced class weights."""
    if classifier == "svm":
        model = LinearSVC(C=C, class_weight="balanced", dual="auto", max_iter=5000, random_state=seed)
    elif classifier == "logreg":
        model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)
    else:
        raise BaselineError(f"unknown classifier {classifier!r}: use one of {CLASSIFIERS}")
    return make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler(), model)


def _write_run(out: Path, config: Config, metrics: dict[str, Any], predictions: pd.DataFrame,
               prov: dict[str, Any]) -> None:
    """Write a baseline run folder; ``metrics.json`` last (its presence marks a finished run)."""
    import matplotlib.pyplot as plt

    from .plots import plot_confusion_matrix, plot_per_class

    predictions.to_csv(out / "predictions.csv", index=False)
    save_config(config, out / "config.yaml")
    for fig in (plot_confusion_matrix(metrics["test"], out / "confusion_matrix.png"),
                plot_per_class(metrics["test"], out / "per_class_metrics.png")):
        plt.close(fig)
    write_json(out / "provenance.json", provenance(**prov))
    write_json(out / "metrics.json", metrics)


# ----------------------------------------------------------------------------- MFCC statistics + RBF SVM


def fit_baseline(features: FeatureSet, assignment: pd.Series, config: Config, out_dir: str | Path,
                 extra_provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the MFCC-statistics RBF-SVM baseline (``baseline-svm``) on one split and write its run folder."""
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = select_classes(features.usable, config.data.classes)
    parts = {p: split_data(features, assignment, classes, p) for p in ("train", "val", "test")}
    X = {p: np.stack([mfcc_statistics(v[0]) for v in d.variants]) for p, d in parts.items()}
    y = {p: np.array([classes[i] for i in d.y]) for p, d in parts.items()}

    def make(c: float):
        return make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale", class_weight="balanced",
                                                   random_state=config.seed))

    search = {c: unweighted_average_recall(y["val"], make(c).fit(X["train"], y["train"]).predict(X["val"])) for c in C_GRID}
    best_c = max(search, key=search.get)
    model = make(best_c).fit(X["train"], y["train"])
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
    _write_run(out, config, metrics, predictions, dict(
        seed=config.seed, data_fingerprint=features.fingerprint, feature_cache=features.key,
        denoise=config.preprocess.denoise, wall_seconds=round(time.perf_counter() - start, 2),
        **(extra_provenance or {})))
    return metrics


# ----------------------------------------------------------------------------- functionals + linear models


def _split_rows(usable_manifest: pd.DataFrame, assignment: pd.Series, classes: list[str]) -> dict[str, np.ndarray]:
    split = assignment.reindex(usable_manifest.index).to_numpy()
    in_classes = usable_manifest["label"].isin(classes).to_numpy()
    return {p: np.flatnonzero((split == p) & in_classes) for p in ("train", "val", "test")}


def fit_functional_baseline(
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
) -> dict[str, Any]:
    """Fit a functionals + linear-classifier baseline on one split and write its run folder.

    Parameters
    ----------
    functionals
        ``(len(usable_manifest), dims)``, row ``i`` for clip ``usable_manifest.iloc[i]``
        (:meth:`serlib.functionals.FunctionalSet.matrix`); all-NaN rows are
        clips without functionals: dropped from train/val, mean-imputed on test
        so the test clips stay those of every other system.
    usable_manifest, assignment
        The usable clips and their ``train``/``val``/``test`` split on the same
        index (:func:`serlib.experiment.split_for`); only ``config.data.classes``
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

    Returns
    -------
    The ``metrics.json`` dict: ``test`` report, ``val_search`` (``C`` -> validation UAR),
    ``chosen_C``, ``speaker_norm``, ``transductive``, ``refit``, missing-clip counts, ...
    """
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
    classes = select_classes(usable_manifest, config.data.classes)
    rows = _split_rows(usable_manifest, assignment, classes)
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

    def fit(c: float, X_fit: np.ndarray, y_fit: np.ndarray) -> Pipeline:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model = make_linear_classifier(classifier, c, config.seed).fit(X_fit, y_fit)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            warned.append(c)
        return model

    search = {float(c): unweighted_average_recall(y["val"], fit(c, X["train"], y["train"]).predict(X["val"]))
              for c in sorted(c_grid)}
    best_c = max(search, key=search.get)  # first maximum: ties go to the smaller C
    if refit == "train":
        model = fit(best_c, X["train"], y["train"])
    else:
        model = fit(best_c, np.concatenate([X["train"], X["val"]]), np.concatenate([y["train"], y["val"]]))
    if classifier == "logreg" and not speaker_norm:  # the fitted numbers, for shipping (no pickle, ~40 KB)
        from .shipped import HEAD_FILE, save_linear_head

        save_linear_head(model, out / HEAD_FILE)
    pred = model.predict(X["test"])
    test_report = classification_report_dict(y["test"], pred, classes)
    lo, hi = bootstrap_ci(y["test"], pred, seed=config.seed)
    test_rows = fit_rows["test"]
    predictions = pd.DataFrame({"utt_id": usable_manifest["utt_id"].to_numpy()[test_rows].astype(str),
                                "speaker": usable_manifest["speaker"].to_numpy()[test_rows].astype(str),
                                "true": y["test"], "predicted": pred})
    order = [list(model.classes_).index(c) if c in model.classes_ else None for c in classes]
    if classifier == "logreg":
        scores, prefix = model.predict_proba(X["test"]), "p_"
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
        "test_uar_ci95_method": "percentile bootstrap over utterances (per run); speaker-clustered CIs: serlib.stats",
    }
    _write_run(out, config, metrics, predictions, dict(
        seed=config.seed, data_fingerprint=data_fingerprint, feature_cache=feature_cache, denoise="none",
        audio="raw clip, 16 kHz mono (no denoising, VAD or level normalisation)", functionals=feature_set,
        speaker_norm=bool(speaker_norm), transductive=bool(speaker_norm),
        wall_seconds=round(time.perf_counter() - start, 2), **(extra_provenance or {})))
    return metrics


def fit_functional_model(model: str, features: FeatureSet, assignment: pd.Series, config: Config,
                         out_dir: str | Path, *, cache_dir: str | Path | None = None, workers: int = 1,
                         progress: bool = False, extra_provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the functional baseline named ``model`` (e.g. ``egemaps-svm``) on one split of a prepared corpus.

    The functionals of ``features.manifest`` are prepared once (cached beside
    the frame features, under the same cache root) and aligned to
    ``features.usable``; this is the one call :func:`serlib.experiment.run_protocol`
    needs per functional model.
    """
    from .functionals import prepare_functionals

    feature_set, classifier, speaker_norm = parse_functional_model(model)
    if cache_dir is None and features.path is not None:
        cache_dir = Path(features.path).parents[1]  # <cache>/<corpus>/<key> -> <cache>
    fs = prepare_functionals(features.manifest, feature_set, cache_dir=cache_dir, workers=workers, progress=progress)
    usable = features.usable
    extra = {"opensmile": fs.opensmile_version, "functionals_quarantined": int(len(fs.quarantine)),
             **(extra_provenance or {})}
    return fit_functional_baseline(fs.matrix(usable["utt_id"].astype(str)), usable, assignment, config, out_dir,
                                   classifier=classifier, speaker_norm=speaker_norm, feature_set=feature_set,
                                   model_name=model, data_fingerprint=features.fingerprint, feature_cache=fs.key,
                                   extra_provenance=extra)


__all__ = [
    "C_GRID", "LINEAR_C_GRID", "LINEAR_C_GRIDS", "CLASSIFIERS", "FUNCTIONAL_SETS", "BaselineError", "mfcc_statistics",
    "speaker_standardize", "make_linear_classifier", "functional_model_name", "parse_functional_model",
    "is_functional_model", "fit_baseline", "fit_functional_baseline", "fit_functional_model",
]
