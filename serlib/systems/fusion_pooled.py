"""Late fusion with one weight per protocol and seed (``whisper-fusion-pooled``).

``whisper-fusion`` chooses its encoder weight ``w`` on the validation speakers of
its own fold. Where a fold validates on one or two speakers (EmoDB, URDU) that
choice is noisy. This system pools the choice instead: for fold *k* and seed *s*
it averages the validation-UAR curves that the ``whisper-fusion`` runs of seed
*s* recorded (``val_search``: one UAR per weight tried) over every fold of the
protocol whose **validation speakers are none of fold k's test speakers**, and
takes the weight with the best mean (ties: the larger weight, as in
:func:`serlib.systems.fusion.choose_weight`). No test label of fold *k* enters the choice.

The test posteriors are the ones the two component runs of fold *k* recorded in
their ``predictions.csv`` (rounded to 5 decimals), so the system needs no
checkpoint and runs from committed run folders alone. That rounding is checked:
re-fusing the recorded posteriors at the per-fold run's own weight must give the
per-fold run's recorded predictions (agreement ≥ 98 %, recorded in the run).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serlib.core.hashing import sha256_file
from serlib.systems import fusion
from serlib.systems.base import Shipped
from serlib.systems.fusion import (
    ENCODER,
    NETWORK,
    WEIGHTS,
    FusedPredictor,
    FusionError,
    best_weight,
    component_folder,
    fuse,
    write_fused_run,
)

if TYPE_CHECKING:  # pragma: no cover
    from serlib.config import Config
    from serlib.features.prepared import Prepared

PER_FOLD = "whisper-fusion"
POOLED = "whisper-fusion-pooled"


def pooled_weight(curves: Sequence[Mapping[str, float]],
                  weights: tuple[float, ...] = WEIGHTS) -> tuple[float, dict[str, float]]:
    """The weight with the best mean validation UAR over ``curves`` (ties: the larger weight) and the mean curve."""
    if not curves:
        raise FusionError("no validation curve to pool")
    mean = {str(w): float(np.mean([c[str(w)] for c in curves])) for w in sorted(weights)}
    return best_weight(mean, weights), mean


def per_fold_runs(out_dir: str | Path, n_folds: int) -> dict[int, dict[str, Any]]:
    """``metrics.json`` of the ``whisper-fusion`` run of every fold of this seed, by fold number (all must exist)."""
    out = Path(out_dir)
    runs, missing = {}, []
    for fold in range(1, n_folds + 1):
        path = out.parents[2] / PER_FOLD / f"fold-{fold}" / out.name / "metrics.json"
        if path.is_file():
            runs[fold] = json.loads(path.read_text())
        else:
            missing.append(str(fold))
    if missing:
        corpus, seed = out.parts[-5], out.name.split("-")[1]
        raise FusionError(f"{POOLED} pools the validation curves of every fold, but {PER_FOLD} has no run for "
                          f"fold(s) {', '.join(missing)} of seed {seed}: run serlib train --config "
                          f"configs/{corpus}.yaml --model {PER_FOLD} --seeds {seed} first")
    return runs


def usable_curves(runs: Mapping[int, Mapping[str, Any]], test_speakers: set[str]) -> dict[int, dict[str, float]]:
    """The validation curves of the folds whose validation speakers are none of ``test_speakers``."""
    return {fold: dict(m["val_search"]) for fold, m in runs.items()
            if not set(map(str, m["speakers"]["val"])) & test_speakers}


def recorded_posteriors(folder: Path, classes: Sequence[str]) -> pd.DataFrame:
    """A component run's recorded test predictions (``utt_id``, ``speaker``, ``true``, ``p_<class>``), by clip id."""
    path = folder / "predictions.csv"
    if not path.is_file():
        raise FusionError(f"{POOLED} needs the finished {folder.parts[-3]} run in {folder}: train it first")
    table = pd.read_csv(path, dtype={"utt_id": str, "speaker": str}).set_index("utt_id")
    columns = [f"p_{c}" for c in classes]
    if not set(columns) <= set(table.columns):
        raise FusionError(f"{path} holds no posteriors for the classes {list(classes)}")
    return table[["speaker", "true", *columns]]


