"""A small torch head on the frozen Whisper-base encoder: learned layer weights + an MLP.

SUPERB/EmoBox-style: the pooled (mean + std) vectors of the encoder layers are
z-scored per layer with training statistics, mixed with softmax-normalised
learned layer weights, and classified by a one-hidden-layer MLP. Training uses
class-weighted, label-smoothed cross-entropy with AdamW, and early stopping on
the validation speakers' UAR; the best epoch is tested once. Unlike the linear
heads it depends on the seed (initialisation, batch order, dropout).

Which layers enter (``encoder.layer``) is chosen on the validation speakers:
``auto`` trains the head on the learned mix of every layer and on the last
layer alone and keeps the better (version 2 of the system; version 1 always
mixed every layer, which on SAVEE's two training speakers learned speaker cues
of the middle layers: validation UAR 41 % mixed against 81 % last layer
alone). ``mean`` is the mix of every layer, ``last`` or an index one layer.

Frames are pooled before the head, so this head has no attentive pooling over
time; :mod:`serlib.systems.whisper_attention` is the frame-level head that has it (tried
on RAVDESS validation speakers, where it did worse).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serlib.systems.base import CannotPredictFiles, FilePredictor, Shipped
from serlib.systems.whisper_linear import WhisperInput

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from serlib.config import Config
    from serlib.features.prepared import Prepared

HIDDEN, DROPOUT, LR, WEIGHT_DECAY, BATCH, MAX_EPOCHS, PATIENCE = 256, 0.3, 1e-3, 1e-2, 32, 150, 20


def build_mlp_head(n_layers: int, dim: int, n_classes: int) -> "torch.nn.Module":
    """The untrained head: softmax weights over ``n_layers`` inputs of ``dim`` values, then the MLP."""
    import torch
    from torch import nn

    class LayerWeightedMLP(nn.Module):
        """``(batch, layers, dim)`` z-scored pooled features -> logits."""

        def __init__(self) -> None:
            super().__init__()
            self.layer_logits = nn.Parameter(torch.zeros(n_layers))
            self.dropout = nn.Dropout(DROPOUT)
            self.mlp = nn.Sequential(nn.Linear(dim, HIDDEN), nn.GELU(), nn.Dropout(DROPOUT), nn.Linear(HIDDEN, n_classes))

        def layer_weights(self) -> torch.Tensor:
            return torch.softmax(self.layer_logits, dim=0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mixed = (self.layer_weights()[None, :, None] * x).sum(dim=1)
            return self.mlp(self.dropout(mixed))

    return LayerWeightedMLP()


def train_head(model: "torch.nn.Module", logits, y: dict[str, np.ndarray], n_classes: int, seed: int, *,
               max_epochs: int = MAX_EPOCHS, patience: int = PATIENCE,
               eval_batch: int | None = None, scored: int | None = None, batch: int = BATCH,
               sample_weights: np.ndarray | None = None) -> tuple[Any, list[dict]]:
    """Fit ``model`` on train, keep the epoch with the best validation UAR; returns (model at that epoch, history).

    ``logits(part, rows)`` gives the model's logits for the clips ``rows`` (positions
    in ``y[part]``) of a part; training uses class-weighted, label-smoothed
    cross-entropy with AdamW in shuffled batches of ``batch`` clips (default :data:`BATCH`), and stops
    after ``patience`` epochs without a better validation UAR. Validation clips
    are scored ``eval_batch`` at a time (``None``: all at once), on the first
    ``scored`` outputs only (``None``: all; the others are masked extra classes).
    ``sample_weights`` (one per training clip) multiply the class weights.
    """
    import torch
    import torch.nn.functional as F

    from serlib.evaluation.metrics import unweighted_average_recall

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    counts = np.bincount(y["train"], minlength=n_classes).astype(np.float32)
    weights = torch.tensor(np.where(counts > 0, len(y["train"]) / (n_classes * np.maximum(counts, 1)), 0.0),
                           dtype=torch.float32)
    yt = torch.from_numpy(y["train"])
    sw = None if sample_weights is None else torch.as_tensor(sample_weights, dtype=torch.float32)
    best, best_state, bad, history = -1.0, None, 0, []
    for epoch in range(max_epochs):
        model.train()
        order = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            if sw is None:
                loss = F.cross_entropy(logits("train", idx.numpy()), yt[idx], weight=weights, label_smoothing=0.1)
            else:  # the weighted mean, as cross_entropy takes it with class weights alone
                each = F.cross_entropy(logits("train", idx.numpy()), yt[idx], weight=weights, label_smoothing=0.1,
                                       reduction="none")
                loss = (each * sw[idx]).sum() / (weights[yt[idx]] * sw[idx]).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        val_logits = predict_logits(model, logits, "val", len(y["val"]), eval_batch)
        val_uar = unweighted_average_recall(y["val"], val_logits[:, :scored].argmax(1))
        history.append({"epoch": epoch + 1, "train_loss": total / len(yt), "val_uar": val_uar})
        if val_uar > best:
            best, best_state, bad = val_uar, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model, history


def predict_logits(model: "torch.nn.Module", logits, part: str, n: int, batch: int | None = None) -> np.ndarray:
    """``(n, n_classes)`` logits of the ``n`` clips of a part, in eval mode, ``batch`` at a time (``None``: all)."""
    import torch

    model.eval()
    step = batch or max(n, 1)
    with torch.no_grad():
        return np.concatenate([logits(part, np.arange(lo, min(lo + step, n))).numpy() for lo in range(0, n, step)])


def train_mlp(X: dict[str, np.ndarray], y: dict[str, np.ndarray], n_classes: int, seed: int, *,
              scored: int | None = None, batch: int = BATCH,
              sample_weights: np.ndarray | None = None) -> tuple[Any, list[dict]]:
    """The MLP head on pooled ``(n, layers, dim)`` inputs, trained by :func:`train_head` (keywords: see there)."""
    import torch

    torch.manual_seed(seed)
    model = build_mlp_head(X["train"].shape[1], X["train"].shape[2], n_classes)
    tensors = {p: torch.from_numpy(x) for p, x in X.items()}
    return train_head(model, lambda part, rows: model(tensors[part][torch.from_numpy(np.asarray(rows))]),
                      y, n_classes, seed, scored=scored, batch=batch, sample_weights=sample_weights)


def layer_options(n_layers: int, choice: int | str) -> dict[str, list[int]]:
    """The input options tried on validation speakers, by name: ``all`` (the learned mix) and/or one layer."""
    if choice == "auto":
        return {"all": list(range(n_layers)), "last": [n_layers - 1]}
    if choice == "mean":
        return {"all": list(range(n_layers))}
    index = n_layers - 1 if choice == "last" else int(choice)
    if not 0 <= index < n_layers:
        raise ValueError(f"encoder.layer={choice} but this encoder has layers 0..{n_layers - 1}")
    return {"last" if index == n_layers - 1 else f"layer-{index}": [index]}


def choose_layers(n_layers: int, choice: int | str, train_option) -> tuple[str, list[int], Any, list[dict], dict[str, float]]:
    """Train one head per option of :func:`layer_options`; keep the best validation UAR (ties: the first).

    ``train_option(layers) -> (model, history)`` trains a head on those layers.
    Returns the chosen option's name, layers, model and history, and every option's best validation UAR.
    """
    best = None
    search: dict[str, float] = {}
    for name, layers in layer_options(n_layers, choice).items():
        model, history = train_option(layers)
        search[name] = max(h["val_uar"] for h in history)
        if best is None or search[name] > search[best[0]]:
            best = (name, layers, model, history)
    return (*best, search)


def save_mlp_head(path: str | Path, model: Any, layers: list[int], mean: np.ndarray, std: np.ndarray, *,
                  scored: int | None = None) -> Path:
    """Write the head as safetensors (no pickle): its state, ``input_layers`` and their training ``input_mean``/``input_std``.

    ``scored`` keeps the first outputs only: the rows of masked extra classes leave
    the last layer, so the saved head's softmax is the one taken over the scored classes.

    What :class:`serlib.systems.whisper_mlp.EncoderMLPPredictor` needs besides the encoder
    (:func:`serlib.serve.shipped.export_run` ships it).
    """
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach() for k, v in model.state_dict().items()}
    if scored is not None:
        last = f"mlp.{len(model.mlp) - 1}"  # the output layer
        for name in (f"{last}.weight", f"{last}.bias"):
            state[name] = state[name][:scored]
    save_file({**{k: v.contiguous() for k, v in state.items()},
               "input_layers": torch.tensor(layers, dtype=torch.int64),
               "input_mean": torch.from_numpy(np.ascontiguousarray(mean, dtype=np.float32)),
               "input_std": torch.from_numpy(np.ascontiguousarray(std, dtype=np.float32))}, str(path))
    return Path(path)


def head_split(usable: pd.DataFrame, assignment: pd.Series, config: "Config", ok: np.ndarray,
               name: str) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Classes, row positions per part and integer labels per part for a head on encoder features.

    Clips the encoder could not read (``~ok``) leave train and validation but stay
    in test, so every system is scored on the same test clips.
    """
    from serlib.systems.base import select_classes, split_rows

    classes = select_classes(usable, config.data.classes)
    rows = split_rows(usable, assignment, classes)
    rows = {p: r[ok[r]] if p != "test" else r for p, r in rows.items()}
    for part in ("train", "val", "test"):
        if len(rows[part]) == 0:
            raise ValueError(f"{name}: the {part} part has no clips with encoder features")
    code = {c: i for i, c in enumerate(classes)}
    labels = usable["label"].to_numpy()
    y = {p: np.array([code[v] for v in labels[r]], dtype=np.int64) for p, r in rows.items()}
    return classes, rows, y


