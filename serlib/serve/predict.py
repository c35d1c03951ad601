"""What a user names, as a file predictor: a shipped model name, a checkpoint, or a shipped weights/sidecar file.

Every system's predictor lives with the system (:mod:`serlib.systems`); a shipped
model finds its system through the catalogue (:func:`serlib.serve.shipped.load_shipped`),
and a checkpoint is a Tier-1 network (:class:`serlib.systems.tier1.predictor.Predictor`).
Heavy modules (torch, scikit-learn) are imported where they are used.
"""

from __future__ import annotations

from pathlib import Path

from serlib.systems.base import FilePredictor
from serlib.systems.tier1.predictor import Predictor


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
