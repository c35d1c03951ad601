"""Validation posteriors of every training epoch (``val_posteriors.npz``) and what they say about epoch choice.

A network run tests the epoch whose validation UAR was best, so that UAR is
chosen on the very clips it is measured on and overstates the tested model.
With every epoch's validation posteriors kept, the choice can be judged
honestly on the validation speakers themselves (:func:`epoch_choice_uars`):
each validation speaker is scored at the epoch chosen on the *other*
validation speakers, and the result is compared with choices that involve no
selection (the last epoch, or the averaged weights of :mod:`serlib.systems.tier1.averaging`).
The file holds plain arrays (``allow_pickle=False``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from serlib.evaluation.metrics import unweighted_average_recall as uar

VAL_POSTERIORS = "val_posteriors.npz"


def write_val_posteriors(path: str | Path, probs: np.ndarray, utt_ids: Sequence[str], classes: Sequence[str]) -> None:
    """Save ``probs`` ``(epochs, clips, classes)`` (float16) with the clip ids and class names, atomically."""
    from serlib.core.files import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, probs=np.asarray(probs, dtype=np.float16),
                                utt_id=np.asarray(list(utt_ids), dtype=str), classes=np.asarray(list(classes), dtype=str))

    atomic_write(path, write, "the results")


def read_val_posteriors(path: str | Path) -> tuple[np.ndarray, list[str], list[str]]:
    """``(probs, utt_ids, classes)`` from :func:`write_val_posteriors`'s file (no pickles are loaded)."""
    with np.load(path, allow_pickle=False) as data:
        return data["probs"].astype(np.float32), [str(u) for u in data["utt_id"]], [str(c) for c in data["classes"]]


def epoch_choice_uars(run_dir: str | Path) -> dict[str, float] | None:
    """Validation UAR of three ways to pick the tested weights, all judged on the same validation clips.

    * ``chosen on other speakers``: each validation speaker's clips are scored
      at the epoch with the best UAR on the other validation speakers' clips
      (ties: the earliest), then all clips are pooled.
    * ``last epoch``: the final epoch, no choice.
    * ``tested``: the run's tested weights (``val_predictions.csv``: the
      averaged weights of an ``average_last`` run, no choice; for a best-epoch
      run this is the in-sample best and overstates it).

    ``None`` when the run folder lacks the files or has one validation speaker.
    """
    run = Path(run_dir)
    if not (run / VAL_POSTERIORS).is_file() or not (run / "val_predictions.csv").is_file():
        return None
    probs, ids, classes = read_val_posteriors(run / VAL_POSTERIORS)
    tested = pd.read_csv(run / "val_predictions.csv", dtype={"utt_id": str, "speaker": str})
    tested = tested.set_index("utt_id").loc[ids]
    y = np.array([classes.index(t) for t in tested["true"]])
    speakers = tested["speaker"].to_numpy()
    if len(set(speakers)) < 2:
        return None
    predicted = probs.argmax(2)  # (epochs, clips)
    chosen = np.empty(len(ids), dtype=int)
    for s in sorted(set(speakers)):
        mine = speakers == s
        others = [uar(y[~mine], p[~mine]) for p in predicted]
        chosen[mine] = predicted[int(np.argmax(others)), mine]
    return {"chosen on other speakers": uar(y, chosen), "last epoch": uar(y, predicted[-1]),
            "tested": uar(y, np.array([classes.index(p) for p in tested["predicted"]]))}


__all__ = ["VAL_POSTERIORS", "epoch_choice_uars", "read_val_posteriors", "write_val_posteriors"]
