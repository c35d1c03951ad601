"""Run folders made from uncommitted code, found and re-run from a clean tree.

A run's provenance records the commit it ran (``+dirty`` when ``serlib/`` or
``configs/`` had uncommitted changes, :func:`serlib.core.runs.git_commit`). Such a
run cannot be traced to code anyone can check out, so the report reads none.

* :func:`dirty_runs` lists them;
* :func:`rerun_specs` turns each into a grid run (:class:`serlib.experiments.grid.RunSpec`)
  under the very config the folder recorded, replacing the folder;
* :func:`rerun_dirty` re-runs them one after another in this process, fusions
  after the systems they read, and returns the old and new test UAR of each.

``python -m serlib.experiments.batch rerun-dirty [--dry-run]`` is the command.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import pandas as pd

from serlib.core.runs import list_runs
from serlib.experiments.grid import RunSpec


def dirty_runs(results: str | Path) -> pd.DataFrame:
    """The finished runs under ``results`` whose recorded commit ends in ``+dirty`` (``list_runs`` columns)."""
    runs = list_runs(results)
    if runs.empty:
        return runs
    return runs[runs["git_commit"].fillna("").str.endswith("+dirty")].reset_index(drop=True)


def rerun_specs(runs: pd.DataFrame, *, config_dir: str | Path, results: str | Path | None = None,
                data_root: str | Path | None = None, cache_dir: str | Path | None = None) -> list[RunSpec]:
    """One retraining spec per run, in an order where every system comes after the systems it reads.

    Each run's ``config.yaml`` is copied to ``config_dir`` first (retraining
    removes the folder), and the spec trains under it: the same corpus,
    protocol, system, fold, seed and settings, from the current clean commit.
    """
    from serlib.systems.registry import REGISTRY, run_order, system_for_run

    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    systems = {model: system_for_run(model).name for model in runs["model"].unique()}
    stage_of = {name: i for i, stage in enumerate(run_order(sorted(set(systems.values()) & set(REGISTRY))))
                for name in stage}
    specs = []
    ordered = runs.assign(_stage=runs["model"].map(lambda m: stage_of.get(systems[m], 0)))
    for row in ordered.sort_values(["_stage", "corpus", "protocol", "model", "fold", "seed"]).itertuples():
        copy = config_dir / f"{row.corpus}-{row.protocol}-{row.model}-fold{row.fold}-seed{row.seed}.yaml"
        shutil.copyfile(Path(row.path) / "config.yaml", copy)
        system = systems[row.model]
        specs.append(RunSpec(corpus=row.corpus, model=system, fold=int(row.fold) - 1, seed=int(row.seed),
                             protocol=row.protocol, config_path=str(copy),
                             name=row.model if row.model != system else None,
                             data_root=str(data_root) if data_root else None,
                             cache_dir=str(cache_dir) if cache_dir else None,
                             results=str(results) if results else None, retrain=True))
    return specs


def select_runs(runs: pd.DataFrame, corpora: Sequence[str] | None = None, pattern: str | None = None) -> pd.DataFrame:
    """The runs of ``corpora`` (default all) whose ``corpus/protocol/model/fold-k/seed-s`` matches ``pattern``
    (shell-style, e.g. ``ravdess/*/tier1-plus-*/*``; default all)."""
    from fnmatch import fnmatch

    if corpora:
        runs = runs[runs["corpus"].isin(corpora)]
    if pattern:
        names = [f"{r.corpus}/{r.protocol}/{r.model}/fold-{r.fold}/seed-{r.seed}" for r in runs.itertuples()]
        runs = runs[[fnmatch(n, pattern) for n in names]]
    return runs.reset_index(drop=True)


def rerun_dirty(results: str | Path, *, data_root: str | Path | None = None, cache_dir: str | Path | None = None,
                corpora: Sequence[str] | None = None, pattern: str | None = None,
                progress: bool = True) -> pd.DataFrame:
    """Re-run every dirty run under ``results`` (of ``corpora`` and matching ``pattern``, :func:`select_runs`)
    and compare the test UAR.

    Returns one row per run: ``run``, ``status``, ``old_uar``, ``new_uar`` and
    ``changed`` (the new figure differs in the 6th decimal or beyond).
    """
    from serlib.experiments.grid import run_task

    runs = select_runs(dirty_runs(results), corpora, pattern)
    rows = []
    with tempfile.TemporaryDirectory(prefix="serlib-rerun-") as tmp:
        specs = rerun_specs(runs, config_dir=tmp, results=results, data_root=data_root, cache_dir=cache_dir)
        old = {f"{r.corpus}/{r.protocol}/{r.model}/fold-{r.fold}/seed-{r.seed}": r.test_uar for r in runs.itertuples()}
        for i, spec in enumerate(specs, 1):
            row = run_task(spec)
            row["old_uar"] = old.get(row["run"])
            row["new_uar"] = row.get("test_uar")
            row["changed"] = row["new_uar"] is None or abs(row["new_uar"] - row["old_uar"]) > 1e-6
            rows.append(row)
            if progress:
                shown = "" if row["new_uar"] is None else f" {row['old_uar']:.4f} -> {row['new_uar']:.4f}"
                print(f"[rerun {i}/{len(specs)}] {row['run']}: {row['status']}{shown}"
                      + (f" ({row.get('error')})" if row["status"] == "failed" else ""), flush=True)
    return pd.DataFrame(rows)
