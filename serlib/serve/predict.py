"""Using a trained model: predict new files, evaluate on a (possibly other) corpus.

Four kinds of model predict files:

:class:`Predictor`
    The Tier-1 network, from a checkpoint (``best_uar_*.pt`` or ``last.pt``) or a
    shipped model (:mod:`serlib.serve.shipped`). Both carry the weights, the resolved
    config, the label list and the training normalisation statistics, so a file
    is processed exactly as the training clips were: same preprocessing, same
    features, same normalisation.
:class:`EncoderHeadPredictor`
    A linear head (standardisation + logistic regression) on pooled features of
    one layer of the frozen Whisper-base encoder (``whisper-logreg`` runs),
    shipped by :mod:`serlib.serve.shipped`.
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

from pathlib import Path
from typing import TYPE_CHECKING

from serlib.systems.base import FilePredictor
from serlib.systems.tier1.predictor import Predictor

if TYPE_CHECKING:  # pragma: no cover

    pass


def load_predictor(model: str | Path, *, demucs_model: str | None = None) -> FilePredictor:
    """The predictor a user names: a shipped model name, a checkpoint, or a shipped weights/sidecar file.

    Parameters
    ----------
    model
        ``ravdess`` (a name :func:`serlib.serve.shipped.list_models` lists), a checkpoint
        path (``results/.../best_uar_0.6000.pt``), or the path of a shipped
        ``NAME.safetensors`` / ``NAME.json``.
    demucs_model
        The user's own Demucs weights (a path or a pretrained name) for a
        checkpoint trained with ``preprocess.denoise: demucs``; a model file
        itself may only name a pretrained Demucs model.

    Raises
    ------
    serlib.serve.shipped.ShippedModelError
        An unknown name (the message lists the shipped ones), a folder, a damaged shipped file.
    CheckpointError
        A missing, damaged or foreign checkpoint.
    """
    from serlib.serve.shipped import ShippedModelError, is_shipped_name, load_shipped

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


__all__ = ["load_predictor"]
