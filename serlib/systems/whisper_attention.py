"""A frame-level torch head on the frozen Whisper-base encoder: layer weights, attentive statistics pooling, an MLP.

Where :mod:`serlib.systems.whisper_mlp` pools each layer's frames to mean + std before
the head, this head sees the frames (:mod:`serlib.features.encoders.frames`, 25 Hz):

1. every layer's frames are z-scored with the training frames' statistics and
   mixed with softmax-normalised learned layer weights (SUPERB/EmoBox);
2. a linear projection (512 -> 256, GELU) per frame;
3. attentive statistics pooling (Okabe et al., 2018; :class:`serlib.systems.tier1.network.AttentiveStatsPooling`):
   the attention-weighted mean and standard deviation over the clip's frames;
4. a one-hidden-layer MLP.

Training is the MLP head's (:func:`serlib.systems.whisper_mlp.train_head`: AdamW,
class-weighted label-smoothed cross-entropy, early stopping on the validation
speakers' UAR), and which layers enter is chosen on validation speakers as
there (:func:`serlib.systems.whisper_mlp.choose_layers`).

Tried on RAVDESS (EmoBox folds, seed 0) it did worse on the validation speakers
than the pooled MLP head (mean 72.6 % against 75.9 %), so the report's systems
do not include it; it stays registered (``--model whisper-attn``) for other corpora and encoders.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from serlib.systems.base import CannotPredictFiles, FilePredictor
from serlib.systems.whisper_linear import WhisperInput

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from serlib.config import Config
    from serlib.features.encoders.frames import FrameSet
    from serlib.features.prepared import Prepared

PROJECTION, HIDDEN, DROPOUT, STRIDE, MAX_EPOCHS, PATIENCE = 256, 256, 0.3, 2, 60, 12
EVAL_BATCH = 64  # clips scored at once (padded frames of every layer: memory, not results)


def build_attentive_head(n_layers: int, dim: int, n_classes: int) -> "torch.nn.Module":
    """The untrained head: ``(batch, time, layers, dim)`` z-scored frames and a ``(batch, time)`` mask -> logits."""
    import torch
    from torch import nn

    from serlib.systems.tier1.network import AttentiveStatsPooling

    class LayerWeightedAttentiveHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer_logits = nn.Parameter(torch.zeros(n_layers))
            self.project = nn.Sequential(nn.Linear(dim, PROJECTION), nn.GELU())
            self.pool = AttentiveStatsPooling(PROJECTION)
            self.mlp = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(2 * PROJECTION, HIDDEN), nn.GELU(),
                                     nn.Dropout(DROPOUT), nn.Linear(HIDDEN, n_classes))

        def layer_weights(self) -> torch.Tensor:
            return torch.softmax(self.layer_logits, dim=0)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            mixed = torch.einsum("btld,l->btd", x, self.layer_weights())
            return self.mlp(self.pool(self.project(mixed), mask))

    return LayerWeightedAttentiveHead()


class FrameBatches:
    """Padded, z-scored frame batches of a :class:`~serlib.features.encoders.frames.FrameSet`.

    ``clips`` maps a part to FrameSet row indices (-1: no frames); ``mean``/``std`` ``(layers, dim)``
    are the training frames' statistics; ``layers`` selects the inputs.
    """

    def __init__(self, frames: "FrameSet", clips: dict[str, np.ndarray], mean: np.ndarray, std: np.ndarray,
                 layers: list[int] | None = None) -> None:
        self.frames, self.clips = frames, clips
        self.layers = list(range(frames.n_layers)) if layers is None else list(layers)
        self.mean = mean[self.layers].astype(np.float32)
        self.std = std[self.layers].astype(np.float32)

    def __call__(self, part: str, rows: np.ndarray) -> tuple["torch.Tensor", "torch.Tensor"]:
        """``(x, mask)`` of the clips at positions ``rows`` of ``part``."""
        import torch

        index = self.clips[part][np.asarray(rows)]
        # a test clip the encoder could not read (index -1) enters as one zero frame: the training mean
        lengths = np.maximum(np.where(index >= 0, self.frames.lengths[index], 0), 1)
        x = np.zeros((len(index), int(lengths.max()), len(self.layers), self.std.shape[-1]), dtype=np.float32)
        for b, i in enumerate(index):
            if i >= 0:
                clip = self.frames.clip(int(i))[:, self.layers]
                x[b, : len(clip)] = (clip - self.mean) / self.std
        mask = np.arange(x.shape[1])[None, :] < lengths[:, None]
        return torch.from_numpy(x), torch.from_numpy(mask)


def frame_statistics(frames: "FrameSet", clips: np.ndarray, group: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation ``(layers, dim)`` over every frame of ``clips`` (float64 sums, ``group`` clips at a time)."""
    total = np.zeros(frames.frames.shape[1:], dtype=np.float64)
    squares = np.zeros_like(total)
    count = 0
    clips = [int(i) for i in clips if i >= 0]
    for lo in range(0, len(clips), group):
        block = np.concatenate([frames.clip(i) for i in clips[lo : lo + group]]).astype(np.float64)
        total += block.sum(axis=0)
        squares += (block * block).sum(axis=0)
        count += len(block)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean * mean, 0.0)) + 1e-5
    return mean.astype(np.float32), std.astype(np.float32)


