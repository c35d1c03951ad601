"""Classical baseline: utterance-level MFCC statistics + RBF SVM (scikit-learn).

Each utterance becomes one vector of the same cached MFCCs the network sees:
per-coefficient mean, standard deviation, minimum and maximum, plus mean and
standard deviation of the first-order deltas (6 x 40 = 240 values). Features are
standardised on the training split; ``C`` is chosen on the validation speakers
(never on test); the model is then evaluated once on test.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .config import Config, save_config
from .features import FeatureSet
from .metrics import bootstrap_ci, classification_report_dict, unweighted_average_recall
from .runs import provenance, write_json
from .train import select_classes, split_data

C_GRID = (0.1, 1.0, 10.0, 100.0)


def mfcc_statistics(frames: np.ndarray) -> np.ndarray:
    """Utterance vector: mean, std, min, max of the frames and mean, std of their deltas."""
    delta = np.diff(frames, axis=0) if frames.shape[0] > 1 else np.zeros_like(frames)
    return np.concatenate([frames.mean(0), frames.std(0), frames.min(0), frames.max(0), delta.mean(0), delta.std(0)])


def fit_baseline(features: FeatureSet, assignment: pd.Series, config: Config, out_dir: str | Path,
                 extra_provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit the SVM baseline on one split and write a run folder like :func:`serlib.train.fit`."""
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
    pd.DataFrame({"utt_id": parts["test"].ids, "speaker": parts["test"].speakers, "true": y["test"],
                  "predicted": pred}).to_csv(out / "predictions.csv", index=False)
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
    save_config(config, out / "config.yaml")
    import matplotlib.pyplot as plt

    from .plots import plot_confusion_matrix, plot_per_class

    for fig in (plot_confusion_matrix(test_report, out / "confusion_matrix.png"),
                plot_per_class(test_report, out / "per_class_metrics.png")):
        plt.close(fig)
    write_json(out / "provenance.json", provenance(
        seed=config.seed, data_fingerprint=features.fingerprint, feature_cache=features.key,
        denoise=config.preprocess.denoise, wall_seconds=round(time.perf_counter() - start, 2),
        **(extra_provenance or {})))
    write_json(out / "metrics.json", metrics)  # last: a run folder with metrics.json is complete
    return metrics
