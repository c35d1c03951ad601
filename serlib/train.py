"""Training the Tier-1 network on cached features: one fold, one seed, one run folder.

What this loop guarantees (each has a test):

* **The learning rate cannot collapse.** Linear warm-up, then cosine decay to a
  floor (``min_lr_ratio`` x lr), stepped once per optimizer step with a horizon
  equal to the real number of steps (``epochs x batches per epoch``). The
  previous system's 2.45e-08 at epoch 9 of 30 came from a horizon that did not
  match the steps taken.
* **Validation is for model selection only**; the test split is touched once,
  with the best-validation-UAR checkpoint, after training.
* **Resume is exact.** Every epoch writes ``last.pt`` (model, optimizer,
  scheduler, history, early-stopping state). All randomness of epoch *e* comes
  from generators seeded by (seed, e), so a killed and resumed run ends with
  the same result as an uninterrupted one.
* **Augmented copies are cached, not computed.** Each epoch every training clip
  contributes one version, drawn among the original and its cached waveform
  augmentations; SpecAugment and mixup act on training batches only.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .augment import mixup, spec_augment
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .config import Config, save_config
from .corpora import CANONICAL_LABELS
from .features import FeatureSet, Normalizer
from .metrics import bootstrap_ci, classification_report_dict
from .model import Tier1SER, count_parameters
from .plots import plot_confusion_matrix, plot_per_class, plot_training_curves
from .reuse import RETRAIN_HINT, StaleRunError, differences, make_request
from .runs import git_commit, provenance, write_json

HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_uar", "val_accuracy", "improved", "seconds"]


# ----------------------------------------------------------------------------- schedule


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps.

    Linear warm-up over ``warmup_steps``, then cosine from 1 to ``min_ratio`` at
    ``total_steps``; never below ``min_ratio``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return max(min_ratio, (step + 1) / warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_ratio: float):
    """A per-step LambdaLR built on :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, min_ratio)
    )


# ----------------------------------------------------------------------------- data


class ClipDataset(Dataset):
    """Utterances as ``(frames, feats)`` tensors; each item may have several cached versions.

    ``variants[i]`` lists the original features of clip *i* first, then its
    cached augmented copies. In training mode (``train=True``) an epoch draws one
    version per clip and a random crop of at most ``max_frames`` frames, both
    from a generator seeded by (seed, epoch, index).
    """

    def __init__(self, variants: list[list[np.ndarray]], labels: np.ndarray, normalizer: Normalizer,
                 *, train: bool = False, max_frames: int = 0, seed: int = 0) -> None:
        self.variants = variants
        self.labels = labels
        self.normalizer = normalizer
        self.train = train
        self.max_frames = max_frames
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.variants)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        versions = self.variants[i]
        x = versions[0]
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            x = versions[int(rng.integers(len(versions)))]
            if self.max_frames and x.shape[0] > self.max_frames:
                start = int(rng.integers(0, x.shape[0] - self.max_frames + 1))
                x = x[start : start + self.max_frames]
        return torch.from_numpy(self.normalizer(x).astype(np.float32)), int(self.labels[i])


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-pad to the longest clip; returns ``(x, lengths, labels)``."""
    lengths = torch.tensor([x.shape[0] for x, _ in batch])
    x = torch.zeros(len(batch), int(lengths.max()), batch[0][0].shape[1])
    for b, (clip, _) in enumerate(batch):
        x[b, : clip.shape[0]] = clip
    return x, lengths, torch.tensor([y for _, y in batch])


@dataclass
class SplitData:
    """The clips of one split: ids, integer labels and feature versions."""

    ids: list[str]
    y: np.ndarray
    variants: list[list[np.ndarray]]
    speakers: list[str]


def select_classes(manifest: pd.DataFrame, classes: list[str] | None) -> list[str]:
    """The configured classes, or every canonical label present, in canonical order."""
    present = set(manifest["label"])
    if classes:
        missing = [c for c in classes if c not in present]
        if missing:
            raise ValueError(f"classes {missing} do not occur in the data (present: {sorted(present)})")
        return list(classes)
    return [c for c in CANONICAL_LABELS if c in present]


def split_data(features: FeatureSet, assignment: pd.Series, classes: list[str], part: str,
               with_augmented: bool = False) -> SplitData:
    """Collect the clips of ``part`` (train/val/test) restricted to ``classes``."""
    usable = features.usable
    usable = usable.assign(split=assignment.reindex(usable.index).values)
    rows = usable[(usable["split"] == part) & usable["label"].isin(classes)]
    index = {c: i for i, c in enumerate(classes)}
    variants = [
        [features.features[u]] + (features.augmented.get(u, []) if with_augmented else [])
        for u in rows["utt_id"]
    ]
    return SplitData(list(rows["utt_id"]), np.array([index[l] for l in rows["label"]], dtype=np.int64),
                     variants, list(rows["speaker"].astype(str)))


# ----------------------------------------------------------------------------- inference


@torch.no_grad()
def predict_proba(model: torch.nn.Module, arrays: list[np.ndarray], normalizer: Normalizer,
                  device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(n, classes)`` for a list of feature arrays (batched by length)."""
    model.eval()
    order = np.argsort([a.shape[0] for a in arrays])
    out = np.zeros((len(arrays), model.classifier.out_features), dtype=np.float32)
    for start in range(0, len(arrays), batch_size):
        idx = order[start : start + batch_size]
        x, lengths, _ = collate([(torch.from_numpy(normalizer(arrays[i]).astype(np.float32)), 0) for i in idx])
        out[idx] = torch.softmax(model(x.to(device), lengths.to(device)), dim=-1).cpu().numpy()
    return out