def encoder_frames(prepared: "Prepared", config: "Config", *, progress: bool = False) -> "FrameSet":
    """Every clip's encoder frames (cached on disk; memoised on ``prepared`` for the folds and seeds of a protocol).

    Only the torch backend has the frames of every layer; ``encoder.backend: ct2`` is refused before any work.
    """
    from serlib.features.encoders.frames import compute_frame_embeddings
    from serlib.systems.whisper_linear import prepared_cache_root

    if config.encoder.backend != "torch":
        raise ValueError(f"whisper-attn reads every encoder layer's frames, which only encoder.backend torch has "
                         f"(got {config.encoder.backend!r}: CTranslate2 returns the last layer only)")

    memo = prepared.__dict__.setdefault("_frames", {})
    key = (config.encoder.mode, STRIDE)
    if key not in memo:
        memo[key] = compute_frame_embeddings(prepared.scan.manifest, mode=config.encoder.mode, stride=STRIDE,
                                             cache_dir=prepared_cache_root(prepared),
                                             threads=config.train.num_threads or None,
                                             progress=progress)
    return memo[key]


def train_attentive(batches: FrameBatches, y: dict[str, np.ndarray], n_classes: int, seed: int) -> tuple[Any, list[dict]]:
    import torch

    from serlib.systems.whisper_mlp import train_head

    torch.manual_seed(seed)
    model = build_attentive_head(len(batches.layers), batches.std.shape[-1], n_classes)
    return train_head(model, lambda part, rows: model(*batches(part, rows)), y, n_classes, seed,
                      max_epochs=MAX_EPOCHS, patience=PATIENCE, eval_batch=EVAL_BATCH)