def write_head_run(out: Path, config: "Config", prepared: "Prepared", usable: pd.DataFrame, *, classes: list[str],
                   rows: dict[str, np.ndarray], y: dict[str, np.ndarray], probs: np.ndarray, val_pred: np.ndarray,
                   history: list[dict], metrics: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """Score a trained head's test posteriors ``probs`` and write its run folder; returns ``metrics.json``'s content.

    ``metrics`` adds the head's own entries (model, layers, hyperparameters) to the shared ones.
    """
    from serlib.evaluation.metrics import bootstrap_ci, classification_report_dict
    from serlib.systems.base import write_run

    y_true = [classes[i] for i in y["test"]]
    y_pred = [classes[i] for i in probs.argmax(1)]
    test_report = classification_report_dict(y_true, y_pred, classes)
    val_report = classification_report_dict([classes[i] for i in y["val"]], [classes[i] for i in val_pred], classes)
    test_rows = rows["test"]
    predictions = pd.DataFrame({"utt_id": usable["utt_id"].to_numpy()[test_rows].astype(str),
                                "speaker": usable["speaker"].to_numpy()[test_rows].astype(str),
                                "true": y_true, "predicted": y_pred})
    for k, c in enumerate(classes):
        predictions[f"p_{c}"] = probs[:, k].round(5)
    pd.DataFrame(history).to_csv(out / "history.csv", index=False)
    metrics = {
        "model": metrics.pop("model"), "labels": classes,
        "sizes": {p: int(len(r)) for p, r in rows.items()},
        "speakers": {p: sorted(set(usable["speaker"].to_numpy()[r].astype(str))) for p, r in rows.items()},
        "best_val_uar": val_report["uar"], "best_epoch": int(np.argmax([h["val_uar"] for h in history])) + 1,
        "epochs_run": len(history), **metrics,
        "val": val_report, "test": test_report,
        "test_uar_ci95": list(bootstrap_ci(y_true, y_pred, seed=config.seed)),
    }
    write_run(out, config, metrics, predictions, dict(seed=config.seed, device="cpu",
                                                       data_fingerprint=prepared.fingerprint, **provenance))
    return metrics


def fit_encoder_mlp(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: str | Path, *,
                    model_name: str = "whisper-mlp", extra_provenance: dict[str, Any] | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """Train and test the layer-weighted MLP head on one split; writes the run folder (with ``head.safetensors``)."""
    import torch

    from serlib.systems.whisper_linear import aligned_features, encoder_embeddings

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    embeddings = encoder_embeddings(prepared, config, progress=progress)
    usable = prepared.features.usable
    feats = aligned_features(embeddings, usable)
    classes, rows, y = head_split(usable, assignment, config, ~np.isnan(feats).any(axis=(1, 2)), model_name)
    mean = feats[rows["train"]].mean(axis=0)
    std = feats[rows["train"]].std(axis=0) + 1e-5
    X = {p: np.nan_to_num((feats[r] - mean) / std).astype(np.float32) for p, r in rows.items()}
    chosen, layers, model, history, search = choose_layers(
        X["train"].shape[1], config.encoder.layer,
        lambda layers: train_mlp({p: x[:, layers] for p, x in X.items()}, y, len(classes), config.seed))
    X = {p: x[:, layers] for p, x in X.items()}
    mean, std = mean[layers], std[layers]
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(X["test"])), dim=1).numpy()
        val_pred = model(torch.from_numpy(X["val"])).argmax(1).numpy()
    save_mlp_head(out / "head.safetensors", model, layers, mean, std)
    return write_head_run(out, config, prepared, usable, classes=classes, rows=rows, y=y, probs=probs,
                          val_pred=val_pred, history=history, metrics={
        "model": model_name, "input_layers": chosen, "layers": layers, "layer_search": search,
        "layer_weights": [round(float(w), 4) for w in model.layer_weights().detach()],
        "head": {"hidden": HIDDEN, "dropout": DROPOUT, "lr": LR, "weight_decay": WEIGHT_DECAY, "batch": BATCH,
                 "patience": PATIENCE},
        "feature_set": f"whisper-base/{config.encoder.mode}/{'all-layers' if chosen == 'all' else chosen}"},
        provenance=dict(feature_cache=embeddings.key, encoder={**embeddings.encoder, "embedding_cache": embeddings.key},
                        wall_seconds=round(time.perf_counter() - start, 2), **(extra_provenance or {})))


