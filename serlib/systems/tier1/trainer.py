"""Training the Tier-1 network on cached features: one fold, one seed, one run folder.

What this loop guarantees (each has a test):

* **The learning rate cannot collapse.** Linear warm-up, then cosine decay to a
  floor (``min_lr_ratio`` x lr), stepped once per optimizer step with a horizon
  equal to the real number of steps (``epochs x batches per epoch``). The
  previous system's 2.45e-08 at epoch 9 of 30 came from a horizon that did not
  match the steps taken.
* **Validation is for model selection only**; the test split is touched once,
  with the best-validation-UAR checkpoint (or, with ``train.average_last``, the
  mean weights of the last epochs), after training.
* **Resume is exact.** Every epoch writes ``last.pt`` (model, optimizer,
  scheduler, history, early-stopping state, every epoch's validation
  posteriors and, with ``train.average_last``, the running weight average).
  All randomness of epoch *e* comes from generators seeded by (seed, e), so a
  killed and resumed run ends with the same result as an uninterrupted one.
* **Augmented copies are cached, not computed.** Each epoch every training clip
  contributes one version, drawn among the original and its cached waveform
  augmentations; SpecAugment and mixup act on training batches only.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from serlib.config import Config, check_device_available, save_config
from serlib.core.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from serlib.core.files import clean_stale_temporaries
from serlib.systems.reuse import RETRAIN_HINT, StaleRunError, differences, make_request
from serlib.core.runs import git_commit
from serlib.evaluation.metrics import bootstrap_ci, classification_report_dict
from serlib.features.augment import mixup, spec_augment
from serlib.features.frames import FeatureSet, Normalizer, center_each_clip, standardize_by_speaker
from serlib.systems.base import SplitData, select_classes, split_data, write_run
from serlib.systems.tier1.averaging import WeightAverage, recompute_batchnorm
from serlib.systems.tier1.epoch_posteriors import VAL_POSTERIORS, write_val_posteriors
from serlib.systems.tier1.network import build_network, count_parameters

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


def extra_training_clips(features: FeatureSet, corpus: str, classes: list[str],
                         with_augmented: bool = False) -> SplitData:
    """Every usable clip of another corpus whose label is one of ``classes``, as training data.

    Speakers are prefixed with ``corpus`` so that they never merge with the
    main corpus's speakers (per-speaker statistics, speaker counts).
    """
    everything = pd.Series("train", index=features.usable.index)
    part = split_data(features, everything, classes, "train", with_augmented=with_augmented)
    return replace(part, speakers=[f"{corpus}/{s}" for s in part.speakers])


def join_splits(first: SplitData, second: SplitData) -> SplitData:
    """The clips of ``first`` followed by those of ``second``."""
    return SplitData(first.ids + second.ids, np.concatenate([first.y, second.y]), first.variants + second.variants,
                     first.speakers + second.speakers)


# ----------------------------------------------------------------------------- inference


def crop_windows(n_frames: int, window: int) -> list[tuple[int, int]]:
    """``(start, stop)`` windows of ``window`` frames, 50 % overlap, covering ``n_frames``; the last ends at the end.

    A clip no longer than ``window`` (or ``window <= 0``) is one window: itself.
    """
    if window <= 0 or n_frames <= window:
        return [(0, n_frames)]
    hop = max(1, window // 2)
    starts = list(range(0, n_frames - window + 1, hop))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return [(a, a + window) for a in starts]


@torch.no_grad()
def predict_proba(model: torch.nn.Module, arrays: list[np.ndarray], normalizer: Normalizer,
                  device: str = "cpu", batch_size: int = 64, window: int = 0) -> np.ndarray:
    """Class probabilities ``(n, classes)`` for a list of feature arrays (batched by length).

    With ``window > 0`` a longer clip is scored as the mean posterior of its
    :func:`crop_windows` (test-time crop averaging: the network sees clips of the
    length it was trained on).
    """
    model.eval()
    pieces, owner = [], []
    for i, a in enumerate(arrays):
        for start, stop in crop_windows(a.shape[0], window):
            pieces.append(a[start:stop])
            owner.append(i)
    order = np.argsort([a.shape[0] for a in pieces], kind="stable")
    piece_probs = np.zeros((len(pieces), model.classifier.out_features), dtype=np.float32)
    for start in range(0, len(pieces), batch_size):
        idx = order[start : start + batch_size]
        x, lengths, _ = collate([(torch.from_numpy(normalizer(pieces[i]).astype(np.float32)), 0) for i in idx])
        piece_probs[idx] = torch.softmax(model(x.to(device), lengths.to(device)), dim=-1).cpu().numpy()
    out = np.zeros((len(arrays), piece_probs.shape[1]), dtype=np.float32)
    np.add.at(out, np.asarray(owner, dtype=np.int64), piece_probs)
    return out / np.bincount(owner, minlength=len(arrays)).astype(np.float32)[:, None]


def evaluate_split(model: torch.nn.Module, data: SplitData, normalizer: Normalizer, classes: list[str],
                   device: str, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                   window: int = 0) -> tuple[dict[str, Any], np.ndarray, float]:
    """Metrics report, probabilities and mean loss on one split (``window``: see :func:`predict_proba`)."""
    probs = predict_proba(model, [v[0] for v in data.variants], normalizer, device, window=window)
    pred = probs.argmax(1)
    report = classification_report_dict([classes[i] for i in data.y], [classes[i] for i in pred], classes)
    loss = float("nan")
    if loss_fn is not None and len(data.y):
        logp = torch.log(torch.from_numpy(probs).clamp_min(1e-8))
        loss = float(loss_fn(logp, torch.from_numpy(data.y)))
    return report, probs, loss


# ----------------------------------------------------------------------------- training


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; a named GPU that is absent is a ConfigError."""
    check_device_available(name)
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
    under another config raises :class:`serlib.systems.reuse.StaleRunError`: two
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


