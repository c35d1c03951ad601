"""Late fusion of the Whisper-base MLP head and Tier-1+ (``whisper-fusion``).

The two systems see the audio differently: frozen Whisper-base features of the
whole clip, and a network trained from scratch on 64 log-mel bands with deltas.
For each fold and seed the fusion reads both component runs of that fold and
seed (``<results>/<corpus>/<protocol>/whisper-mlp|tier1plus/fold-k/seed-s``),
recomputes their class posteriors on the validation and test clips from their
saved weights (the MLP's ``head.safetensors``, Tier-1+'s best checkpoint) and
mixes their logarithms::

    log p  =  w · log p(whisper-mlp)  +  (1 − w) · log p(Tier-1+)   (renormalised)

The weight ``w`` in {0, 0.1, ..., 1} is chosen on the validation speakers, ties
going to the larger ``w`` (towards the encoder alone, the stronger system); the
test clips are scored once. The recomputed test predictions of each component
are checked against the ones its run folder recorded.

Checkpoints are not committed, so a fresh clone reuses committed fusion runs but
cannot compute new ones until Tier-1+ has been trained there; the error says so.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .runs import tested_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    from .config import Config
    from .experiment import Prepared

ENCODER, NETWORK = "whisper-mlp", "tier1plus"
WEIGHTS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
"""The encoder's weight ``w``; the network gets ``1 − w``."""
EPS = 1e-7


class FusionError(ValueError):
    """A component run is missing or does not fit the fusion (one line, naming the folder and the remedy)."""


def component_folder(out_dir: str | Path, model: str) -> Path:
    """The run folder of ``model`` for the same corpus, protocol, fold and seed as the fusion run ``out_dir``."""
    out = Path(out_dir)
    return out.parents[2] / model / out.parent.name / out.name


def fuse(p_encoder: np.ndarray, p_network: np.ndarray, weight: float) -> np.ndarray:
    """Weighted geometric mean of two posterior matrices ``(n, classes)``, renormalised per row."""
    log = weight * np.log(p_encoder + EPS) + (1.0 - weight) * np.log(p_network + EPS)
    log -= log.max(axis=1, keepdims=True)
    p = np.exp(log)
    return p / p.sum(axis=1, keepdims=True)


def choose_weight(p_encoder: np.ndarray, p_network: np.ndarray, y: np.ndarray,
                  weights: tuple[float, ...] = WEIGHTS) -> tuple[float, dict[str, float]]:
    """The weight with the best validation UAR (ties: the larger weight) and the UAR of every weight tried."""
    from .metrics import unweighted_average_recall

    search = {str(w): float(unweighted_average_recall(y, fuse(p_encoder, p_network, w).argmax(1)))
              for w in sorted(weights)}
    return best_weight(search, weights), search


def best_weight(curve: dict[str, float], weights: tuple[float, ...] = WEIGHTS) -> float:
    """The weight with the highest validation UAR in ``curve`` (keyed ``str(w)``); ties go to the larger weight."""
    return float(max(sorted(weights, reverse=True), key=lambda w: curve[str(w)]))


def _require(folder: Path, what: str, pattern: str) -> Path:
    found = sorted(folder.glob(pattern)) if (folder / "metrics.json").is_file() else []
    if not found:
        fold, seed = folder.parent.name.split("-")[1], folder.name.split("-")[1]
        why = " (checkpoints are not committed)" if what.endswith("checkpoint") else ""
        corpus, model = folder.parts[-5], folder.parts[-3]
        raise FusionError(f"whisper-fusion needs the finished {model} run with its {what} in {folder}{why}: train "
                          f"it first, e.g. serlib train --config configs/{corpus}.yaml --model {model} --fold {fold} "
                          f"--seeds {seed} (add --retrain to replace a run without its {what})")
    return found[-1]


def encoder_posteriors(folder: Path, feats: np.ndarray, labels: list[str]) -> tuple[np.ndarray, Path]:
    """The ``whisper-mlp`` run's posteriors for pooled features ``(n, layers, dims)``; returns (probs, head file)."""
    from safetensors.numpy import load_file

    from .inference import EncoderMLPPredictor

    head = _require(folder, "head.safetensors", "head.safetensors")
    tensors = load_file(str(head))
    layers = [int(i) for i in tensors["input_layers"]]
    predictor = EncoderMLPPredictor(labels=labels, tensors=tensors, layers=layers, encoder={})
    return predictor.predict_arrays(list(feats[:, layers])), head


def network_posteriors(folder: Path, prepared: "Prepared", utt_ids: np.ndarray,
                       labels: list[str]) -> tuple[np.ndarray, Path]:
    """The Tier-1+ run's posteriors for ``utt_ids`` from the checkpoint it tested; returns (probs, checkpoint)."""
    from .config import load_config
    from .encoder_heads import prepared_cache_root
    from .features import prepare_features
    from .inference import Predictor

    _require(folder, "best checkpoint", "best_uar_*.pt")  # a finished run with its checkpoints, or one line
    ckpt = tested_checkpoint(folder)  # the weights it tested (the averaged ones of an average_last run)
    predictor = Predictor.load(ckpt)
    if list(predictor.labels) != labels:
        raise FusionError(f"{ckpt} predicts {predictor.labels}, the fusion needs {labels}")
    memo = prepared.__dict__.setdefault("_fusion_features", {})
    config = load_config(folder / "config.yaml")
    key = str(config.to_dict()["features"]) + str(config.to_dict()["preprocess"])
    if key not in memo:
        memo[key] = prepare_features(prepared.scan.manifest, config, cache_dir=prepared_cache_root(prepared),
                                     workers=1, augment=False, progress=False)
    features = memo[key].features
    return predictor.predict_arrays([features[u] for u in utt_ids]), ckpt


