"""Run folders: where a run's outputs live, its provenance, and reading results back.

Layout (one folder per corpus / protocol / model / fold / seed)::

    <results>/<corpus>/<protocol>/<model>/fold-<k>/seed-<s>/
        config.yaml  provenance.json  history.csv  metrics.json  predictions.csv
        val_predictions.csv  val_posteriors.npz  (networks: validation posteriors of the tested weights / every epoch)
        best_uar_0.XXXX.pt  [averaged_last<K>.pt]  last.pt  confusion_matrix.png  per_class_metrics.png
        training_curves.png

``<model>`` is ``tier1`` (or ``tier1-<ablation>``) or ``baseline-svm``.
Checkpoints (``*.pt``) stay out of git; everything else is small and committed
with the executed notebooks.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_results_dir() -> Path:
    """``$SERLIB_RESULTS`` or ``<project>/results``."""
    return Path(os.environ.get("SERLIB_RESULTS", PROJECT_ROOT / "results"))


def run_dir(results: str | Path, corpus: str, protocol: str, model: str, fold: int, seed: int) -> Path:
    """The folder of one run (1-based fold number in the name, as the report shows folds)."""
    return Path(results) / corpus / protocol / model / f"fold-{fold + 1}" / f"seed-{seed}"


def tested_checkpoint(run: str | Path) -> Path | None:
    """The checkpoint whose weights a network run tested: the one ``metrics.json`` names (``averaged_last<K>.pt``
    for an ``average_last`` run), else the best-scoring ``best_uar_*.pt``; ``None`` when the folder holds neither
    (checkpoints are not committed)."""
    run = Path(run)
    metrics = read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    named = run / str(metrics["checkpoint"]) if metrics.get("checkpoint") else None
    if named is not None and named.is_file():
        return named
    found = sorted(run.glob("best_uar_*.pt"))
    return found[-1] if found else None


def class_tag(classes: Sequence[str]) -> str:
    """The run-folder name of a cross-corpus training on ``classes``: ``tier1-x-neu-hap-sad-ang`` for four classes."""
    return "tier1-x-" + "-".join(c[:3] for c in classes)


ALLOW_DIRTY_ENV = "SERLIB_ALLOW_DIRTY"
"""Set (to ``1``) by a batch given ``--allow-dirty``: its runs record ``allow_dirty`` in their provenance."""


def git_commit() -> str:
    """Current commit of the project (``+dirty`` when the tree has uncommitted changes)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "serlib", "configs"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(**extra: Any) -> dict[str, Any]:
    """Environment facts recorded with every run (merged with ``extra``)."""
    import numpy
    import sklearn
    import torch

    commit = extra.pop("git_commit", None) or git_commit()
    dirty_allowed = {"allow_dirty": True} if commit.endswith("+dirty") and os.environ.get(ALLOW_DIRTY_ENV) else {}
    return {
        "git_commit": commit,
        **dirty_allowed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(),
        "worker": os.environ.get("SERLIB_WORKER", "local"),  # the Dask worker that ran it (serlib.experiments.grid)
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        **extra,
    }


def save_benchmark(path: str | Path, numbers: dict[str, Any]) -> Path:
    """Write a benchmark's numbers with the provenance of the machine and commit that measured them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"benchmark": path.stem, "results": numbers, "provenance": provenance()})
    return path


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename; a full disk names the folder, see :func:`serlib.core.files.atomic_write`)."""
    from serlib.core.files import atomic_write

    text = json.dumps(data, indent=2, default=str)
    atomic_write(path, lambda tmp: tmp.write_text(text), "the results")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def list_runs(results: str | Path) -> pd.DataFrame:
    """One row per finished run folder (one with a ``metrics.json``) under ``results``.

    Columns: corpus, protocol, model, fold, seed, path, test_uar, test_accuracy,
    best_val_uar, val_uar (of the tested weights: the best epoch's, or the averaged ones of an
    ``average_last`` run), n_train, n_val, n_test, wall_seconds, git_commit, fingerprint.
    """
    rows = []
    for metrics_path in sorted(Path(results).glob("*/*/*/fold-*/seed-*/metrics.json")):
        folder = metrics_path.parent
        m = read_json(metrics_path)
        prov = read_json(folder / "provenance.json") if (folder / "provenance.json").is_file() else {}
        corpus, protocol, model = folder.parts[-5:-2]
        rows.append({
            "corpus": corpus,
            "protocol": protocol,
            "model": model,
            "fold": int(folder.parts[-2].split("-")[1]),
            "seed": int(folder.parts[-1].split("-")[1]),
            "path": str(folder),
            "test_uar": m["test"]["uar"],
            "test_accuracy": m["test"]["accuracy"],
            "best_val_uar": m.get("best_val_uar"),
            "val_uar": (m.get("val") or {}).get("uar", m.get("best_val_uar")),
            "best_epoch": m.get("best_epoch"),
            "n_train": m["sizes"]["train"],
            "n_val": m["sizes"]["val"],
            "n_test": m["sizes"]["test"],
            "wall_seconds": prov.get("wall_seconds"),
            "git_commit": prov.get("git_commit"),
            "fingerprint": prov.get("data_fingerprint"),
            "denoise": prov.get("denoise"),
        })
    return pd.DataFrame(rows)
