"""Experiments: corpus folder + config -> prepared features -> every fold and seed of a protocol.

This is the layer the CLI and the notebooks call. It owns no algorithm: it wires
:mod:`serlib.corpora`, :mod:`serlib.features`, :mod:`serlib.splits`,
:mod:`serlib.train` and :mod:`serlib.baseline` together and summarises run
folders.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from .config import Config
from .corpora import CorpusScan, corpus_root, read_corpus
from .features import FeatureSet, prepare_features
from .registry import check_recipe, get_model
from .reuse import make_request, record_request, reusable_run
from .runs import default_results_dir, run_dir
from .splits import assert_speaker_independent, get_split, n_folds

SPLIT_SEED = 0  # splits and validation carving are fixed; seeds vary only the model


@dataclass
class Prepared:
    """A corpus scanned and featurised under one config (and the extra training corpora it names)."""

    scan: CorpusScan
    features: FeatureSet
    extra: dict[str, FeatureSet] = field(default_factory=dict)
    """``data.extra_train``: corpus -> its features under the same preprocessing and feature settings."""

    @property
    def fingerprint(self) -> str:
        """The data a run rests on: the corpus's fingerprint, then each extra training corpus's."""
        return self.features.fingerprint_with(self.extra)


def locate_corpus(corpus: str, data_root: str | Path | None = None) -> Path:
    """The corpus folder: ``data_root/<corpus>`` when that exists, else ``data_root`` itself.

    Without ``data_root`` it is ``$SERLIB_DATA/<corpus>`` (:func:`serlib.corpora.corpus_root`),
    so both ``--data-root ../shared/data`` and ``--data-root ../shared/data/ravdess`` work.
    """
    if data_root is None:
        return corpus_root(corpus)
    try:
        return corpus_root(corpus, data_root)  # also matches CREMA-D/, RAVDESS/, ...
    except FileNotFoundError:
        return Path(data_root).expanduser().absolute()  # the corpus folder itself


def prepare(config: Config, *, data_root: str | Path | None = None, cache_dir: str | Path | None = None,
            workers: int | None = None, progress: bool = True, augment: bool | None = None) -> Prepared:
    """Scan ``config.data.corpus`` (under ``data_root`` or ``$SERLIB_DATA``) and build/load its feature cache."""
    root = locate_corpus(config.data.corpus, data_root)
    scan = read_corpus(config.data.corpus, root, include_song=config.data.include_song)
    features = prepare_features(scan.manifest, config, cache_dir=cache_dir, workers=workers,
                                augment=augment, progress=progress)
    extra = {}
    for corpus in config.data.extra_train:  # featurised exactly as the corpus itself
        other = replace(config, data=replace(config.data, corpus=corpus, extra_train=[]))
        extra_scan = read_corpus(corpus, _extra_root(corpus, data_root, root), include_song=config.data.include_song)
        extra[corpus] = prepare_features(extra_scan.manifest, other, cache_dir=cache_dir, workers=workers,
                                         augment=augment, progress=progress)
    return Prepared(scan, features, extra)


def _extra_root(corpus: str, data_root: str | Path | None, main_root: Path) -> Path:
    """An extra training corpus's folder: beside the main corpus, in ``data_root`` or in ``$SERLIB_DATA``."""
    for folder in ([data_root] if data_root is not None else []) + [main_root.parent, None]:
        try:
            return corpus_root(corpus, folder)
        except (FileNotFoundError, ValueError):
            continue
    raise FileNotFoundError(f"data.extra_train: no {corpus} folder beside {main_root} or in $SERLIB_DATA")


def split_for(features: FeatureSet, config: Config, fold: int) -> pd.Series:
    """The assignment of ``fold`` under ``config.data.protocol`` for the usable clips."""
    usable = features.usable
    assignment = get_split(usable, config.data.protocol, fold=fold, seed=SPLIT_SEED, corpus=config.data.corpus,
                           val_fraction=config.data.val_fraction)
    if config.data.protocol != "emobox":  # test speakers are never seen; see the split's note for val
        assert_speaker_independent(usable, assignment, test_only="utterance level" in assignment.attrs.get("note", ""))
    return assignment


def fold_count(features: FeatureSet, config: Config) -> int:
    return n_folds(features.usable, config.data.protocol, corpus=config.data.corpus)


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
        if config.data.extra_train and get_model(model).kind != "network":
            raise ValueError(f"data.extra_train is read by the network systems only; {model} would ignore it")
    plan = []
    for fold in folds:
        for seed in seeds:
            cfg = Config(**{**config.__dict__, "seed": int(seed)})
            for model in models:
                spec = get_model(model)
                name = tier1_name if model == "tier1" else model
                request = make_request(cfg.to_dict(), prepared.fingerprint, fold=fold + 1,
                                       sections=spec.sections, version=spec.version)
                plan.append(PlannedRun(model, name, fold, int(seed), cfg,
                                       run_dir(results, config.data.corpus, config.data.protocol, name, fold, seed),
                                       request))
    return plan


def check_plan(plan: Sequence[PlannedRun], *, retrain: bool = False) -> list[dict[str, Any] | None]:
    """The finished metrics to reuse for each planned run (``None``: train it).

    Raises :class:`serlib.reuse.StaleRunError` at the first folder that holds
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
    resolved config and data (:func:`serlib.reuse.reusable_run`); an interrupted
    one of the same request resumes from ``last.pt``. Every folder is checked
    before anything trains, so a stale run stops the batch at once with
    :class:`serlib.reuse.StaleRunError`. ``retrain`` removes the planned folders
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
    record_request(run.folder, run.request)
    metrics = get_model(run.model).fit(prepared, assignment, config, run.folder, extra=extra, resume=resume,
                                       progress=progress)
    return metrics, f"ran in {time.perf_counter() - t0:.0f}s"


def summarize_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds x seeds per (corpus, protocol, model) from :func:`serlib.runs.list_runs` rows.

    Only seeds that have every fold of the group count: a seed whose folds are
    still running would otherwise tilt the mean towards the folds that finished.
    """
    from .metrics import mean_std  # scikit-learn is imported where used: keeps `serlib prepare` fast

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


def pooled_report(paths: Iterable[str | Path], labels: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """One metrics report over the concatenated test predictions of several runs (e.g. all folds of a seed)."""
    from .metrics import bootstrap_ci, classification_report_dict

    preds = pd.concat([pd.read_csv(Path(p) / "predictions.csv") for p in paths], ignore_index=True)
    labels = list(labels) if labels else sorted(set(preds["true"]))
    report = classification_report_dict(preds["true"], preds["predicted"], labels)
    report["uar_ci95"] = list(bootstrap_ci(preds["true"].values, preds["predicted"].values, seed=seed))
    return report


__all__ = ["Prepared", "PlannedRun", "locate_corpus", "prepare", "split_for", "fold_count", "plan_protocol", "check_plan", "run_protocol", "summarize_runs", "pooled_report"]
