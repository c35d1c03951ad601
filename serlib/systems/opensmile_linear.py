"""The field's standard baselines: openSMILE functionals + a linear head (``egemaps-svm``, ``compare-logreg``, ...).

openSMILE eGeMAPSv02 (88) or ComParE_2016 (6373) functionals of the raw clip
(16 kHz mono, no denoising, VAD or level normalisation;
:mod:`serlib.features.functionals`; openSMILE is under the audEERING Research
License, non-commercial use only) -> the linear head of
:mod:`serlib.systems.linear` (a linear SVM or multinomial logistic regression,
class-balanced, ``C`` on validation speakers).

The suffix ``-spkz`` marks per-speaker standardisation: every speaker's
functionals are z-scored with that speaker's own mean and standard deviation
over all of its clips in the split's classes. For test speakers this uses their
(unlabelled) test clips, so it is **transductive**; such runs say so in
``metrics.json`` and ``provenance.json``, and they cannot score a lone file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from serlib.systems.base import CannotPredictFiles, FilePredictor
from serlib.systems.linear import HEAD_FILE, LinearHead, fit_linear_head

if TYPE_CHECKING:  # pragma: no cover
    from serlib.config import Config
    from serlib.features.prepared import Prepared


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False, feature_set: str, classifier: str,
        speaker_norm: bool = False, workers: int = 1) -> dict[str, Any]:
    """Fit the functional baseline on one split of a prepared corpus; writes the run folder.

    The functionals of the corpus are prepared once (cached beside the frame
    features, under the same cache root) and aligned to the usable clips.
    """
    from serlib.features.functionals import prepare_functionals
    from serlib.systems.linear import functional_model_name

    features = prepared.features
    cache_dir = Path(features.path).parents[1] if features.path is not None else None  # <cache>/<corpus>/<key>
    fs = prepare_functionals(features.manifest, feature_set, cache_dir=cache_dir, workers=workers, progress=progress)
    usable = features.usable
    provenance = {"opensmile": fs.opensmile_version, "functionals_quarantined": int(len(fs.quarantine)), **extra}
    return fit_linear_head(fs.matrix(usable["utt_id"].astype(str)), usable, split, config, run_dir,
                           classifier=classifier, speaker_norm=speaker_norm, feature_set=feature_set,
                           model_name=functional_model_name(feature_set, classifier, speaker_norm),
                           data_fingerprint=features.fingerprint, feature_cache=fs.key, extra_provenance=provenance)


@dataclass
class FunctionalsPredictor(FilePredictor):
    """openSMILE functionals of a file (as in training: the raw clip at 16 kHz) -> the run's linear head."""

    feature_set: str
    head: LinearHead
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = list(self.head.labels)
        self.outputs = self.head.output

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> its functionals; a clip openSMILE cannot summarise fully is all NaN, as in the cache."""
        from serlib.data.audio import load_audio
        from serlib.features.functionals import SAMPLE_RATE, extract_functionals, make_smile

        if not hasattr(self, "_smile"):
            self._smile = make_smile(self.feature_set)
        values = extract_functionals(load_audio(path, SAMPLE_RATE), self._smile).astype(np.float64)
        return values if np.all(np.isfinite(values)) else np.full_like(values, np.nan)

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return self.head.outputs(np.stack(list(arrays)))


def predictor(source: Path, *, feature_set: str, classifier: str, speaker_norm: bool = False,
              workers: int = 1) -> FunctionalsPredictor:
    """The run folder's head on openSMILE functionals (``head.safetensors`` is not committed: re-run to get it)."""
    if not (source / HEAD_FILE).is_file():
        raise CannotPredictFiles(f"{source}: no {HEAD_FILE} (heads are not committed: re-run this fold to get it)")
    return FunctionalsPredictor(feature_set, LinearHead.read(source / HEAD_FILE), {"source": str(source)})


__all__ = ["fit", "predictor", "FunctionalsPredictor"]
