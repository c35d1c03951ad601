"""Using a trained checkpoint: predict new files, evaluate on a (possibly other) corpus.

A checkpoint (``best_uar_*.pt`` or ``last.pt``) carries the model weights, the
resolved config, the label list and the training normalisation statistics, so a
file is processed exactly as the training clips were: same preprocessing, same
features, same normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from .audio import load_audio
from .checkpoints import CheckpointError, load_checkpoint
from .config import Config, config_from_dict
from .features import FeatureExtractor, FeatureSet, Normalizer
from .metrics import bootstrap_ci, classification_report_dict
from .model import build_network
from .preprocess import make_denoiser, preprocess_wave
from .train import predict_proba




@dataclass
class Predictor:
    """A trained model with everything needed to featurise new audio."""

    model: torch.nn.Module
    config: Config
    labels: list[str]
    normalizer: Normalizer

    @classmethod
    def load(cls, path: str | Path) -> "Predictor":
        path = Path(path)
        state = load_checkpoint(path)  # weights_only: a crafted pickle never runs
        try:
            config = config_from_dict(state["config"])
            model = build_network(config.model, state["n_feats"], len(state["labels"]))
            model.load_state_dict(state["model"])
        except Exception as exc:  # a foreign or truncated file
            raise CheckpointError(f"{path} is not a serlib checkpoint ({type(exc).__name__}: {exc})") from None
        model.eval()
        return cls(model, config, list(state["labels"]), Normalizer.from_dict(state["normalizer"]))

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> normalisation-ready features, as in training (raises AudioError)."""
        pre = self.config.preprocess
        wave = load_audio(path, pre.sample_rate)
        wave, _ = preprocess_wave(wave, pre, self._denoiser())
        return FeatureExtractor(self.config.features, pre.sample_rate)(wave)

    def _denoiser(self):
        if not hasattr(self, "_denoiser_obj"):
            self._denoiser_obj = make_denoiser(self.config.preprocess)
        return self._denoiser_obj

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, len(labels))``."""
        return predict_proba(self.model, list(arrays), self.normalizer)

    def predict_files(self, paths: Sequence[str | Path]) -> pd.DataFrame:
        """One row per file: path, predicted label, and a probability column per class."""
        probs = self.predict_arrays([self.featurize(p) for p in paths])
        df = pd.DataFrame({"path": [str(p) for p in paths], "label": [self.labels[i] for i in probs.argmax(1)]})
        for k, lab in enumerate(self.labels):
            df[f"p_{lab}"] = probs[:, k]
        return df

    def evaluate(self, features: FeatureSet, utt_ids: Sequence[str] | None = None, seed: int = 0) -> tuple[dict[str, Any], pd.DataFrame]:
        """Metrics on the usable clips of ``features`` (optionally only ``utt_ids``).

        Only clips whose label the model knows are scored; probabilities of the
        model's classes that do not occur in the evaluated clips are dropped
        before the argmax (cross-corpus evaluation over shared classes).
        """
        usable = features.usable
        if utt_ids is not None:
            usable = usable[usable["utt_id"].isin(set(utt_ids))]
        rows = usable[usable["label"].isin(self.labels)]
        if rows.empty:
            raise ValueError(f"no clips with the model's labels {self.labels} (have {sorted(usable['label'].unique())})")
        shared = [lab for lab in self.labels if lab in set(rows["label"])]
        keep = [self.labels.index(lab) for lab in shared]
        probs = self.predict_arrays([features.features[u] for u in rows["utt_id"]])[:, keep]
        pred = [shared[i] for i in probs.argmax(1)]
        report = classification_report_dict(list(rows["label"]), pred, shared)
        report["uar_ci95"] = list(bootstrap_ci(rows["label"].values, np.array(pred), seed=seed))
        preds = pd.DataFrame({"utt_id": rows["utt_id"].values, "speaker": rows["speaker"].values,
                              "true": rows["label"].values, "predicted": pred})
        return report, preds