def fit_encoder_attention(prepared: "Prepared", assignment: pd.Series, config: "Config", out_dir: str | Path, *,
                          model_name: str = "whisper-attn", extra_provenance: dict[str, Any] | None = None,
                          progress: bool = False) -> dict[str, Any]:
    """Train and test the frame-level attentive head on one split; writes the run folder (with ``head.safetensors``)."""
    import torch

    from serlib.systems.tier1.trainer import set_threads
    from serlib.systems.whisper_linear import aligned_rows
    from serlib.systems.whisper_mlp import choose_layers, head_split, predict_logits, save_mlp_head, write_head_run

    start = time.perf_counter()
    set_threads(config.train.num_threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = encoder_frames(prepared, config, progress=progress)
    usable = prepared.features.usable
    at = aligned_rows(frames.manifest, usable)
    ok = (at >= 0) & frames.ok[np.maximum(at, 0)]
    classes, rows, y = head_split(usable, assignment, config, ok, model_name)
    clips = {p: np.where(ok[r], at[r], -1) for p, r in rows.items()}
    mean, std = frame_statistics(frames, clips["train"])

    def train_option(layers: list[int]):
        return train_attentive(FrameBatches(frames, clips, mean, std, layers), y, len(classes), config.seed)

    chosen, layers, model, history, search = choose_layers(frames.n_layers, config.encoder.layer, train_option)
    batches = FrameBatches(frames, clips, mean, std, layers)
    logits = lambda part, r: model(*batches(part, r))  # noqa: E731
    test_logits = predict_logits(model, logits, "test", len(y["test"]), EVAL_BATCH)
    probs = torch.softmax(torch.from_numpy(test_logits), dim=1).numpy()
    val_pred = predict_logits(model, logits, "val", len(y["val"]), EVAL_BATCH).argmax(1)
    save_mlp_head(out / "head.safetensors", model, layers, batches.mean, batches.std)
    return write_head_run(out, config, prepared, usable, classes=classes, rows=rows, y=y, probs=probs,
                          val_pred=val_pred, history=history, metrics={
        "model": model_name, "input_layers": chosen, "layers": layers, "layer_search": search,
        "layer_weights": [round(float(w), 4) for w in model.layer_weights().detach()],
        "head": {"projection": PROJECTION, "hidden": HIDDEN, "dropout": DROPOUT, "frame_rate_hz": 50 / STRIDE,
                 "max_epochs": MAX_EPOCHS, "patience": PATIENCE, "pooling": "attentive-stats"},
        "feature_set": f"whisper-base/{config.encoder.mode}/frames/{'all-layers' if chosen == 'all' else chosen}"},
        provenance=dict(feature_cache=frames.key, encoder={**frames.encoder, "frame_cache": frames.key},
                        wall_seconds=round(time.perf_counter() - start, 2), **(extra_provenance or {})))


# ----------------------------------------------------------------------------- the System functions


def fit(prepared: "Prepared", split: pd.Series, config: "Config", run_dir: Path, *, extra: dict[str, Any],
        resume: bool = True, progress: bool = False) -> dict[str, Any]:
    """Train and test the attentive head on one split; writes the run folder (with ``head.safetensors``)."""
    return fit_encoder_attention(prepared, split, config, run_dir, extra_provenance=extra, progress=progress)


@dataclass
class AttentivePredictor(WhisperInput, FilePredictor):
    """Every layer's encoder frames of a file (as cached: averaged ``stride`` at a time, float16) -> the head."""

    labels: list[str]
    tensors: dict[str, np.ndarray]  # the head's state and its input_layers, input_mean, input_std
    encoder: dict[str, Any]
    stride: int
    info: dict[str, Any] = field(default_factory=dict)

    def featurize(self, path: str | Path) -> np.ndarray:
        """Audio file -> ``(frames, layers, 512)`` float16 frames (raises AudioError)."""
        from serlib.data.audio import load_audio
        from serlib.features.encoders.frames import STORAGE, downsample

        wave = load_audio(path, 16000)
        return downsample(self._encoder().frames(wave, self.encoder.get("mode", "own")), self.stride).astype(STORAGE)

    def module(self) -> "torch.nn.Module":
        import torch

        if not hasattr(self, "_module_obj"):
            mean = self.tensors["input_mean"]
            head = build_attentive_head(mean.shape[0], mean.shape[1], len(self.labels))
            head.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in self.tensors.items()
                                  if not k.startswith("input_")}, strict=True)
            self._module_obj = head.eval()
        return self._module_obj

    def predict_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities ``(n, len(labels))``: each clip's frames z-scored with the training statistics."""
        import torch

        layers = [int(i) for i in self.tensors["input_layers"]]
        mean, std = self.tensors["input_mean"].astype(np.float32), self.tensors["input_std"].astype(np.float32)
        out = []
        for clip in arrays:
            x = ((np.asarray(clip)[:, layers].astype(np.float32) - mean) / std)[None]
            mask = np.ones(x.shape[:2], dtype=bool)
            with torch.no_grad():
                logits = self.module()(torch.from_numpy(x), torch.from_numpy(mask))
            out.append(torch.softmax(logits, dim=1).numpy()[0])
        return np.stack(out).astype(np.float64)


def predictor(source: Path) -> AttentivePredictor:
    """The attentive head of a run folder (``head.safetensors`` is not committed: re-run to get it)."""
    from serlib.core.runs import read_json
    from serlib.core.tensors import ShippedModelError, read_tensors
    from serlib.systems.whisper_linear import encoder_record, head_file

    try:
        tensors = read_tensors(head_file(source))
    except ShippedModelError as err:
        raise CannotPredictFiles(str(err)) from None
    metrics, prov = read_json(source / "metrics.json"), read_json(source / "provenance.json")
    stride = int(((prov.get("encoder") or {}).get("frames") or {}).get("stride", STRIDE))
    loaded = AttentivePredictor([str(c) for c in metrics["labels"]], tensors, encoder_record(source, prov), stride,
                                {"source": str(source)})
    loaded.module()
    return loaded

__all__ = ["AttentivePredictor", "FrameBatches", "build_attentive_head", "encoder_frames", "fit_encoder_attention",
           "frame_statistics", "train_attentive", "fit", "predictor"]
