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

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serlib.core.hashing import sha256_file
from serlib.core.runs import tested_checkpoint
from serlib.systems.base import FilePredictor, Shipped
from serlib.systems.tier1.predictor import Predictor
from serlib.systems.whisper_mlp import EncoderMLPPredictor

if TYPE_CHECKING:  # pragma: no cover
    from serlib.config import Config
    from serlib.features.prepared import Prepared

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
    from serlib.evaluation.metrics import unweighted_average_recall

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

    from serlib.systems.whisper_mlp import EncoderMLPPredictor

    head = _require(folder, "head.safetensors", "head.safetensors")
    tensors = load_file(str(head))
    layers = [int(i) for i in tensors["input_layers"]]
    predictor = EncoderMLPPredictor(labels=labels, tensors=tensors, layers=layers, encoder={})
    return predictor.predict_arrays(list(feats[:, layers])), head


def network_posteriors(folder: Path, prepared: "Prepared", utt_ids: np.ndarray,
                       labels: list[str]) -> tuple[np.ndarray, Path]:
    """The Tier-1+ run's posteriors for ``utt_ids`` from the checkpoint it tested; returns (probs, checkpoint)."""
    from serlib.config import load_config
    from serlib.features.frames import prepare_features
    from serlib.systems.tier1.predictor import Predictor
    from serlib.systems.whisper_linear import prepared_cache_root

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


def fit_fusion(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: str | Path, *,
               extra_provenance: dict[str, Any] | None = None, progress: bool = False) -> dict[str, Any]:
    """Fuse the ``whisper-mlp`` and Tier-1+ runs of this fold and seed; writes the run folder, returns its metrics."""
    from serlib.evaluation.metrics import classification_report_dict
    from serlib.systems.whisper_linear import aligned_features, encoder_embeddings
    from serlib.systems.whisper_mlp import head_split

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
                      "weights_sha256": sha256_file(weights_files[m]),
                      "request_sha256": sha256_file(folders[m] / "request.json") if (folders[m] / "request.json").is_file()
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
    from serlib.evaluation.metrics import bootstrap_ci, classification_report_dict
    from serlib.systems.base import write_run

    true, pred = list(test["true"]), [classes[i] for i in test_probs.argmax(1)]
    predictions = test[["utt_id", "speaker", "true"]].assign(predicted=pred)
    for k, c in enumerate(classes):
        predictions[f"p_{c}"] = test_probs[:, k].round(5)
    metrics = {"model": model, "labels": classes, **metrics, **({"val": val_report} if val_report else {}),
               "test": classification_report_dict(true, pred, classes),
               "test_uar_ci95": list(bootstrap_ci(true, pred, seed=config.seed))}
    write_run(out, config, metrics, predictions, dict(seed=config.seed, device="cpu", data_fingerprint=fingerprint,
                                                       **provenance))
    return metrics


@dataclass
class FusedPredictor(FilePredictor):
    """The late fusion of a ``whisper-mlp`` head and a Tier-1+ network (``whisper-fusion[-pooled]`` runs).

    Each component featurises the file as it was trained; the fused
    probabilities are their weighted geometric mean (:func:`serlib.systems.fusion.fuse`)
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
        from serlib.systems.fusion import fuse

        pairs = list(arrays)
        return fuse(self.encoder.predict_arrays([a for a, _ in pairs]),
                    self.network.predict_arrays([b for _, b in pairs]), self.weight)


# ----------------------------------------------------------------------------- the System functions


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Fuse the ``whisper-mlp`` and Tier-1+ runs of this fold and seed; writes the run folder."""
    return fit_fusion(prepared, split, config, run_dir, extra_provenance=extra, progress=progress)


def export(run: Path, half_min_values: int | None) -> Shipped:
    """Both components of a fusion run, their tensors prefixed ``encoder.`` and ``network.``, and the weight."""
    from serlib.core.runs import read_json
    from serlib.core.tensors import ShippedModelError
    from serlib.systems.tier1 import system as tier1
    from serlib.systems.whisper_mlp import export as export_mlp

    folders = {"encoder": component_folder(run, ENCODER), "network": component_folder(run, NETWORK)}
    for role, folder in folders.items():
        if not (folder / "metrics.json").is_file():
            raise ShippedModelError(f"{run}: its {role} component {folder} is not a finished run")
    encoder, network = export_mlp(folders["encoder"], half_min_values), tier1.export(folders["network"], half_min_values)
    network.meta.pop("_commit", None)
    metrics = read_json(run / "metrics.json")
    labels = [str(c) for c in metrics.get("labels", [])]
    if not labels or encoder.meta["labels"] != labels or network.meta["labels"] != labels:
        raise ShippedModelError(f"{run}: the fusion and its components disagree on the classes")
    for role, part in (("encoder", encoder), ("network", network)):
        part.meta["source_run"] = "/".join(folders[role].resolve().parts[-5:])
    tensors = {**{f"encoder.{k}": v for k, v in encoder.tensors.items()},
               **{f"network.{k}": v for k, v in network.tensors.items()}}
    return Shipped({"labels": labels, "encoder_weight": float(metrics["encoder_weight"]),
                    "val_search": metrics.get("val_search"), "encoder": encoder.meta["encoder"],
                    "components": {"encoder": encoder.meta, "network": network.meta}}, tensors)


def predictor(source: Path | Shipped) -> FusedPredictor:
    """Both components of a fusion run folder (the MLP's head, Tier-1+'s checkpoint), or of a shipped fusion."""
    from serlib.systems.tier1 import system as tier1
    from serlib.systems.whisper_mlp import predictor as mlp_predictor

    if isinstance(source, Shipped):
        meta, parts = source.meta, {role: {} for role in ("encoder", "network")}
        for key, value in source.tensors.items():
            role, _, name = key.partition(".")
            parts.setdefault(role, {})[name] = value
        components = meta["components"]
        return FusedPredictor(list(meta["labels"]), mlp_predictor(Shipped(components["encoder"], parts["encoder"])),
                              tier1.predictor(Shipped(components["network"], parts["network"])),
                              float(meta["encoder_weight"]), dict(meta))
    from serlib.core.runs import read_json

    metrics = read_json(source / "metrics.json")
    return FusedPredictor([str(c) for c in metrics["labels"]], mlp_predictor(component_folder(source, ENCODER)),
                          tier1.predictor(component_folder(source, NETWORK)), float(metrics["encoder_weight"]),
                          {"source": str(source)})

__all__ = ["ENCODER", "NETWORK", "WEIGHTS", "FusionError", "component_folder", "fuse", "choose_weight", "best_weight",
           "encoder_posteriors", "network_posteriors", "fit_fusion", "write_fused_run", "FusedPredictor",
           "fit", "predictor", "export"]
