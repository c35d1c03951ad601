"""Experiments: corpus folder + config -> prepared features -> every fold and seed of a protocol.

This is the layer the CLI and the notebooks call. It owns no algorithm: it wires
:mod:`serlib.data.corpora`, :mod:`serlib.features.frames`, :mod:`serlib.data.splits`,
:mod:`serlib.systems` (through the catalogue) together and summarises run
folders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from serlib.config import Config
from serlib.core.runs import default_results_dir, run_dir
from serlib.features.prepared import Prepared, fold_count, split_for
from serlib.systems.registry import check_recipe, get_model
from serlib.systems.reuse import forget_request, make_request, record_request, reusable_run, run_folder_lock


@dataclass
class PlannedRun:
    """One (model, fold, seed) run of a protocol: where it goes and what it must have been made from."""

    model: str
    name: str
    fold: int
    seed: int
    config: Config
    folder: Path
    request: dict[str, Any]


def plan_protocol(config: Config, prepared: Prepared, *, folds: Sequence[int] | None = None,
                  seeds: Sequence[int] = (0,), models: Iterable[str] = ("tier1", "baseline-svm"),
                  results: str | Path | None = None, tier1_name: str = "tier1") -> list[PlannedRun]:
    """Every run of ``run_protocol`` with its folder and request (0-based ``folds``), in run order."""
    results = Path(results or default_results_dir())
    models = list(models)
    folds = list(range(fold_count(prepared.features, config))) if folds is None else list(folds)
    if not folds or not list(seeds):
        raise ValueError(f"nothing to run: folds {folds}, seeds {list(seeds)}")
    for model in models:
        check_recipe(model, config)  # Tier-1+ never trains under a config loaded without its recipe
        spec = get_model(model)
        if config.data.extra_train and spec.kind != "network" and not spec.multi_corpus:
            raise ValueError(f"data.extra_train is read by the network systems and the -multi heads only; {model} "
                             "would ignore it")
        if spec.multi_corpus and not config.data.extra_train:
            raise ValueError(f"{model} trains on other corpora too, but data.extra_train is empty (load the config "
                             f"with its recipe configs/models/{spec.recipe}.yaml)")
    plan = []
    for fold in folds:
        for seed in seeds:
            cfg = Config(**{**config.__dict__, "seed": int(seed)})
            for model in models:
                spec = get_model(model)
                name = tier1_name if model == "tier1" else model
                request = make_request(cfg.to_dict(), prepared.fingerprint, fold=fold + 1,
                                       sections=spec.sections, version=spec.version, data_content=prepared.content)
                plan.append(PlannedRun(model, name, fold, int(seed), cfg,
                                       run_dir(results, config.data.corpus, config.data.protocol, name, fold, seed),
                                       request))
    return plan


def check_plan(plan: Sequence[PlannedRun], *, retrain: bool = False) -> list[dict[str, Any] | None]:
    """The finished metrics to reuse for each planned run (``None``: train it).

    Raises :class:`serlib.systems.reuse.StaleRunError` at the first folder that holds
    another request; with ``retrain`` every planned folder is removed instead.
    """
    return [reusable_run(run.folder, run.request, retrain=retrain, sections=get_model(run.model).sections)
            for run in plan]


def run_protocol(
    config: Config,
    prepared: Prepared,
    *,
    folds: Sequence[int] | None = None,
    seeds: Sequence[int] = (0,),
    models: Iterable[str] = ("tier1", "baseline-svm"),
    results: str | Path | None = None,
    tier1_name: str = "tier1",
    resume: bool = True,
    retrain: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Train and test every (fold, seed) of the config's protocol; returns one row per run.

    A finished run folder is reused only when it was made from the same
    resolved config and data (:func:`serlib.systems.reuse.reusable_run`); an interrupted
    one of the same request resumes from ``last.pt``. Every folder is checked
    before anything trains, so a stale run stops the batch at once with
    :class:`serlib.systems.reuse.StaleRunError`. ``retrain`` removes the planned folders
    and trains them again.
    """
    plan = plan_protocol(config, prepared, folds=folds, seeds=seeds, models=models, results=results,
                         tier1_name=tier1_name)
    reused = check_plan(plan, retrain=retrain)
    rows = []
    for run, metrics in zip(plan, reused):
        if metrics is not None:
            status = "cached"
        else:
            metrics, status = _train_one(run, prepared, resume=resume, progress=progress)
        rows.append({"model": run.name, "fold": run.fold + 1, "seed": run.seed, "test_uar": metrics["test"]["uar"],
                     "test_accuracy": metrics["test"]["accuracy"], "best_val_uar": metrics["best_val_uar"],
                     "status": status, "path": str(run.folder)})
    return pd.DataFrame(rows)


def _train_one(run: PlannedRun, prepared: Prepared, *, resume: bool, progress: bool) -> tuple[dict[str, Any], str]:
    """Train (or resume) one planned run; returns its metrics and a status line."""
    config = run.config
    assignment = split_for(prepared.features, config, run.fold)
    extra = {"fold": run.fold + 1, "protocol": config.data.protocol, "split_note": assignment.attrs.get("note", "")}
    t0 = time.perf_counter()
    if progress:
        print(f"== {config.data.corpus} {config.data.protocol} {run.name} fold {run.fold + 1} seed {run.seed}", flush=True)
    with run_folder_lock(run.folder):
        record_request(run.folder, run.request)
        try:
            metrics = get_model(run.model).fit(prepared, assignment, config, run.folder, extra=extra, resume=resume,
                                               progress=progress)
        except BaseException:
            forget_request(run.folder)  # a run that failed before training leaves no claim on its folder
            raise
    return metrics, f"ran in {time.perf_counter() - t0:.0f}s"


def summarize_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds x seeds per (corpus, protocol, model) from :func:`serlib.core.runs.list_runs` rows.

    Only seeds that have every fold of the group count: a seed whose folds are
    still running would otherwise tilt the mean towards the folds that finished.
    """
    from serlib.evaluation.metrics import mean_std  # scikit-learn is imported where used: keeps `serlib prepare` fast

    out = []
    for (corpus, protocol, model), g in runs.groupby(["corpus", "protocol", "model"], sort=False):
        folds_per_seed = g.groupby("seed")["fold"].nunique()
        g = g[g["seed"].isin(folds_per_seed[folds_per_seed == g["fold"].nunique()].index)]
        uar_m, uar_s = mean_std(g["test_uar"])
        acc_m, acc_s = mean_std(g["test_accuracy"])
        val_m, _ = mean_std(g["best_val_uar"].astype(float))
        out.append({
            "corpus": corpus, "protocol": protocol, "model": model,
            "folds": g["fold"].nunique(), "seeds": g["seed"].nunique(), "runs": len(g),
            "n_train": int(g["n_train"].mean()), "n_val": int(g["n_val"].mean()), "n_test": int(g["n_test"].mean()),
            "best_val_uar": val_m, "test_uar": uar_m, "test_uar_std": uar_s,
            "test_accuracy": acc_m, "test_accuracy_std": acc_s,
            "compute_minutes": float(g["wall_seconds"].fillna(0).sum()) / 60,
        })
    return pd.DataFrame(out)


__all__ = ["PlannedRun", "plan_protocol", "check_plan", "run_protocol", "summarize_runs"]