class Trainer:
    """One run of a network on one split; each step of training is a small method (a hook).

    ``setup`` builds the data, normaliser, network, optimiser and schedule;
    ``restore`` resumes from ``last.pt``; ``train_epoch``, ``validate``,
    ``accumulate_average``, ``save_checkpoints`` and ``log_epoch`` make one
    epoch; ``test`` scores the tested weights (``load_tested_weights``) once; ``write_artifacts`` writes the run folder. A subclass
    overrides a hook (another loss, another batch augmentation) without
    touching the loop in :meth:`run`. The network comes from
    :func:`serlib.systems.tier1.network.build_network`, so a new architecture needs no edit here.
    """

    def __init__(self, features: FeatureSet, assignment: pd.Series, config: Config, out_dir: str | Path, *,
                 progress: bool = True, extra_provenance: dict[str, Any] | None = None,
                 extra_train: dict[str, FeatureSet] | None = None) -> None:
        self.features, self.assignment, self.config = features, assignment, config
        self.extra_train = extra_train or {}
        if sorted(config.data.extra_train) != sorted(self.extra_train):
            raise ValueError(f"data.extra_train lists {config.data.extra_train}, features were given for "
                             f"{sorted(self.extra_train)}")
        self.out = Path(out_dir)
        self.progress = progress
        self.extra_provenance = dict(extra_provenance or {})
        if self.extra_train:  # what joined every training part
            self.extra_provenance["extra_train"] = {c: fs.fingerprint for c, fs in self.extra_train.items()}
        self.wall_start = time.perf_counter()
        self.history: list[dict[str, Any]] = []
        self.best_uar, self.best_epoch, self.bad_epochs, self.start_epoch = -1.0, -1, 0, 0
        self.best_path: Path | None = None
        self.tested_path: Path | None = None  # the checkpoint test() scored: best epoch, or the averaged weights
        self.average: WeightAverage | None = None
        self.val_probs: list[np.ndarray] = []  # validation posteriors of every epoch (val_posteriors.npz)
        self.val_predictions: pd.DataFrame | None = None
        self.resumed = False

    @property
    def eval_window(self) -> int:
        """Frames per scoring window at validation and test (0: whole clips)."""
        tc = self.config.train
        return tc.max_train_frames if getattr(tc, "crop_average", False) else 0

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    # ---- set-up
    def setup(self) -> None:
        """Splits, normaliser (training clips only), network, optimiser, schedule and losses."""
        config, tc = self.config, self.config.train
        self.out.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(self.out)  # left by a run killed while writing
        self.threads = set_threads(tc.num_threads)
        self.device = resolve_device(tc.device)
        torch.manual_seed(config.seed)
        self.commit = git_commit()  # the code this process runs, recorded before anything can change the tree
        self.classes = select_classes(self.features.usable, config.data.classes)
        self.train = split_data(self.features, self.assignment, self.classes, "train",
                                with_augmented=config.wave_augment.enabled)
        for corpus in config.data.extra_train:  # other corpora's clips of these classes: training only
            self.train = join_splits(self.train, extra_training_clips(
                self.extra_train[corpus], corpus, self.classes, with_augmented=config.wave_augment.enabled))
        self.val = split_data(self.features, self.assignment, self.classes, "val")
        self.test_data = split_data(self.features, self.assignment, self.classes, "test")
        if tc.speaker_norm:  # transductive: each split's speakers standardised with their own clips' statistics
            self.train, self.val, self.test_data = (
                replace(d, variants=standardize_by_speaker(d.variants, d.speakers))
                for d in (self.train, self.val, self.test_data))
        if tc.sentence_norm:  # inductive: each clip centred on its own mean frame
            self.train, self.val, self.test_data = (
                replace(d, variants=center_each_clip(d.variants)) for d in (self.train, self.val, self.test_data))
        if not self.train.ids or not self.val.ids or not self.test_data.ids:
            raise ValueError(f"empty split: train={len(self.train.ids)} val={len(self.val.ids)} "
                             f"test={len(self.test_data.ids)}")
        self.normalizer = Normalizer.fit(v[0] for v in self.train.variants)
        self.n_feats = self.train.variants[0][0].shape[1]
        self.model = build_network(config.model, self.n_feats, len(self.classes)).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.dataset = ClipDataset(self.train.variants, self.train.y, self.normalizer, train=True,
                                   max_frames=tc.max_train_frames, seed=config.seed)
        steps_per_epoch = math.ceil(len(self.dataset) / tc.batch_size)
        self.scheduler = make_scheduler(self.optimizer, tc.epochs * steps_per_epoch,
                                        int(tc.warmup_epochs * steps_per_epoch), tc.min_lr_ratio)
        self.weights = class_weights(self.train.y, len(self.classes)) if tc.class_weights else None
        self.average = WeightAverage() if tc.average_last else None

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss on (possibly mixed) one-hot targets."""
        w = self.weights.to(self.device) if self.weights is not None else None
        return F.cross_entropy(logits, target, weight=w, label_smoothing=self.config.train.label_smoothing)

    def val_loss(self, logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Validation loss from log-probabilities and integer targets."""
        return F.cross_entropy(logp, target, weight=self.weights, label_smoothing=self.config.train.label_smoothing)

    def restore(self) -> None:
        """Continue from ``last.pt`` when it belongs to this config (see :func:`_load_resume_state`)."""
        state = _load_resume_state(self.last_path, self.config, self.device)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        self.best_uar, self.best_epoch, self.bad_epochs = state["best_uar"], state["best_epoch"], state["bad_epochs"]
        if state.get("val_probs") is not None:
            self.val_probs = list(state["val_probs"].cpu().numpy())  # last.pt is loaded onto the training device
        if self.average is not None and state.get("average") is not None:
            self.average.load_state_dict(state["average"])
        # Stored as a name inside the run folder (older runs stored an absolute path: keep only its name),
        # so a copied run folder never points back at, or deletes, the original's files.
        self.best_path = self.out / Path(state["best_path"]).name if state.get("best_path") else None
        self.start_epoch = self.config.train.epochs if state.get("finished") else state["epoch"] + 1
        self.resumed = self.start_epoch > 0

    # ---- one epoch
    def augment_batch(self, x: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor, gen: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SpecAugment and mixup on a training batch (as configured)."""
        if self.config.batch_augment.specaugment:
            x = spec_augment(x, lengths, self.config.batch_augment, gen)
        if self.config.batch_augment.mixup:
            x, lengths, target = mixup(x, lengths, target, self.config.batch_augment, gen)
        return x, lengths, target

    def train_epoch(self, epoch: int) -> float:
        """One pass over the training clips; returns the mean training loss."""
        tc = self.config.train
        torch.manual_seed(_epoch_seed(self.config.seed, epoch))
        gen = torch.Generator().manual_seed(_epoch_seed(self.config.seed, epoch))
        self.dataset.set_epoch(epoch)
        loader = DataLoader(self.dataset, batch_size=tc.batch_size, shuffle=True, collate_fn=collate, generator=gen)
        self.model.train()
        total, count = 0.0, 0
        for x, lengths, y in loader:
            target = F.one_hot(y, len(self.classes)).float()
            x, lengths, target = self.augment_batch(x, lengths, target, gen)
            x, lengths, target = x.to(self.device), lengths.to(self.device), target.to(self.device)
            loss = self.loss(self.model(x, lengths), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        return total / max(count, 1)

    def validate(self) -> tuple[dict[str, Any], float]:
        """Metrics report and loss on the validation clips (model selection only); keeps their posteriors."""
        report, probs, vloss = evaluate_split(self.model, self.val, self.normalizer, self.classes, self.device,
                                              self.val_loss, window=self.eval_window)
        self.val_probs.append(probs.astype(np.float16))
        return report, vloss

    def accumulate_average(self, epoch: int) -> None:
        """Add this epoch's weights to the mean when it is one of the last ``train.average_last`` epochs."""
        tc = self.config.train
        if self.average is not None and epoch >= tc.epochs - tc.average_last:
            self.average.update(self.model)

    def checkpoint(self, epoch: int, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a checkpoint holds: weights, config, labels, normalisation (plain data only)."""
        return {"model": self.model.state_dict(), "config": self.config.to_dict(), "labels": self.classes,
                "normalizer": self.normalizer.to_dict(), "n_feats": self.n_feats, "epoch": epoch,
                "metrics": metrics or {}, "git_commit": self.commit}

    def save_checkpoints(self, epoch: int, report: dict[str, Any], improved: bool) -> None:
        """The new best checkpoint (when improved) and ``last.pt`` (always)."""
        if improved:
            if self.best_path is not None and self.best_path.exists() and not self.config.train.keep_checkpoints:
                self.best_path.unlink()
            self.best_path = self.out / f"best_uar_{report['uar']:.4f}.pt"
            save_checkpoint(self.checkpoint(epoch, {"val_uar": report["uar"], "val_accuracy": report["accuracy"]}),
                            self.best_path)
        save_checkpoint({**self.checkpoint(epoch), "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(), "history": self.history,
                         "best_uar": self.best_uar, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                         "best_path": self.best_path.name if self.best_path else None, "finished": False,
                         "val_probs": torch.from_numpy(np.stack(self.val_probs)) if self.val_probs else None,
                         "average": self.average.state_dict() if self.average is not None else None},
                        self.last_path)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Append to ``history.csv`` and print one line."""
        pd.DataFrame(self.history, columns=HISTORY_COLUMNS).to_csv(self.out / "history.csv", index=False)
        if self.progress:
            print(f"epoch {row['epoch']:>3}/{self.config.train.epochs}  lr {row['lr']:.2e}  train {row['train_loss']:.3f}"
                  f"  val loss {row['val_loss']:.3f}  val UAR {row['val_uar'] * 100:5.1f}%{' *' if row['improved'] else ''}"
                  f"  ({row['seconds']:.1f}s)", flush=True)

    def epoch(self, epoch: int) -> None:
        """Train, validate, track early stopping, checkpoint and log one epoch."""
        t0 = time.perf_counter()
        train_loss = self.train_epoch(epoch)
        report, vloss = self.validate()
        improved = report["uar"] > self.best_uar
        if improved:
            self.best_uar, self.best_epoch, self.bad_epochs = report["uar"], epoch, 0
        else:
            self.bad_epochs += 1
        row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": train_loss,
               "val_loss": vloss, "val_uar": report["uar"], "val_accuracy": report["accuracy"],
               "improved": improved, "seconds": round(time.perf_counter() - t0, 3)}
        self.history.append(row)
        self.accumulate_average(epoch)
        self.save_checkpoints(epoch, report, improved)
        self.log_epoch(row)

    # ---- after training
    def batchnorm_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches ``(x, lengths)`` of one more epoch (its own seed, no batch augmentation)."""
        tc = self.config.train
        self.dataset.set_epoch(tc.epochs)
        gen = torch.Generator().manual_seed(_epoch_seed(self.config.seed, tc.epochs))
        loader = DataLoader(self.dataset, batch_size=tc.batch_size, shuffle=True, collate_fn=collate, generator=gen)
        return ((x, lengths) for x, lengths, _ in loader)

    def load_tested_weights(self) -> str:
        """Put the weights to test into the network; returns how they were chosen.

        The best-validation checkpoint; or, with ``train.average_last`` K, the
        mean of the last K epochs' weights with batch-norm statistics measured
        again (:mod:`serlib.systems.tier1.averaging`), saved as ``averaged_last<K>.pt``.
        """
        if self.average is None:
            if self.best_path is None:
                raise RuntimeError("no epoch was trained")
            try:
                best = load_checkpoint(self.best_path, map_location=self.device)
            except CheckpointError as err:
                raise CheckpointError(f"{err}; the run cannot be tested without it: {RETRAIN_HINT}") from None
            self.model.load_state_dict(best["model"])
            self.tested_path = self.best_path
            return f"best validation epoch ({self.best_epoch + 1})"
        k, last = self.average.count, self.config.train.epochs
        self.average.copy_to(self.model)
        recompute_batchnorm(self.model, self.batchnorm_batches(), self.device)
        self.tested_path = self.out / f"averaged_last{k}.pt"
        save_checkpoint(self.checkpoint(last - 1, {"averaged_epochs": [last - k + 1, last]}), self.tested_path)
        return f"mean weights of epochs {last - k + 1}-{last}"

    def predictions_frame(self, data: SplitData, probs: np.ndarray) -> pd.DataFrame:
        """One row per clip: id, speaker, true and predicted label, and each class's posterior."""
        frame = pd.DataFrame({"utt_id": data.ids, "speaker": data.speakers,
                              "true": [self.classes[i] for i in data.y],
                              "predicted": [self.classes[i] for i in probs.argmax(1)]})
        for k, c in enumerate(self.classes):
            frame[f"p_{c}"] = probs[:, k].round(5)
        return frame

    def test(self) -> tuple[dict[str, Any], pd.DataFrame]:
        """Score the tested weights (see :meth:`load_tested_weights`) on the test clips, once: metrics and predictions."""
        tested = self.load_tested_weights()
        val_report, val_probs, _ = evaluate_split(self.model, self.val, self.normalizer, self.classes, self.device,
                                                  window=self.eval_window)
        self.val_predictions = self.predictions_frame(self.val, val_probs)
        test_report, probs, _ = evaluate_split(self.model, self.test_data, self.normalizer, self.classes, self.device,
                                               window=self.eval_window)
        predictions = self.predictions_frame(self.test_data, probs)
        y_true, y_pred = list(predictions["true"]), list(predictions["predicted"])
        lo, hi = bootstrap_ci(y_true, y_pred, seed=self.config.seed)
        train = self.train
        metrics = {
            "model": self.out.parent.parent.name if self.out.parent.name.startswith("fold-") else "tier1",
            "labels": self.classes,
            "sizes": {"train": len(train.ids), "val": len(self.val.ids), "test": len(self.test_data.ids),
                      "train_versions": sum(len(v) for v in train.variants)},
            "speakers": {"train": sorted(set(train.speakers)), "val": sorted(set(self.val.speakers)),
                         "test": sorted(set(self.test_data.speakers))},
            "best_val_uar": self.best_uar,
            "best_epoch": self.best_epoch + 1,
            "epochs_run": len(self.history),
            "early_stopped": len(self.history) < self.config.train.epochs,
            "checkpoint": self.tested_path.name,
            "tested": tested,
            "parameters": count_parameters(self.model),
            "val": val_report,
            "test": test_report,
            "test_uar_ci95": [lo, hi],
            "transductive": bool(self.config.train.speaker_norm),  # test speakers' own clips set their statistics
        }
        return metrics, predictions

    def write_artifacts(self, metrics: dict[str, Any], predictions: pd.DataFrame) -> None:
        """Predictions, figures, provenance, and ``metrics.json`` last (its presence marks a finished run)."""
        import json


        out, config = self.out, self.config
        if self.val_predictions is not None:
            self.val_predictions.to_csv(out / "val_predictions.csv", index=False)
        if self.val_probs and len(self.val_probs) == len(self.history):  # not after resuming an older last.pt
            write_val_posteriors(out / VAL_POSTERIORS, np.stack(self.val_probs), self.val.ids, self.classes)
        hist = pd.DataFrame(self.history, columns=HISTORY_COLUMNS)
        state = load_checkpoint(self.last_path, map_location=self.device)
        state["finished"] = True
        save_checkpoint(state, self.last_path)
        prev = json.loads((out / "provenance.json").read_text()) if self.resumed and (out / "provenance.json").is_file() else {}
        write_run(out, config, metrics, predictions, dict(
            git_commit=self.commit, seed=config.seed, device=self.device, torch_threads=self.threads,
            data_fingerprint=self.features.fingerprint_with(self.extra_train), feature_cache=self.features.key,
            denoise=config.preprocess.denoise,
            wall_seconds=round(prev.get("wall_seconds", 0) + time.perf_counter() - self.wall_start, 2),
            train_seconds=round(float(hist["seconds"].sum()), 2), resumed=self.resumed, **self.extra_provenance,
        ), history=hist)

    # ---- the loop
    def run(self, *, resume: bool = False, stop_after_epochs: int | None = None) -> dict[str, Any]:
        """Set up, (resume,) train with early stopping, test once, write the run folder; returns the metrics."""
        self.setup()
        if resume:
            self.restore()
        save_config(self.config, self.out / "config.yaml")
        for n, epoch in enumerate(range(self.start_epoch, self.config.train.epochs), start=1):
            if self.bad_epochs >= self.config.train.patience:
                break
            self.epoch(epoch)
            if stop_after_epochs is not None and n >= stop_after_epochs:
                return {"stopped_after_epoch": epoch + 1, "history": self.history}
        metrics, predictions = self.test()
        self.write_artifacts(metrics, predictions)
        return metrics


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
    extra_train: dict[str, FeatureSet] | None = None,
) -> dict[str, Any]:
    """Train one network, test the weights it chose (best epoch, or averaged last epochs), write the run folder.

    See :class:`Trainer` for the steps.

    Parameters
    ----------
    features
        From :func:`serlib.features.frames.prepare_features`.
    assignment
        ``"train"/"val"/"test"`` per row of ``features.usable`` (see :mod:`serlib.data.splits`).
    config
        The resolved experiment config (``config.seed`` is the seed).
    out_dir
        The run folder (created).
    resume
        Continue from ``out_dir/last.pt`` if present.
    stop_after_epochs
        Stop (as if killed) after this many epochs of this call: used by the
        resume test.
    extra_train
        ``config.data.extra_train``'s corpora and their features: every clip of
        the run's classes joins the training part (never validation or test).

    Returns
    -------
    dict
        The contents of ``metrics.json`` (or, when stopped early on purpose, the
        partial state).
    """
    trainer = Trainer(features, assignment, config, out_dir, progress=progress, extra_provenance=extra_provenance,
                      extra_train=extra_train)
    return trainer.run(resume=resume, stop_after_epochs=stop_after_epochs)
