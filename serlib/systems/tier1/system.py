"""Tier-1 (and Tier-1+, the same network under its recipe) as a registered system: fit, predictor, export.

``fit`` trains the network on one split (:func:`serlib.systems.tier1.trainer.fit`);
``predictor`` loads the weights a run tested (its checkpoint; checkpoints are not
committed) or a shipped network; ``export`` turns the tested checkpoint into
shipped tensors: large matrices in float16 (see :mod:`serlib.serve.shipped`),
the resolved config and the training normalisation statistics in the sidecar.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from serlib.core.tensors import ShippedModelError, store_dtype
from serlib.systems.base import CannotPredictFiles, Shipped

if TYPE_CHECKING:  # pragma: no cover
    from serlib.config import Config
    from serlib.features.prepared import Prepared
    from serlib.systems.tier1.predictor import Predictor


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Train and test the network on one split; writes the run folder (checkpoints, history, predictions, metrics)."""
    from serlib.systems.tier1.trainer import fit as train

    return train(prepared.features, split, config, run_dir, resume=resume, progress=progress,
                 extra_provenance=extra, extra_train=prepared.extra)


def tested_weights(run: Path) -> Path:
    """The checkpoint a run's test numbers come from: the one ``metrics.json`` names, else its one ``best_uar_*.pt``.

    Raises
    ------
    CannotPredictFiles
        None exists (checkpoints are not committed), or several and none is named.
    """
    named = _read_metrics(run).get("checkpoint") if (run / "metrics.json").is_file() else None
    if named and (run / named).is_file():
        return run / named
    found = sorted(run.glob("best_uar_*.pt"))
    if len(found) != 1:
        raise CannotPredictFiles(f"{run}: metrics.json names no checkpoint that exists and the folder holds "
                                 f"{len(found)} best_uar_*.pt (checkpoints are not committed: use the machine that "
                                 "trained the run, or re-run it)")
    return found[0]


def predictor(source: Path | Shipped) -> "Predictor":
    """The network of a run folder (its tested checkpoint) or of a shipped model."""
    from serlib.systems.tier1.predictor import Predictor

    if isinstance(source, Shipped):
        return Predictor.from_shipped(source.meta, source.tensors)
    return Predictor.load(tested_weights(source))


def export(run: Path, half_min_values: int | None) -> Shipped:
    """The tested checkpoint's tensors (float16 from ``half_min_values`` values) and its sidecar fields."""
    from serlib.core.checkpoints import load_checkpoint

    try:
        best = tested_weights(run)
    except CannotPredictFiles as err:
        raise ShippedModelError(str(err)) from None
    metrics = _read_metrics(run)
    state = load_checkpoint(best)
    try:
        tensors = {k: store_dtype(v.detach().cpu().numpy(), half_min_values) for k, v in state["model"].items()}
        meta = {"labels": [str(x) for x in state["labels"]], "n_feats": int(state["n_feats"]),
                "normalizer": {"mean": [float(x) for x in state["normalizer"]["mean"]],
                               "std": [float(x) for x in state["normalizer"]["std"]]},
                "config": state["config"], "checkpoint": best.name, "best_epoch": metrics.get("best_epoch"),
                "tested": metrics.get("tested"), "parameters": metrics.get("parameters")}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ShippedModelError(f"{best} is not a serlib Tier-1 checkpoint (missing {exc})") from None
    meta["_commit"] = state.get("git_commit")
    return Shipped(meta, tensors)


def _read_metrics(run: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShippedModelError(f"{run}/metrics.json: cannot be read ({type(exc).__name__}: {exc})") from None


__all__ = ["fit", "predictor", "export", "tested_weights"]