@dataclass
class EncoderMLPPredictor(WhisperInput, FilePredictor):
    """The ``whisper-mlp`` head: per-layer z-scores, learned layer weights, a one-hidden-layer MLP.

    ``tensors`` holds the head's state (``layer_logits``, ``mlp.*``) and the
    training statistics ``input_mean``/``input_std`` of its input ``layers``;
    a feature missing after z-scoring is 0, as in training
    (:mod:`serlib.systems.whisper_mlp`).
    """

    labels: list[str]
    tensors: dict[str, np.ndarray]
    layers: list[int]  # the encoder layers the head reads, chosen on validation speakers
    encoder: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> the pooled features of the head's layers, ``(len(layers), 1024)`` (raises AudioError)."""
        return self._pooled(path)[self.layers]

    adapts = True

    def adapted_to(self, arrays: Sequence[np.ndarray]) -> "EncoderMLPPredictor":
        """The head with the files' own per-layer statistics as its input statistics (transductive)."""
        from serlib.systems.base import own_statistics

        mean, std = own_statistics(arrays)
        return replace(self, tensors={**self.tensors, "input_mean": mean.astype(np.float32),
                                      "input_std": std.astype(np.float32)})

    def module(self) -> "torch.nn.Module":
        import torch

        from serlib.systems.whisper_mlp import build_mlp_head

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
            return torch.softmax(self.module()(torch.from_numpy(Z)), dim=1).numpy().astype(np.float64)


