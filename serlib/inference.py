"""Using a trained model: predict new files, evaluate on a (possibly other) corpus.

Four kinds of model predict files:

:class:`Predictor`
    The Tier-1 network, from a checkpoint (``best_uar_*.pt`` or ``last.pt``) or a
    shipped model (:mod:`serlib.shipped`). Both carry the weights, the resolved
    config, the label list and the training normalisation statistics, so a file
    is processed exactly as the training clips were: same preprocessing, same
    features, same normalisation.
:class:`EncoderHeadPredictor`
    A linear head (standardisation + logistic regression) on pooled features of
    one layer of the frozen Whisper-base encoder (``whisper-logreg`` runs),
    shipped by :mod:`serlib.shipped`.
:class:`EncoderMLPPredictor`
    The small torch head of ``whisper-mlp`` runs on the same pooled features
    (its layers chosen on validation speakers), shipped the same way.
:class:`FusedPredictor`
    The late fusion of such a head with a Tier-1+ network, shipped as one model.

For both encoder heads audio enters as in training: 16 kHz mono, no VAD,
denoising or level normalisation.

:func:`load_predictor` turns what a user types (a shipped model name, a
checkpoint path, or a shipped ``.safetensors``/``.json`` file) into one of them.

Heavy modules (torch, scikit-learn) are imported where they are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .checkpoints import CheckpointError, load_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from .config import Config
    from .features import FeatureSet, Normalizer


class FilePredictor:
    """What every predictor offers: labels, features of a file, probabilities of feature arrays.

    Subclasses set ``labels`` and ``info`` and implement :meth:`featurize` and :meth:`predict_arrays`.
    """

    labels: list[str]
    info: dict[str, Any]

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> the model's input features (raises :class:`serlib.audio.AudioError`)."""
        raise NotImplementedError

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, len(labels))`` of featurised clips."""
        raise NotImplementedError

    def predict_file(self, path: str | Path) -> np.ndarray:
        """Probabilities ``(len(labels),)`` of one audio file (raises :class:`serlib.audio.AudioError`)."""
        return self.predict_arrays([self.featurize(path)])[0]

    def predict_files(self, paths: Sequence[str | Path]) -> "pd.DataFrame":
        """One row per file: path, predicted label, and a probability column ``p_<label>`` per class."""
        import pandas as pd

        probs = self.predict_arrays([self.featurize(p) for p in paths])
        df = pd.DataFrame({"path": [str(p) for p in paths], "label": [self.labels[i] for i in probs.argmax(1)]})
        for k, lab in enumerate(self.labels):
            df[f"p_{lab}"] = probs[:, k]
        return df


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
        from .config import ConfigError, config_from_model_file
        from .features import Normalizer
        from .model import build_network

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

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> normalisation-ready features, as in training (raises AudioError)."""
        from .audio import load_audio
        from .features import FeatureExtractor
        from .preprocess import preprocess_wave

        pre = self.config.preprocess
        wave = load_audio(path, pre.sample_rate)
        wave, _ = preprocess_wave(wave, pre, self._denoiser())
        if not hasattr(self, "_extractor"):
            self._extractor = FeatureExtractor(self.config.features, pre.sample_rate)
        return self._extractor(wave)

    def _denoiser(self):
        from .preprocess import make_denoiser

        if not hasattr(self, "_denoiser_obj"):
            self._denoiser_obj = make_denoiser(self.config.preprocess)
        return self._denoiser_obj

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, len(labels))`` (averaged over windows when the run was trained with crop averaging)."""
        from .train import predict_proba

        tc = self.config.train
        if tc.sentence_norm:  # as in training: each clip centred on its own mean frame first
            from .features import center_clip

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

        from .metrics import bootstrap_ci, classification_report_dict

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


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _WhisperInput:
    """Pooled frozen Whisper-base features of an audio file, made as the head's training clips were."""

    encoder: dict[str, Any]  # backend, mode, sha256, compute_type of the encoder the head was trained on

    def _encoder(self):
        from .encoders import make_encoder
        from .encoders.weights import WhisperUnavailable

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
        from .audio import load_audio

        return self._encoder().pooled(load_audio(path, 16000), self.encoder.get("mode", "own"))


