"""Using a trained Tier-1 network on new files: featurise as in training, then predict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serlib.config import Config
from serlib.core.checkpoints import CheckpointError, load_checkpoint
from serlib.features.frames import FeatureSet, Normalizer
from serlib.systems.base import FilePredictor

if TYPE_CHECKING:  # pragma: no cover - torch is imported where a network is built
    import torch


@dataclass
class Predictor(FilePredictor):
    """A trained Tier-1 network with everything needed to featurise new audio."""

    model: "torch.nn.Module"
    config: "Config"
    labels: list[str]
    normalizer: "Normalizer"
    info: dict[str, Any] = field(default_factory=dict)  # shipped models: the sidecar; checkpoints: {"source": path}

    @classmethod
    def load(cls, path: str | Path, *, demucs_model: str | None = None) -> "Predictor":
        """The network of a serlib checkpoint (read with ``weights_only=True``: a crafted pickle never runs).

        ``demucs_model`` (the user's own weights) replaces the Demucs model the
        checkpoint names; a checkpoint itself may only name a pretrained model.
        """
        from serlib.config import ConfigError, config_from_model_file
        from serlib.systems.tier1.network import build_network

        path = Path(path)
        state = load_checkpoint(path)
        try:
            config = config_from_model_file(state["config"], str(path), demucs_model=demucs_model)
        except ConfigError as err:
            raise CheckpointError(str(err)) from None
        except Exception as exc:  # no config at all
            raise CheckpointError(f"{path} is not a serlib checkpoint ({type(exc).__name__}: {exc})") from None
        try:
            model = build_network(config.model, state["n_feats"], len(state["labels"]))
            model.load_state_dict(state["model"])
        except Exception as exc:  # a foreign or truncated file
            raise CheckpointError(f"{path} is not a serlib checkpoint ({type(exc).__name__}: {exc})") from None
        if config.train.speaker_norm:
            raise CheckpointError(f"{path} was trained on per-speaker standardised features (train.speaker_norm): "
                                  "it needs each speaker's statistics and cannot score single files")
        model.eval()
        return cls(model, config, list(state["labels"]), Normalizer.from_dict(state["normalizer"]),
                   {"kind": "tier1", "source": str(path)})

    @classmethod
    def from_shipped(cls, meta: dict[str, Any], tensors: dict[str, np.ndarray]) -> "Predictor":
        """The network of a shipped model: its sidecar (config, classes, normalisation) and tensors."""
        import torch

        from serlib.config import ConfigError, config_from_model_file
        from serlib.core.tensors import ShippedModelError
        from serlib.systems.tier1.network import build_network

        try:
            config = config_from_model_file(meta["config"], f"shipped model {meta.get('name', '?')!r}")
        except ConfigError as err:
            raise ShippedModelError(str(err)) from None
        network = build_network(config.model, int(meta["n_feats"]), len(meta["labels"]))
        state = {k: torch.from_numpy(np.ascontiguousarray(v.astype(np.float32) if v.dtype == np.float16 else v))
                 for k, v in tensors.items()}
        network.load_state_dict(state, strict=True)
        network.eval()
        return cls(network, config, list(meta["labels"]), Normalizer.from_dict(meta["normalizer"]), dict(meta))

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> normalisation-ready features, as in training (raises AudioError)."""
        from serlib.features.frames import FileFrames

        if not hasattr(self, "_frames"):
            self._frames = FileFrames(self.config)
        return self._frames(path)

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, len(labels))`` (averaged over windows when the run was trained with crop averaging)."""
        from serlib.systems.tier1.trainer import predict_proba

        tc = self.config.train
        if tc.sentence_norm:  # as in training: each clip centred on its own mean frame first
            from serlib.features.frames import center_clip

            arrays = [center_clip(a) for a in arrays]
        return predict_proba(self.model, list(arrays), self.normalizer,
                             window=tc.max_train_frames if tc.crop_average else 0)

    def evaluate(self, features: "FeatureSet", utt_ids: Sequence[str] | None = None,
                 seed: int = 0) -> tuple[dict[str, Any], "pd.DataFrame"]:
        """Metrics on the usable clips of ``features`` (optionally only ``utt_ids``).

        Only clips whose label the model knows are scored; probabilities of the
        model's classes that do not occur in the evaluated clips are dropped
        before the argmax (cross-corpus evaluation over shared classes).
        """
        import pandas as pd

        from serlib.evaluation.metrics import bootstrap_ci, classification_report_dict

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