# ----------------------------------------------------------------------------- the System functions


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Train and test the head on one split; writes the run folder (with ``head.safetensors``)."""
    return fit_encoder_mlp(prepared, split, config, run_dir, extra_provenance=extra, progress=progress)


def export(run: Path, half_min_values: int | None) -> Shipped:
    """The head's state and input statistics (its first matrix in float16), its layers and its encoder."""
    from serlib.core.runs import read_json
    from serlib.core.tensors import ShippedModelError, read_tensors, store_dtype
    from serlib.systems.whisper_linear import encoder_record, head_file

    arrays = read_tensors(head_file(run))
    metrics = read_json(run / "metrics.json")
    prov = read_json(run / "provenance.json") if (run / "provenance.json").is_file() else {}
    if "input_layers" not in arrays or not metrics.get("labels"):
        raise ShippedModelError(f"{run}: a whisper-mlp run of version 1 (its head does not record its input layers): "
                                "re-run this fold with --retrain")
    return Shipped({"labels": [str(c) for c in metrics["labels"]], "layers": [int(i) for i in arrays["input_layers"]],
                    "input_layers": metrics.get("input_layers"), "layer_search": metrics.get("layer_search"),
                    "encoder": encoder_record(run, prov), "head": metrics.get("head"),
                    "feature_set": metrics.get("feature_set")},
                   {k: store_dtype(v, half_min_values) for k, v in arrays.items()})


def predictor(source: Path | Shipped) -> EncoderMLPPredictor:
    """The head of a run folder, or of a shipped ``encoder-mlp`` model (tensors that do not fit fail here)."""
    from serlib.core.tensors import ShippedModelError

    if not isinstance(source, Shipped):
        try:
            source = export(source, None)
        except ShippedModelError as err:
            raise CannotPredictFiles(str(err)) from None
    meta = source.meta
    f32 = {k: v.astype(np.float32) for k, v in source.tensors.items() if k != "input_layers"}
    loaded = EncoderMLPPredictor(list(meta["labels"]), f32, [int(i) for i in meta["layers"]], dict(meta["encoder"]),
                                 dict(meta))
    loaded.module()
    return loaded


__all__ = ["build_mlp_head", "choose_layers", "fit_encoder_mlp", "head_split", "layer_options", "predict_logits",
           "save_mlp_head", "train_head", "write_head_run"]