def _rounding_agreement(per_fold: Path, encoder: np.ndarray, network: np.ndarray, ids: pd.Index,
                        classes: Sequence[str], weight: float) -> float:
    """Share of clips where re-fusing the recorded posteriors gives the per-fold run's recorded prediction."""
    recorded = pd.read_csv(per_fold / "predictions.csv", dtype={"utt_id": str}).set_index("utt_id")["predicted"]
    agree = float(np.mean(recorded.reindex(ids).to_numpy() == np.array(classes)[fuse(encoder, network, weight).argmax(1)]))
    if agree < 0.98:
        raise FusionError(f"the recorded posteriors of fold {per_fold.parent.name} no longer reproduce {PER_FOLD}'s "
                          f"predictions ({agree:.1%} agree): retrain the components with --retrain")
    return agree


def fit_pooled_fusion(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: str | Path, *,
                      extra_provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fuse this fold's recorded component posteriors with the pooled validation weight; writes the run folder."""
    from serlib.features.prepared import fold_count

    start = time.perf_counter()
    out = Path(out_dir)
    fold = int(out.parent.name.split("-")[1])
    runs = per_fold_runs(out, fold_count(prepared.features, config))
    classes = list(runs[fold]["labels"])
    usable = prepared.features.usable
    test_ids = set(usable.loc[assignment.reindex(usable.index).to_numpy() == "test", "utt_id"].astype(str))
    folders = {m: component_folder(out, m) for m in (ENCODER, NETWORK, PER_FOLD)}
    tables = {m: recorded_posteriors(folders[m], classes) for m in (ENCODER, NETWORK)}
    ids = tables[ENCODER].index
    if set(ids) != set(tables[NETWORK].index) or not set(ids) <= test_ids:
        raise FusionError(f"the {ENCODER} and {NETWORK} runs of {out.parent.name}/{out.name} were not tested on this "
                          f"fold's test clips: retrain them with --retrain")
    test_speakers = set(tables[ENCODER]["speaker"])
    curves = usable_curves(runs, test_speakers)
    weight, mean_curve = pooled_weight(list(curves.values()))
    probs = {m: tables[m].loc[ids, [f"p_{c}" for c in classes]].to_numpy(float) for m in tables}
    agreement = _rounding_agreement(folders[PER_FOLD], probs[ENCODER], probs[NETWORK], ids, classes,
                                    float(runs[fold]["encoder_weight"]))
    components = {m: {"run": f"{m}/{out.parent.name}/{out.name}",
                      "predictions_sha256": sha256_file(folders[m] / "predictions.csv")} for m in (ENCODER, NETWORK)}
    request = folders[PER_FOLD] / "request.json"
    components[PER_FOLD] = {"runs": [f"{PER_FOLD}/fold-{f}/{out.name}" for f in sorted(curves)],
                            "request_sha256": sha256_file(request) if request.is_file() else None,
                            "rounding_agreement": round(agreement, 4)}
    test = tables[ENCODER].loc[ids, ["speaker", "true"]].reset_index()
    out.mkdir(parents=True, exist_ok=True)
    return write_fused_run(out, config, prepared.features.fingerprint, classes, test,
                           fuse(probs[ENCODER], probs[NETWORK], weight), model=POOLED, metrics={
                               "sizes": {**runs[fold]["sizes"]}, "speakers": {**runs[fold]["speakers"]},
                               "best_val_uar": mean_curve[str(weight)], "encoder_weight": weight,
                               "val_search": mean_curve, "weights_tried": list(WEIGHTS),
                               "pooled_folds": sorted(curves), "components": components},
                           provenance=dict(components=components, wall_seconds=round(time.perf_counter() - start, 2),
                                           **(extra_provenance or {})))


# ----------------------------------------------------------------------------- the System functions


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Fuse this fold's recorded component posteriors at the pooled weight; writes the run folder."""
    return fit_pooled_fusion(prepared, split, config, run_dir, extra_provenance=extra)


def predictor(source: Path | Shipped) -> FusedPredictor:
    """The same predictor as a per-fold fusion's: the components and this run's weight."""
    return fusion.predictor(source)


def export(run: Path, half_min_values: int | None) -> Shipped:
    """The same shipped form as a per-fold fusion's."""
    return fusion.export(run, half_min_values)

__all__ = ["PER_FOLD", "POOLED", "pooled_weight", "per_fold_runs", "usable_curves", "recorded_posteriors",
           "fit_pooled_fusion", "fit", "predictor", "export"]