@dataclass
class EncoderHeadPredictor(_WhisperInput, FilePredictor):
    """Standardisation + logistic regression on one layer of pooled Whisper-base features.

    The arithmetic of scikit-learn's ``SimpleImputer(mean) -> StandardScaler ->
    LogisticRegression`` pipeline, from its fitted numbers: a missing value is
    replaced by ``impute``, then ``z = (x - mean) / scale`` and the class
    probabilities are the softmax of ``z @ coef.T + intercept`` (the logistic
    sigmoid of the single row for two classes, as scikit-learn does).
    """

    labels: list[str]  # in the order of the rows of ``coef`` (scikit-learn's ``classes_``)
    impute: np.ndarray  # (d,)
    mean: np.ndarray  # (d,)
    scale: np.ndarray  # (d,)
    coef: np.ndarray  # (n_classes, d), or (1, d) for two classes
    intercept: np.ndarray  # (n_classes,), or (1,)
    encoder: dict[str, Any]
    layer: str  # "0".."6" or "mean"
    info: dict[str, Any] = field(default_factory=dict)

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> the pooled features of the head's layer, ``(1024,)`` (raises AudioError)."""
        from .encoder_heads import layer_matrix

        return layer_matrix(self._pooled(path)[None], self.layer)[0]

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, len(labels))`` of pooled feature vectors."""
        X = np.asarray(np.stack(list(arrays)), dtype=np.float64)
        X = np.where(np.isnan(X), self.impute.astype(np.float64), X)
        Z = (X - self.mean.astype(np.float64)) / self.scale.astype(np.float64)
        scores = Z @ self.coef.astype(np.float64).T + self.intercept.astype(np.float64)
        if self.coef.shape[0] == 1:  # two classes: P(labels[1]) = sigmoid(score)
            p1 = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        return _softmax(scores)


@dataclass
class EncoderMLPPredictor(_WhisperInput, FilePredictor):
    """The ``whisper-mlp`` head: per-layer z-scores, learned layer weights, a one-hidden-layer MLP.

    ``tensors`` holds the head's state (``layer_logits``, ``mlp.*``) and the
    training statistics ``input_mean``/``input_std`` of its input ``layers``;
    a feature missing after z-scoring is 0, as in training
    (:mod:`serlib.encoder_mlp`).
    """

    labels: list[str]
    tensors: dict[str, np.ndarray]
    layers: list[int]  # the encoder layers the head reads, chosen on validation speakers
    encoder: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> the pooled features of the head's layers, ``(len(layers), 1024)`` (raises AudioError)."""
        return self._pooled(path)[self.layers]

    def _module(self) -> "torch.nn.Module":
        import torch

        from .encoder_mlp import build_mlp_head

        if not hasattr(self, "_module_obj"):
            mean = self.tensors["input_mean"]
            module = build_mlp_head(mean.shape[0], mean.shape[1], len(self.labels))
            state = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in self.tensors.items()
                     if not k.startswith("input_")}
            module.load_state_dict(state, strict=True)
            self._module_obj = module.eval()
        return self._module_obj

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, len(labels))`` of ``(len(layers), 1024)`` pooled features."""
        import torch

        X = np.asarray(np.stack(list(arrays)), dtype=np.float32)
        Z = np.nan_to_num((X - self.tensors["input_mean"].astype(np.float32))
                          / self.tensors["input_std"].astype(np.float32)).astype(np.float32)
        with torch.no_grad():
            return torch.softmax(self._module()(torch.from_numpy(Z)), dim=1).numpy().astype(np.float64)


@dataclass
class FusedPredictor(FilePredictor):
    """The late fusion of a ``whisper-mlp`` head and a Tier-1+ network (``whisper-fusion[-pooled]`` runs).

    Each component featurises the file as it was trained; the fused
    probabilities are their weighted geometric mean (:func:`serlib.fusion.fuse`)
    with the encoder's weight ``weight``, chosen on validation speakers.
    """

    labels: list[str]
    encoder: "EncoderMLPPredictor"
    network: Predictor
    weight: float
    info: dict[str, Any] = field(default_factory=dict)

    def featurize(self, path: str | Path) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        """Audio file -> (the encoder head's pooled features, the network's features) (raises AudioError)."""
        return self.encoder.featurize(path), self.network.featurize(path)

    def predict_arrays(self, arrays: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:  # type: ignore[override]
        """Fused probabilities ``(n, len(labels))`` of featurised clips."""
        from .fusion import fuse

        pairs = list(arrays)
        return fuse(self.encoder.predict_arrays([a for a, _ in pairs]),
                    self.network.predict_arrays([b for _, b in pairs]), self.weight)


def load_predictor(model: str | Path, *, demucs_model: str | None = None) -> FilePredictor:
    """The predictor a user names: a shipped model name, a checkpoint, or a shipped weights/sidecar file.

    Parameters
    ----------
    model
        ``ravdess`` (a name :func:`serlib.shipped.list_models` lists), a checkpoint
        path (``results/.../best_uar_0.6000.pt``), or the path of a shipped
        ``NAME.safetensors`` / ``NAME.json``.
    demucs_model
        The user's own Demucs weights (a path or a pretrained name) for a
        checkpoint trained with ``preprocess.denoise: demucs``; a model file
        itself may only name a pretrained Demucs model.

    Raises
    ------
    serlib.shipped.ShippedModelError
        An unknown name (the message lists the shipped ones), a folder, a damaged shipped file.
    CheckpointError
        A missing, damaged or foreign checkpoint.
    """
    from .shipped import ShippedModelError, is_shipped_name, load_shipped

    text = str(model)
    path = Path(text)
    if is_shipped_name(text):
        return load_shipped(text)
    if path.is_dir():
        found = sorted(p.name for pattern in ("best_uar_*.pt", "averaged_last*.pt") for p in path.glob(pattern))
        hint = f" (it holds {', '.join(found)}: give one of them)" if found else ""
        raise ShippedModelError(f"{text} is a folder, not a model: give a checkpoint file or a shipped model name{hint}")
    if path.suffix in (".safetensors", ".json"):
        return load_shipped(path)
    if path.suffix == ".pt" or path.exists() or len(path.parts) > 1:
        return Predictor.load(path, demucs_model=demucs_model)
    return load_shipped(text)  # an unknown bare name: the error lists the shipped models


__all__ = ["CheckpointError", "FilePredictor", "Predictor", "EncoderHeadPredictor", "EncoderMLPPredictor",
           "FusedPredictor", "load_predictor"]