def _check_recorded(folder: Path, utt_ids: np.ndarray, probs: np.ndarray, labels: list[str]) -> float:
    """Share of test clips whose recomputed prediction is the one the component's run folder recorded."""
    recorded = pd.read_csv(folder / "predictions.csv", dtype={"utt_id": str}).set_index("utt_id")["predicted"]
    agree = float(np.mean(recorded.reindex(utt_ids).to_numpy() == np.array(labels)[probs.argmax(1)]))
    if agree < 0.98:
        raise FusionError(f"the {folder.parts[-3]} weights in {folder} no longer give the predictions its run "
                          f"recorded ({agree:.1%} agree): retrain it with --retrain")
    return agree


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit_fusion(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: str | Path, *,
               extra_provenance: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Fuse the ``whisper-mlp`` and Tier-1+ runs of this fold and seed; writes the run folder, returns its metrics."""
    from .encoder_heads import aligned_features, encoder_embeddings
    from .encoder_mlp import head_split
    from .metrics import classification_report_dict

    start = time.perf_counter()
    out = Path(out_dir)
    folders = {m: component_folder(out, m) for m in (ENCODER, NETWORK)}
    usable = prepared.features.usable
    feats = aligned_features(encoder_embeddings(prepared, config, progress=progress), usable)
    classes, rows, y = head_split(usable, assignment, config, ~np.isnan(feats).any(axis=(1, 2)), "whisper-fusion")
    ids = {p: usable["utt_id"].to_numpy()[r].astype(str) for p, r in rows.items()}
    probs: dict[str, dict[str, np.ndarray]] = {ENCODER: {}, NETWORK: {}}
    weights_files: dict[str, Path] = {}
    for part in ("val", "test"):
        probs[ENCODER][part], weights_files[ENCODER] = encoder_posteriors(folders[ENCODER], feats[rows[part]], classes)
        probs[NETWORK][part], weights_files[NETWORK] = network_posteriors(folders[NETWORK], prepared, ids[part],
                                                                          classes)
    agreement = {m: _check_recorded(folders[m], ids["test"], probs[m]["test"], classes) for m in folders}
    weight, search = choose_weight(probs[ENCODER]["val"], probs[NETWORK]["val"], y["val"])
    components = {m: {"run": f"{m}/{folders[m].parent.name}/{folders[m].name}", "weights": weights_files[m].name,
                      "weights_sha256": _sha256(weights_files[m]),
                      "request_sha256": _sha256(folders[m] / "request.json") if (folders[m] / "request.json").is_file()
                      else None, "test_agreement": round(agreement[m], 4)} for m in folders}
    out.mkdir(parents=True, exist_ok=True)
    speakers = usable["speaker"].to_numpy().astype(str)
    test = pd.DataFrame({"utt_id": ids["test"], "speaker": speakers[rows["test"]],
                         "true": [classes[i] for i in y["test"]]})
    val_pred = fuse(probs[ENCODER]["val"], probs[NETWORK]["val"], weight).argmax(1)
    val_report = classification_report_dict([classes[i] for i in y["val"]], [classes[i] for i in val_pred], classes)
    return write_fused_run(out, config, prepared.features.fingerprint, classes, test,
                           fuse(probs[ENCODER]["test"], probs[NETWORK]["test"], weight), model="whisper-fusion",
                           val_report=val_report, metrics={
                               "sizes": {p: int(len(r)) for p, r in rows.items()},
                               "speakers": {p: sorted(set(speakers[r])) for p, r in rows.items()},
                               "best_val_uar": val_report["uar"], "best_epoch": None, "encoder_weight": weight,
                               "val_search": search, "weights_tried": list(WEIGHTS), "components": components},
                           provenance=dict(components=components, wall_seconds=round(time.perf_counter() - start, 2),
                                           **(extra_provenance or {})))


def write_fused_run(out: Path, config: "Config", fingerprint: str, classes: list[str], test: pd.DataFrame,
                    test_probs: np.ndarray, *, model: str, metrics: dict[str, Any], provenance: dict[str, Any],
                    val_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score fused test posteriors and write a fusion run folder; returns ``metrics.json``'s content.

    ``test`` holds the test clips' ``utt_id``, ``speaker`` and ``true`` label in
    the row order of ``test_probs``; ``metrics`` the system's own fields (sizes,
    speakers, ``best_val_uar``, the weight and how it was chosen).
    """
    from .baseline import _write_run
    from .metrics import bootstrap_ci, classification_report_dict

    true, pred = list(test["true"]), [classes[i] for i in test_probs.argmax(1)]
    predictions = test[["utt_id", "speaker", "true"]].assign(predicted=pred)
    for k, c in enumerate(classes):
        predictions[f"p_{c}"] = test_probs[:, k].round(5)
    metrics = {"model": model, "labels": classes, **metrics, **({"val": val_report} if val_report else {}),
               "test": classification_report_dict(true, pred, classes),
               "test_uar_ci95": list(bootstrap_ci(true, pred, seed=config.seed))}
    _write_run(out, config, metrics, predictions, dict(seed=config.seed, device="cpu", data_fingerprint=fingerprint,
                                                       **provenance))
    return metrics


__all__ = ["ENCODER", "NETWORK", "WEIGHTS", "FusionError", "component_folder", "fuse", "choose_weight", "best_weight",
           "encoder_posteriors", "network_posteriors", "fit_fusion", "write_fused_run"]