def evaluate_split(model: torch.nn.Module, data: SplitData, normalizer: Normalizer, classes: list[str],
                   device: str, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[dict[str, Any], np.ndarray, float]:
    """Metrics report, probabilities and mean loss on one split."""
    probs = predict_proba(model, [v[0] for v in data.variants], normalizer, device)
    pred = probs.argmax(1)
    report = classification_report_dict([classes[i] for i in data.y], [classes[i] for i in pred], classes)
    loss = float("nan")
    if loss_fn is not None and len(data.y):
        logp = torch.log(torch.from_numpy(probs).clamp_min(1e-8))
        loss = float(loss_fn(logp, torch.from_numpy(data.y)))
    return report, probs, loss


# ----------------------------------------------------------------------------- training


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def set_threads(n: int) -> int:
    """Use ``n`` torch threads (0: ``$SERLIB_THREADS`` if set, else every core); returns the number set."""
    n = n or int(os.environ.get("SERLIB_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """'Balanced' weights n / (k * count_c), as scikit-learn's compute_class_weight."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**31)


def _load_resume_state(last_path: Path, config: Config, device: str) -> dict[str, Any] | None:
    """The state to resume from ``last.pt``, or ``None`` to start over.

    A damaged ``last.pt`` (truncated by a full disk, a kill during a copy) is
    reported in one line and set aside as ``last.pt.damaged``: the run then trains
    from the start instead of failing on every re-run. A ``last.pt`` written
    under another config raises :class:`serlib.reuse.StaleRunError`: two
    schedules are never mixed.
    """
    if not last_path.is_file():
        return None
    try:
        state = load_checkpoint(last_path, map_location=device)
    except CheckpointError as err:
        os.replace(last_path, last_path.with_name("last.pt.damaged"))
        warnings.warn(f"{err}; set aside as last.pt.damaged, training this run from the start", stacklevel=3)
        return None
    diff = differences(make_request(state.get("config", {}), "", fold=0), make_request(config.to_dict(), "", fold=0))
    if diff:
        raise StaleRunError(f"{last_path} was written under another config ({'; '.join(diff[:4])}); {RETRAIN_HINT}")
    return state


def fit(
    features: FeatureSet,
    assignment: pd.Series,
    config: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    extra_provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one Tier-1 model, evaluate its best checkpoint on test, write the run folder.

    Parameters
    ----------
    features
        From :func:`serlib.features.prepare_features`.
    assignment
        ``"train"/"val"/"test"`` per row of ``features.usable`` (see :mod:`serlib.splits`).
    config
        The resolved experiment config (``config.seed`` is the seed).
    out_dir
        The run folder (created).
    resume
        Continue from ``out_dir/last.pt`` if present.
    stop_after_epochs
        Stop (as if killed) after this many epochs of this call: used by the
        resume test.

    Returns
    -------
    dict
        The contents of ``metrics.json`` (or, when stopped early on purpose, the
        partial state).
    """
    wall_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tc = config.train
    threads = set_threads(tc.num_threads)
    device = resolve_device(tc.device)
    seed = config.seed
    torch.manual_seed(seed)
    commit = git_commit()  # the code this process runs, recorded before anything can change the tree

    classes = select_classes(features.usable, config.data.classes)
    train = split_data(features, assignment, classes, "train", with_augmented=config.wave_augment.enabled)
    val = split_data(features, assignment, classes, "val")
    test = split_data(features, assignment, classes, "test")
    if not train.ids or not val.ids or not test.ids:
        raise ValueError(f"empty split: train={len(train.ids)} val={len(val.ids)} test={len(test.ids)}")
    normalizer = Normalizer.fit(v[0] for v in train.variants)
    n_feats = train.variants[0][0].shape[1]
    weights = class_weights(train.y, len(classes)) if tc.class_weights else None

    model = Tier1SER(n_feats, len(classes), config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    dataset = ClipDataset(train.variants, train.y, normalizer, train=True, max_frames=tc.max_train_frames, seed=seed)
    steps_per_epoch = math.ceil(len(dataset) / tc.batch_size)
    total_steps = tc.epochs * steps_per_epoch
    scheduler = make_scheduler(optimizer, total_steps, int(tc.warmup_epochs * steps_per_epoch), tc.min_lr_ratio)
    w = weights.to(device) if weights is not None else None

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=w, label_smoothing=tc.label_smoothing)

    def val_loss_fn(logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logp, target, weight=weights, label_smoothing=tc.label_smoothing)

    history: list[dict[str, Any]] = []
    best_uar, best_epoch, bad_epochs, start_epoch = -1.0, -1, 0, 0
    best_path: Path | None = None
    last_path = out / "last.pt"
    state = _load_resume_state(last_path, config, device) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        best_uar, best_epoch, bad_epochs = state["best_uar"], state["best_epoch"], state["bad_epochs"]
        # Stored as a name inside the run folder (older runs stored an absolute path: keep only its name),
        # so a copied run folder never points back at, or deletes, the original's files.
        best_path = out / Path(state["best_path"]).name if state.get("best_path") else None
        start_epoch = state["epoch"] + 1
        if state.get("finished"):
            start_epoch = tc.epochs
    save_config(config, out / "config.yaml")

    def checkpoint(epoch: int, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"model": model.state_dict(), "config": config.to_dict(), "labels": classes,
                "normalizer": normalizer.to_dict(), "n_feats": n_feats, "epoch": epoch,
                "metrics": metrics or {}, "git_commit": commit}

    epochs_this_call = 0
    for epoch in range(start_epoch, tc.epochs):
        if bad_epochs >= tc.patience:
            break
        t0 = time.perf_counter()
        torch.manual_seed(_epoch_seed(seed, epoch))
        gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=tc.batch_size, shuffle=True, collate_fn=collate, generator=gen)
        model.train()
        total, count = 0.0, 0
        for x, lengths, y in loader:
            target = F.one_hot(y, len(classes)).float()
            if config.batch_augment.specaugment:
                x = spec_augment(x, lengths, config.batch_augment, gen)
            if config.batch_augment.mixup:
                x, lengths, target = mixup(x, lengths, target, config.batch_augment, gen)
            x, lengths, target = x.to(device), lengths.to(device), target.to(device)
            loss = loss_fn(model(x, lengths), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        report, _, vloss = evaluate_split(model, val, normalizer, classes, device, val_loss_fn)
        improved = report["uar"] > best_uar
        if improved:
            best_uar, best_epoch, bad_epochs = report["uar"], epoch, 0
            if best_path is not None and best_path.exists() and not tc.keep_checkpoints:
                best_path.unlink()
            best_path = out / f"best_uar_{report['uar']:.4f}.pt"
            save_checkpoint(checkpoint(epoch, {"val_uar": report["uar"], "val_accuracy": report["accuracy"]}), best_path)
        else:
            bad_epochs += 1
        history.append({"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": total / max(count, 1),
                        "val_loss": vloss, "val_uar": report["uar"], "val_accuracy": report["accuracy"],
                        "improved": improved, "seconds": round(time.perf_counter() - t0, 3)})
        pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(out / "history.csv", index=False)
        save_checkpoint({**checkpoint(epoch), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "history": history, "best_uar": best_uar, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                         "best_path": best_path.name if best_path else None, "finished": False}, last_path)
        if progress:
            print(f"epoch {epoch + 1:>3}/{tc.epochs}  lr {history[-1]['lr']:.2e}  train {history[-1]['train_loss']:.3f}"
                  f"  val loss {vloss:.3f}  val UAR {report['uar'] * 100:5.1f}%{' *' if improved else ''}"
                  f"  ({history[-1]['seconds']:.1f}s)", flush=True)
        epochs_this_call += 1
        if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
            return {"stopped_after_epoch": epoch + 1, "history": history}

    # ---- test the best checkpoint, once
    if best_path is None:
        raise RuntimeError("no epoch was trained")
    try:
        best = load_checkpoint(best_path, map_location=device)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; the run cannot be tested without it: {RETRAIN_HINT}") from None
    model.load_state_dict(best["model"])
    val_report, _, _ = evaluate_split(model, val, normalizer, classes, device)
    test_report, probs, _ = evaluate_split(model, test, normalizer, classes, device)
    pred = probs.argmax(1)
    y_true = [classes[i] for i in test.y]
    y_pred = [classes[i] for i in pred]
    lo, hi = bootstrap_ci(y_true, y_pred, seed=seed)
    predictions = pd.DataFrame({"utt_id": test.ids, "speaker": test.speakers, "true": y_true, "predicted": y_pred})
    for k, c in enumerate(classes):
        predictions[f"p_{c}"] = probs[:, k].round(5)
    predictions.to_csv(out / "predictions.csv", index=False)
    hist = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    metrics = {
        "model": "tier1",
        "labels": classes,
        "sizes": {"train": len(train.ids), "val": len(val.ids), "test": len(test.ids),
                  "train_versions": sum(len(v) for v in train.variants)},
        "speakers": {"train": sorted(set(train.speakers)), "val": sorted(set(val.speakers)), "test": sorted(set(test.speakers))},
        "best_val_uar": best_uar,
        "best_epoch": best_epoch + 1,
        "epochs_run": len(history),
        "early_stopped": len(history) < tc.epochs,
        "checkpoint": best_path.name,
        "parameters": count_parameters(model),
        "val": val_report,
        "test": test_report,
        "test_uar_ci95": [lo, hi],
    }
    title = f"{config.data.corpus} {config.data.protocol} — {out.parent.name}, {out.name}"
    import matplotlib.pyplot as plt

    for fig in (plot_confusion_matrix(test_report, out / "confusion_matrix.png"),
                plot_per_class(test_report, out / "per_class_metrics.png"),
                plot_training_curves(hist, out / "training_curves.png", title)):
        plt.close(fig)
    state = load_checkpoint(last_path, map_location=device)
    state["finished"] = True
    save_checkpoint(state, last_path)
    prev = {}
    if resume and (out / "provenance.json").is_file():
        import json

        prev = json.loads((out / "provenance.json").read_text())
    write_json(out / "provenance.json", provenance(
        git_commit=commit, seed=seed, device=device, torch_threads=threads, data_fingerprint=features.fingerprint,
        feature_cache=features.key, denoise=config.preprocess.denoise,
        wall_seconds=round(prev.get("wall_seconds", 0) + time.perf_counter() - wall_start, 2),
        train_seconds=round(float(hist["seconds"].sum()), 2), resumed=bool(resume and start_epoch > 0),
        **(extra_provenance or {}),
    ))
    write_json(out / "metrics.json", metrics)  # last: a run folder with metrics.json is complete
    return metrics
