"""Batches behind ``make run`` / ``runs`` / ``summary`` / ``ablations`` / ``cross-corpus``: train first, then pages.

``python -m serlib.experiments.batch corpus ravdess`` (what ``make run CORPUS=ravdess`` calls)

1. runs the grid of the corpus's protocol in this process (:func:`run_corpus_grid`):
   every report system (:data:`serlib.report.comparisons.REPORT_SYSTEMS`) on every
   fold, networks with every seed given, deterministic systems (classical
   baselines, encoder heads) with seed 0 only. Finished runs are reused, stale
   ones refused (:mod:`serlib.systems.reuse`). A system whose dependency is missing
   (Whisper weights, openSMILE, Demucs) is skipped with one printed line; a run
   that fails is recorded and the rest of the grid continues;
2. then executes, with papermill, the pages that *read* those run folders into
   ``book/results/`` (or ``<results>/pages/`` for another results folder, see
   :func:`pages_dir`):

   * ``notebooks/dataset_overview.ipynb`` -> ``corpora/<corpus>-data.ipynb``
   * ``notebooks/train_evaluate.ipynb``   -> ``corpora/<corpus>-<protocol>.ipynb`` (the protocol page)
   * then the summary, its appendix of every system on every corpus (``full-grid.ipynb``, with its
     CSV download ``full-grid.csv``) and the provenance page (with ``runs.csv``).

Executing a page never trains: the protocol, summary, provenance, ablation and
cross-corpus pages only read run folders, so a page can be re-executed at any
time from committed results. ``all`` does this for every corpus whose folder
exists under ``$SERLIB_DATA`` and prints one skip line for each absent one.
The papermill parameters are shown on each page (its injected-parameters
cell); paths among them are shown relative to the project, or as the
environment variable that holds them (``$SERLIB_DATA``), never as machine paths.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from serlib.config import SMOKE_OVERRIDES
from serlib.core.runs import PROJECT_ROOT, default_results_dir
from serlib.data.corpora import CORPORA, DISPLAY_NAMES, corpus_root
from serlib.experiments.grid import data_root, missing_dependency
from serlib.report.comparisons import REPORT_SYSTEMS

NOTEBOOKS = PROJECT_ROOT / "notebooks"
BOOK_RESULTS = PROJECT_ROOT / "book" / "results"
ABLATIONS = ("no-vad", "no-wave-aug", "no-batch-aug", "large", "no-class-weights", "demucs")
SELECTION_FOLDS = (1, 2)
"""RAVDESS EmoBox folds whose validation speakers chose Tier-1+'s recipe (:func:`run_selection`)."""
PATH_PARAMETERS = {"data_root": "SERLIB_DATA", "results_dir": "SERLIB_RESULTS", "cache_dir": "SERLIB_CACHE",
                   "out_dir": "SERLIB_PAGES", "config_path": "SERLIB_CONFIG"}
"""Page parameters that hold paths, and the environment variable a page reads when the path is outside the project."""


def with_notes(output: Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` plus ``notes`` from ``notes/<page>.md`` of the page's results tree, when that exists.

    For ``book/results/corpora/ravdess-emobox.ipynb`` that is
    ``book/results/notes/ravdess-emobox.md``: the analysis written after reading
    a page's numbers lives in the repository, so re-executing the page
    (``make run``, ``make ablations``) keeps it. Explicit ``notes`` win.
    """
    path = output.parent.parent / "notes" / f"{output.stem}.md"
    if "notes" in parameters or not path.is_file():
        return parameters
    return {**parameters, "notes": path.read_text().strip()}


class PageFailed(RuntimeError):
    """A notebook page raised while executing; the previous page (if any) is kept."""


class GridFailed(RuntimeError):
    """Some runs of a grid failed (the others finished and the pages were executed); the message lists them."""


def pages_dir(results: str | Path | None = None) -> Path:
    """Where executed pages go: next to the results they read.

    The project's own ``results/`` feeds the book's pages in ``book/results/``;
    any other results folder (``$SERLIB_RESULTS``, ``results=...``) gets its
    pages in ``<results>/pages/``, so a scratch batch never rewrites the report.
    """
    chosen = Path(results) if results else default_results_dir()
    if chosen.resolve() == (PROJECT_ROOT / "results").resolve():
        return BOOK_RESULTS
    return chosen / "pages"


# ----------------------------------------------------------------------------- executing pages


def page_parameters(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split parameters into what the page shows and the environment its kernel needs.

    A path parameter (:data:`PATH_PARAMETERS`) inside the project is shown
    relative to it (``results``); one outside is shown as its environment
    variable (``$SERLIB_DATA``), whose value is handed to the kernel, so no
    machine path is ever written into a page. Other parameters pass unchanged.

    Returns
    -------
    (shown, environment)
    """
    shown: dict[str, Any] = {}
    env: dict[str, str] = {}
    for key, value in parameters.items():
        var = PATH_PARAMETERS.get(key)
        if var is None or value in (None, ""):
            shown[key] = value
            continue
        path = Path(os.path.expandvars(str(value))).expanduser().resolve()
        try:
            shown[key] = path.relative_to(PROJECT_ROOT.resolve()).as_posix() or "."
        except ValueError:
            shown[key], env[var] = f"${var}", str(path)
    return shown, env


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` in this process (the kernel papermill starts inherits it); restore afterwards."""
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _finish_page(path: Path, output: Path, notebook: str, title: str | None) -> None:
    """Set the page title, fold the parameter cells, replace the machine paths papermill records in the metadata."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    if title:
        cell = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# "))
        cell.source = "\n".join([f"# {title}"] + cell.source.split("\n")[1:])
    for cell in nb.cells:  # the parameter cells stay in the notebook but not on the published page
        tags = cell.metadata.setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    meta = nb.metadata.get("papermill")
    if meta is not None:
        meta["input_path"] = f"notebooks/{notebook}"
        try:
            meta["output_path"] = output.resolve().relative_to(PROJECT_ROOT.resolve()).as_posix()
        except ValueError:
            meta["output_path"] = output.name
    nbformat.write(nb, path)


def execute(notebook: str, output: Path, parameters: dict[str, Any], log: bool = True, title: str | None = None) -> Path:
    """Run ``notebooks/<notebook>`` with papermill into ``output`` (cwd = project root).

    The page is executed into a scratch file and replaces ``output`` only when
    every cell ran: a failed execution never replaces a good page. It raises
    :class:`PageFailed` naming the error and where the failed notebook was kept
    (``_build/failed/`` of the project, or beside the pages of another results folder; never in the book). ``title`` replaces the template's
    first heading, so each executed page is named after what it shows. The
    page's written notes, if any, come from :func:`with_notes`; path parameters
    are shown as :func:`page_parameters` says.
    """
    import papermill as pm

    shown, env = page_parameters(with_notes(output, parameters))
    output.parent.mkdir(parents=True, exist_ok=True)
    # beside the project's own pages in its _build/, beside any other results' pages in theirs; one name per process
    build = PROJECT_ROOT / "_build" if output.resolve().is_relative_to(PROJECT_ROOT) else output.parent / "_build"
    scratch = build / "executing" / f"{output.parent.name}-{output.stem}.{os.getpid()}.ipynb"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"[papermill] {notebook} -> {output}  {shown}", flush=True)
    try:
        with _environment(env):
            pm.execute_notebook(str(NOTEBOOKS / notebook), str(scratch), parameters=shown, cwd=str(PROJECT_ROOT),
                                kernel_name="python3", progress_bar=False, log_output=log,
                                request_save_on_cell_execute=True)
    except pm.PapermillExecutionError as err:
        failed = build / "failed" / f"{output.parent.name}-{output.name}"
        failed.parent.mkdir(parents=True, exist_ok=True)
        os.replace(scratch, failed)
        raise PageFailed(f"{output.name} failed at cell {err.exec_count}: {err.ename}: {str(err.evalue)[:300]}; "
                         f"the previous page is kept, the failed notebook is {failed}") from None
    _finish_page(scratch, output, notebook, title)
    os.replace(scratch, output)
    print(f"[papermill] done in {time.perf_counter() - t0:.0f}s: {output}", flush=True)
    return output


# ----------------------------------------------------------------------------- running the grid


def corpus_available(corpus: str, root: Path | None) -> bool:
    """Whether ``root`` holds a non-empty folder for ``corpus`` (named as :func:`corpus_root` matches it)."""
    if root is None:
        return False
    try:
        return any(corpus_root(corpus, root).iterdir())
    except (FileNotFoundError, ValueError):
        return False


_ABSOLUTE_PATH = re.compile(r"(?<![\w~.:/])/(?:[\w.+-]+/)*([\w.+-]+)")


def public_text(text: str) -> str:
    """``text`` without machine paths, for a page: the home folder becomes ``~``, the project ``.``, other paths ``…/name``."""
    text = text.replace(str(PROJECT_ROOT), ".").replace(str(Path.home()), "~")
    return _ABSOLUTE_PATH.sub(lambda m: f"…/{m.group(1)}", text)


def seeds_for(model: str, seeds: Sequence[int]) -> list[int]:
    """Seeded systems (networks, the MLP head) train with every seed given; deterministic ones with seed 0 only."""
    from serlib.systems.registry import get_model

    return [int(s) for s in seeds] if get_model(model).seeded else [0]


@dataclass
class GridOutcome:
    """What :func:`run_corpus_grid` did: one row per run, and the systems skipped or failed."""

    protocol: str
    runs: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)  # model -> missing dependency
    failed: dict[str, str] = field(default_factory=dict)  # model -> error


def load_corpus_config(corpus: str, *, protocol: str | None = None, epochs: int | None = None, smoke: bool = False,
                       overlays: Sequence[str | Path] = (), overrides: Sequence[str] = ()):
    """``configs/<corpus>.yaml`` under ``overlays`` with the batch's overrides (protocol, epochs, smoke), then
    ``overrides``; raises ConfigError on a typo."""
    from serlib.config import SMOKE_OVERRIDES, load_config

    batch = [f"data.protocol={protocol}"] if protocol else []
    if epochs:
        batch.append(f"train.epochs={epochs}")
    if smoke:
        batch += list(SMOKE_OVERRIDES)
    return load_config(PROJECT_ROOT / "configs" / f"{corpus}.yaml", *overlays, overrides=[*batch, *overrides])


def run_corpus_grid(corpus: str, *, protocol: str | None = None, models: Sequence[str] = REPORT_SYSTEMS,
             seeds: Sequence[int] = (0, 1, 2), folds: Sequence[int] | None = None, epochs: int | None = None,
             smoke: bool = False, root: Path | None = None, results: str | Path | None = None,
             cache_dir: str | Path | None = None, retrain: bool = False, progress: bool = True,
             scheduler: str | None = None) -> GridOutcome:
    """Train and test every system of a corpus protocol into run folders.

    ``scheduler`` ``None`` (the Python API's default) runs in this process;
    ``"local"`` (what ``make run`` uses) starts a Dask ``LocalCluster`` sized from
    the cores and ``$SERLIB_THREADS``; ``tcp://host:port`` sends every run to that
    scheduler's workers (:mod:`serlib.experiments.grid`, one task per run).

    Parameters
    ----------
    models
        Registered system names; networks get every seed of ``seeds``,
        deterministic systems seed 0 only (:func:`seeds_for`).
    folds
        1-based folds (default: all). ``smoke`` keeps the first fold and seed
        and uses :data:`serlib.config.SMOKE_OVERRIDES`.
    retrain
        Replace run folders made from another config or data.

    A system whose dependency is missing is skipped with a printed line; any
    other error of a system is recorded in :attr:`GridOutcome.failed` and the
    next system runs. A stale run folder (:class:`serlib.systems.reuse.StaleRunError`)
    stops the grid: it needs ``--retrain`` or a look at the config.
    """
    from serlib.systems.reuse import StaleRunError
    from serlib.experiments.protocol import run_protocol
    from serlib.features.prepared import prepare
    from serlib.systems.registry import get_model, recipe_overlays, run_order

    config = load_corpus_config(corpus, protocol=protocol, epochs=epochs, smoke=smoke)
    for model in models:
        get_model(model)  # an unknown name stops before anything runs
    if smoke:
        folds, seeds = list(folds or [1])[:1], list(seeds)[:1]
    if scheduler:
        return _run_on_dask(corpus, config, models, seeds, folds, epochs=epochs, smoke=smoke, root=root,
                            results=results, cache_dir=cache_dir, retrain=retrain, progress=progress,
                            scheduler=scheduler)
    # a system with a recipe (Tier-1+) trains under its own config and feature cache
    configs = {recipe: load_corpus_config(corpus, protocol=protocol, epochs=epochs, smoke=smoke, overlays=recipe)
               for recipe in {recipe_overlays(m) for m in models}}
    prepared_by: dict[tuple[str, ...], Any] = {}

    def prepared_for(model: str) -> Any:
        recipe = recipe_overlays(model)
        if recipe not in prepared_by:
            prepared_by[recipe] = prepare(configs[recipe], data_root=root, cache_dir=cache_dir, progress=progress)
        return prepared_by[recipe]

    from serlib.experiments.grid import check_stale

    # every system's folders are checked before the first one trains, from the corpus scan alone
    check_stale(_grid_specs(corpus, config, models, seeds, folds, epochs=epochs, smoke=smoke, root=root,
                            results=results, cache_dir=cache_dir, retrain=retrain))
    outcome = GridOutcome(config.data.protocol, pd.DataFrame())
    tables = []
    for model in [m for stage in run_order(models) for m in stage]:  # a fusion after the systems it reads
        try:
            table = run_protocol(configs[recipe_overlays(model)], prepared_for(model),
                                 folds=[f - 1 for f in folds] if folds else None,
                                 seeds=seeds_for(model, seeds), models=(model,), results=results, retrain=retrain,
                                 progress=progress)
            tables.append(table)
        except (KeyboardInterrupt, StaleRunError):
            raise
        except Exception as err:  # noqa: BLE001 - one system's failure never stops the grid
            reason = missing_dependency(err)
            if reason is not None:
                outcome.skipped[model] = reason
                print(f"skip {model}: {reason}", flush=True)
            else:
                outcome.failed[model] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:400]
                print(f"FAILED {model}: {outcome.failed[model]}", flush=True)
    outcome.runs = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return outcome


def _grid_specs(corpus: str, config, models: Sequence[str], seeds: Sequence[int], folds: Sequence[int] | None, *,
                epochs: int | None, smoke: bool, root: Path | None, results: str | Path | None,
                cache_dir: str | Path | None, retrain: bool) -> list:
    """The grid's run specifications (:class:`serlib.experiments.grid.RunSpec`), one per (model, fold, seed)."""
    import serlib.experiments.grid as grid

    overrides = ((f"train.epochs={epochs}",) if epochs else ()) + (tuple(SMOKE_OVERRIDES) if smoke else ())
    return grid.corpus_specs(corpus, models, network_seeds=seeds, folds=[f - 1 for f in folds] if folds else None,
                             protocol=config.data.protocol, overrides=overrides,
                             data_root=str(root) if root else None, cache_dir=str(cache_dir) if cache_dir else None,
                             results=str(results) if results else None, retrain=retrain)


def _run_on_dask(corpus: str, config, models: Sequence[str], seeds: Sequence[int], folds: Sequence[int] | None, *,
                 epochs: int | None, smoke: bool, root: Path | None, results: str | Path | None,
                 cache_dir: str | Path | None, retrain: bool, progress: bool, scheduler: str) -> GridOutcome:
    """:func:`run_corpus_grid` on Dask: one task per (model, fold, seed); skipped and failed systems as in-process.

    Fusion systems combine other systems' runs, so each goes to the workers after the runs it reads have finished
    (:func:`serlib.systems.registry.run_order`).
    """
    import serlib.experiments.grid as grid
    from serlib.systems.registry import run_order

    stages = run_order(models)
    specs, tables = [], []
    for stage in filter(None, stages):
        mine = _grid_specs(corpus, config, stage, seeds, folds, epochs=epochs, smoke=smoke, root=root,
                           results=results, cache_dir=cache_dir, retrain=retrain)
        tables.append(grid.run_grid(mine, scheduler=None if scheduler == "local" else scheduler, progress=progress))
        specs += mine
        if "status" in tables[-1] and (tables[-1]["status"] == "stale").any():
            break  # reported below; the next stage would read stale runs
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    stale = table[table["status"] == "stale"] if "status" in table else table.iloc[:0]
    if len(stale):
        from serlib.systems.reuse import StaleRunError

        raise StaleRunError(stale["error"].iloc[0])
    outcome = GridOutcome(config.data.protocol, table)
    for spec, row in zip(specs, table.itertuples()):
        if row.status == "failed":
            reason = getattr(row, "missing_dependency", None)
            if isinstance(reason, str) and reason:
                outcome.skipped[spec.model] = reason
            else:
                outcome.failed.setdefault(spec.model, f"{spec.label}: {row.error}")
    for model, reason in outcome.skipped.items():
        print(f"skip {model}: {reason}", flush=True)
    return outcome


def _failure_message(what: str, failed: dict[str, str]) -> str:
    return f"{what}: {len(failed)} system(s) failed: " + "; ".join(f"{m}: {e}" for m, e in failed.items())


def run_corpus(corpus: str, *, protocol: str | None = None, models: Sequence[str] = REPORT_SYSTEMS,
               seeds: Sequence[int] = (0, 1, 2), epochs: int | None = None, out_dir: Path | None = None,
               smoke: bool = False, root: Path | None = None, results: str | None = None, cache_dir: str | None = None,
               summary: bool = True, retrain: bool = False, train: bool = True,
               scheduler: str | None = None) -> list[Path]:
    """Run the grid of one corpus protocol (:func:`run_corpus_grid`), then execute its data and protocol pages (then the summary).

    The config (with ``protocol``) is loaded and validated before anything
    runs, so a typo stops the batch with one line and leaves every page as it
    was. ``train=False`` only re-executes the pages from the run folders that
    exist. When some system failed, the pages are still executed (they list it
    as not run) and :class:`GridFailed` is raised at the end.
    """
    root = root or data_root()
    out_dir = out_dir or pages_dir(results)
    protocol = load_corpus_config(corpus, protocol=protocol).data.protocol
    failed: dict[str, str] = {}
    if train:
        outcome = run_corpus_grid(corpus, protocol=protocol, models=models, seeds=seeds, epochs=epochs, smoke=smoke,
                           root=root, results=results, cache_dir=cache_dir, retrain=retrain, scheduler=scheduler)
        failed = outcome.failed
    name = DISPLAY_NAMES[corpus]
    done = [execute("dataset_overview.ipynb", out_dir / "corpora" / f"{corpus}-data.ipynb",  # the primary protocol's folds
                    {"corpus": corpus, "protocol": None, "data_root": str(root) if root else None,
                     "cache_dir": cache_dir, "smoke": smoke}, title=f"{name}: the data"),
            execute("train_evaluate.ipynb", out_dir / "corpora" / f"{corpus}-{protocol}.ipynb",
                    {"corpus": corpus, "protocol": protocol, "models": list(models), "results_dir": results,
                     "smoke": smoke}, title=f"{name}: {protocol} protocol")]
    if summary:
        done += run_summary(out_dir, results=results, root=root)
    if failed:
        raise GridFailed(_failure_message(f"{corpus} {protocol}", failed))
    return done


MANIFEST_SYSTEMS: tuple[str, ...] = ("tier1", "baseline-svm", "egemaps-svm", "compare-svm", "whisper-logreg",
                                     "whisper-mlp")
"""What ``make run MANIFEST=FILE`` trains on a corpus of one's own by default."""


def run_manifest(source: str | Path, *, models: Sequence[str] = MANIFEST_SYSTEMS, seeds: Sequence[int] = (0, 1, 2),
                 folds: int | None = None, epochs: int | None = None, results: str | Path | None = None,
                 cache_dir: str | Path | None = None, out_dir: Path | None = None, retrain: bool = False,
                 train: bool = True, progress: bool = True) -> list[Path]:
    """A manifest corpus (:mod:`serlib.data.manifest`) as any other corpus: its grid, then its data and protocol pages.

    Runs go to ``<results>/<manifest name>/<protocol>/<system>/fold-k/seed-s/``;
    the resolved config is kept as ``<results>/<manifest name>/manifest-config.yaml``
    (the data page reads it), and the pages go where :func:`pages_dir` says.
    """
    import yaml

    from serlib.config import load_config
    from serlib.data.manifest import manifest_overrides
    from serlib.experiments.protocol import run_protocol
    from serlib.features.prepared import prepare
    from serlib.systems.registry import get_model, recipe_overlays, run_order

    overrides, line = manifest_overrides(source, folds)
    print(line, flush=True)
    overrides += [f"train.epochs={epochs}"] if epochs else []
    config = load_config(None, overrides=overrides)
    results_root = Path(results) if results else default_results_dir()
    if train:
        for model in models:
            get_model(model)
        prepared_by: dict[tuple[str, ...], Any] = {}
        for model in [m for stage in run_order(models) for m in stage]:
            recipe = recipe_overlays(model)
            run_config = load_config(None, *recipe, overrides=overrides)
            if recipe not in prepared_by:
                prepared_by[recipe] = prepare(run_config, cache_dir=cache_dir, progress=progress)
            try:
                run_protocol(run_config, prepared_by[recipe], seeds=seeds_for(model, seeds), models=(model,),
                             results=results_root, retrain=retrain, progress=progress)
            except (KeyboardInterrupt, ValueError):
                raise
            except Exception as err:  # noqa: BLE001 - a system whose dependency is missing is skipped
                reason = missing_dependency(err)
                if reason is None:
                    raise
                print(f"skip {model}: {reason}", flush=True)
    folder = results_root / config.data.corpus
    folder.mkdir(parents=True, exist_ok=True)
    saved = folder / "manifest-config.yaml"
    saved.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    out_dir = out_dir or pages_dir(results)
    name, protocol = config.data.corpus, config.data.protocol
    common = {"corpus": name, "results_dir": str(results_root)}
    return [execute("dataset_overview.ipynb", out_dir / "corpora" / f"{name}-data.ipynb",
                    {**common, "config_path": str(saved), "cache_dir": str(cache_dir) if cache_dir else None},
                    log=False, title=f"{name}: data"),
            execute("train_evaluate.ipynb", out_dir / "corpora" / f"{name}-{protocol}.ipynb",
                    {**common, "protocol": protocol, "models": list(models)}, log=False,
                    title=f"{name}: protocol {protocol}")]


def run_summary(out_dir: Path | None = None, *, results: str | None = None, root: Path | None = None,
                smoke: bool = False) -> list[Path]:
    """Execute the summary and provenance pages from the run folders (never trains)."""
    out_dir = out_dir or pages_dir(results)
    root = root or data_root()
    params = {"results_dir": results, "data_root": str(root) if root else None, "smoke": smoke}
    return [execute("summary.ipynb", out_dir / "summary.ipynb", params, log=False),
            execute("full_grid.ipynb", out_dir / "full-grid.ipynb",
                    {"results_dir": results, "out_dir": str(out_dir), "smoke": smoke}, log=False),
            execute("provenance.ipynb", out_dir / "provenance.ipynb", {"results_dir": results, "out_dir": str(out_dir)},
                    log=False)]


def run_ablations(corpus: str, *, ablations: Sequence[str] = ABLATIONS, protocol: str | None = None,
                  seeds: Sequence[int] = (0,), folds: Sequence[int] | None = None, smoke: bool = False,
                  root: Path | None = None, results: str | None = None, cache_dir: str | None = None,
                  out_dir: Path | None = None, train: bool = True, scheduler: str | None = None) -> Path:
    """Train Tier-1 and each ablation overlay on one corpus protocol, then execute the ablation page from the runs.

    An ablation whose dependency is missing (Demucs weights) is passed to the
    page as not run, with the reason. ``scheduler`` ``"local"`` or
    ``tcp://host:port`` runs every (ablation, fold, seed) as one Dask task
    (:mod:`serlib.experiments.grid`); ``None`` runs them in this process.
    """
    root = root or data_root()
    out_dir = out_dir or pages_dir(results)
    protocol = load_corpus_config(corpus, protocol=protocol).data.protocol
    if smoke:
        folds, seeds = list(folds or [1])[:1], list(seeds)[:1]
    failed: dict[str, str] = {}
    if train:
        skipped, failed = train_ablations(corpus, ablations, protocol=protocol, seeds=seeds, folds=folds, smoke=smoke,
                                          root=root, results=results, cache_dir=cache_dir, scheduler=scheduler)
    else:  # say why an ablation without runs cannot run here, without running it
        skipped = _ablations_not_runnable(corpus, protocol, ablations, results)
    page = execute("ablations.ipynb", out_dir / "studies" / f"ablations-{corpus}.ipynb",
                   {"corpus": corpus, "protocol": protocol, "ablations": list(ablations), "not_run": skipped,
                    "results_dir": results, "smoke": smoke},
                   title=f"Tier-1 ablations on {DISPLAY_NAMES[corpus]}")
    if failed:
        raise GridFailed(_failure_message(f"ablations on {corpus}", failed))
    return page


def run_selection(corpus: str = "ravdess", *, folds: Sequence[int] = SELECTION_FOLDS, seeds: Sequence[int] = (0,),
                  smoke: bool = False, root: Path | None = None, results: str | None = None,
                  cache_dir: str | None = None, out_dir: Path | None = None, train: bool = True,
                  scheduler: str | None = None, check: bool = True) -> Path:
    """Train the Tier-1+ selection steps (``configs/ablations/plus-*.yaml``) on ``folds``, then execute the Tier-1+ page.

    With ``check`` the chosen recipe is then checked on
    :data:`serlib.report.selection.CHECK_CORPUS`'s validation speakers (same folds and
    seeds): Tier-1+ itself and each ``configs/ablations/tplus-<candidate>.yaml``; a
    candidate that gains :data:`serlib.report.selection.CHECK_RULE_POINTS` is repeated
    with :data:`serlib.report.selection.CHECK_SEEDS` and trained on ``corpus``'s selection folds.
    The page shows the validation UAR of each step (the criterion), the chosen
    recipe, the check, and Tier-1+'s results on every corpus where it has run folders.
    """
    from serlib.report.selection import (
        CHECK_CANDIDATES,
        CHECK_CORPUS,
        CHECK_SEEDS,
        SELECTION_STEPS,
        check_table,
        passing_candidates,
    )

    root = root or data_root()
    out_dir = out_dir or pages_dir(results)
    protocol = load_corpus_config(corpus).data.protocol
    check_protocol = load_corpus_config(CHECK_CORPUS).data.protocol
    if smoke:
        folds, seeds = list(folds)[:1], list(seeds)[:1]
    failed: dict[str, str] = {}
    if train:
        _, failed = train_ablations(corpus, [f"plus-{s}" for s in SELECTION_STEPS], protocol=protocol, seeds=seeds,
                                    folds=folds, smoke=smoke, root=root, results=results, cache_dir=cache_dir,
                                    scheduler=scheduler)
    if train and check and corpus_available(CHECK_CORPUS, root):
        common = dict(folds=folds, smoke=smoke, root=root, results=results, cache_dir=cache_dir, scheduler=scheduler)
        failed.update(train_check(CHECK_CORPUS, check_protocol, list(CHECK_CANDIDATES), seeds=seeds, **common))
        table = check_table(results or default_results_dir(), CHECK_CORPUS, check_protocol, folds, seeds=seeds)
        repeat = [] if smoke else passing_candidates(table)
        if repeat:  # one seed is not enough to let a candidate near the recipe; nor is one corpus
            failed.update(train_check(CHECK_CORPUS, check_protocol, repeat, seeds=CHECK_SEEDS, **common))
            failed.update(train_check(corpus, protocol, repeat, seeds=seeds, **common))
    page = execute("tier1plus.ipynb", out_dir / "studies" / "tier1plus-recipe.ipynb",
                   {"corpus": corpus, "protocol": protocol, "selection_folds": list(folds), "results_dir": results,
                    "check_corpus": CHECK_CORPUS if check else None, "check_protocol": check_protocol,
                    "smoke": smoke}, title="Tier-1+: the improved recipe")
    if failed:
        raise GridFailed(_failure_message(f"Tier-1+ selection on {corpus}", failed))
    return page


def train_check(corpus: str, protocol: str, candidates: Sequence[str], *, seeds: Sequence[int], folds: Sequence[int],
                smoke: bool, root: Path | None, results: str | None, cache_dir: str | None,
                scheduler: str | None) -> dict[str, str]:
    """Train Tier-1+ (the control) and each ``configs/ablations/tplus-<candidate>.yaml`` on ``corpus``; the failures."""
    control = run_corpus_grid(corpus, protocol=protocol, models=("tier1plus",), seeds=seeds, folds=folds, smoke=smoke,
                       root=root, results=results, cache_dir=cache_dir, progress=False, scheduler=scheduler)
    _, failed = train_ablations(corpus, [f"tplus-{c}" for c in candidates], protocol=protocol, seeds=seeds,
                                folds=folds, smoke=smoke, root=root, results=results, cache_dir=cache_dir,
                                scheduler=scheduler, base=False)  # the control is Tier-1+, not Tier-1
    return {f"{corpus} {k}": v for k, v in {**control.failed, **failed}.items()}


def train_ablations(corpus: str, ablations: Sequence[str], *, protocol: str, seeds: Sequence[int],
                    folds: Sequence[int] | None, smoke: bool, root: Path | None, results: str | None,
                    cache_dir: str | None, scheduler: str | None, base: bool = True
                    ) -> tuple[dict[str, str], dict[str, str]]:
    """Train Tier-1 (``base``, unless ``base=False``) and each ablation overlay; returns (skipped, failed)
    ablations with the reason.

    Every overlay is loaded first, so a missing or invalid one stops the batch
    before anything runs.
    """
    from serlib.systems.reuse import StaleRunError
    from serlib.experiments.protocol import run_protocol
    from serlib.features.prepared import prepare

    for name in ablations:
        load_corpus_config(corpus, protocol=protocol, smoke=smoke,
                           overlays=[PROJECT_ROOT / "configs" / "ablations" / f"{name}.yaml"])
    if scheduler:
        return _ablations_on_dask(corpus, protocol, ablations, seeds=seeds, folds=folds, smoke=smoke, root=root,
                                  results=results, cache_dir=cache_dir, scheduler=scheduler, base=base)
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name in ["base", *ablations] if base else ablations:
        overlays = [] if name == "base" else [PROJECT_ROOT / "configs" / "ablations" / f"{name}.yaml"]
        config = load_corpus_config(corpus, protocol=protocol, smoke=smoke, overlays=overlays)
        try:
            prepared = prepare(config, data_root=root, cache_dir=cache_dir, progress=False)
            run_protocol(config, prepared, folds=[f - 1 for f in folds] if folds else None, seeds=seeds,
                         results=results, models=("tier1",), tier1_name="tier1" if name == "base" else f"tier1-{name}",
                         progress=False)
        except (KeyboardInterrupt, StaleRunError):
            raise
        except Exception as err:  # noqa: BLE001 - one ablation's failure never stops the others
            reason = missing_dependency(err)
            (skipped if reason else failed)[name] = public_text(reason or f"{type(err).__name__}: {err}")[:300]
            print(f"{'skip' if reason else 'FAILED'} ablation {name}: {(skipped if reason else failed)[name]}", flush=True)
    return skipped, failed


def _ablations_on_dask(corpus: str, protocol: str, ablations: Sequence[str], *, seeds: Sequence[int],
                       folds: Sequence[int] | None, smoke: bool, root: Path | None, results: str | None,
                       cache_dir: str | None, scheduler: str, base: bool = True
                       ) -> tuple[dict[str, str], dict[str, str]]:
    """Every (ablation, fold, seed) of :func:`run_ablations` as one Dask task; returns (skipped, failed) by name."""
    import serlib.experiments.grid as grid
    from serlib.systems.reuse import StaleRunError

    common = dict(protocol=protocol, overrides=tuple(SMOKE_OVERRIDES) if smoke else (),
                  data_root=str(root) if root else None, cache_dir=cache_dir, results=results)
    names, specs = [], []
    for name in ["base", *ablations] if base else ablations:
        overlays = () if name == "base" else (str(PROJECT_ROOT / "configs" / "ablations" / f"{name}.yaml"),)
        mine = grid.corpus_specs(corpus, ["tier1"], network_seeds=seeds, folds=[f - 1 for f in folds] if folds else None,
                                 overlays=overlays, name="tier1" if name == "base" else f"tier1-{name}", **common)
        names += [name] * len(mine)
        specs += mine
    table = grid.run_grid(specs, scheduler=None if scheduler == "local" else scheduler)
    if "status" in table and (table["status"] == "stale").any():
        raise StaleRunError(table.loc[table["status"] == "stale", "error"].iloc[0])
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name, row in zip(names, table.itertuples()):
        if row.status != "failed":
            continue
        reason = getattr(row, "missing_dependency", None)
        if isinstance(reason, str) and reason:
            skipped[name] = public_text(reason)[:300]
        else:
            failed.setdefault(name, public_text(f"{row.run}: {row.error}")[:300])
    for name, why in {**skipped, **failed}.items():
        print(f"{'skip' if name in skipped else 'FAILED'} ablation {name}: {why}", flush=True)
    return skipped, failed


def _ablations_not_runnable(corpus: str, protocol: str, ablations: Sequence[str], results: str | Path | None
                            ) -> dict[str, str]:
    """Ablations without run folders whose dependency is missing here (the Demucs weights), with the reason."""
    from serlib.features.preprocess import load_pretrained_demucs

    out = {}
    root = Path(results) if results else default_results_dir()
    for name in ablations:
        if (root / corpus / protocol / f"tier1-{name}").is_dir():
            continue
        config = load_corpus_config(corpus, protocol=protocol,
                                    overlays=[PROJECT_ROOT / "configs" / "ablations" / f"{name}.yaml"])
        if config.preprocess.denoise == "demucs":
            try:
                load_pretrained_demucs(config.preprocess.demucs_model)
            except Exception as err:  # noqa: BLE001 - only missing weights are expected here
                reason = missing_dependency(err)
                if reason:
                    out[name] = public_text(reason)[:300]
    return out


def run_cross_corpus(groups: dict[str, Sequence[str]] | None = None, *, seeds: Sequence[int] = (0, 1),
                     smoke: bool = False, root: Path | None = None, results: str | None = None,
                     cache_dir: str | None = None, out_dir: Path | None = None, train: bool = True,
                     scheduler: str | None = None, protocol: str | None = None) -> Path:
    """Train and score the cross-corpus matrices (:mod:`serlib.experiments.crosscorpus`), then execute their page from the runs.

    ``groups`` defaults to :data:`serlib.experiments.crosscorpus.GROUPS` (the six corpora on
    4 classes, the five acted ones on 6); each corpus trains on fold 1 of its
    primary protocol, or of ``protocol`` when given. With ``scheduler``
    (``"local"`` or ``tcp://host:port``) every Tier-1 training is one Dask task;
    the cross-corpus scoring then runs here from the finished run folders.
    """
    import serlib.experiments.crosscorpus as crosscorpus

    groups = {k: list(v) for k, v in (groups or crosscorpus.GROUPS).items()}
    root = root or data_root()
    out_dir = out_dir or pages_dir(results)
    if train and scheduler:
        import serlib.experiments.grid as grid
        from serlib.systems.reuse import StaleRunError

        specs = crosscorpus.training_specs(groups, data_root=root, results=results or default_results_dir(),
                                           cache_dir=cache_dir, seeds=seeds, smoke=smoke, protocol=protocol)
        table = grid.run_grid(specs, scheduler=None if scheduler == "local" else scheduler)
        if (table["status"] == "stale").any():
            raise StaleRunError(table.loc[table["status"] == "stale", "error"].iloc[0])
        if grid.failures(table):
            raise GridFailed("cross-corpus trainings failed: " + "; ".join(grid.failures(table)))
    if train:
        crosscorpus.run_matrices(groups, data_root=root, results=results or default_results_dir(),
                                 cache_dir=cache_dir, seeds=seeds, smoke=smoke, protocol=protocol)
        if not smoke:
            run_encoder_cross_corpus(root=root, results=results)
    return execute("cross_corpus.ipynb", out_dir / "studies" / "cross-corpus.ipynb",
                   {"pairs": groups, "seeds": list(seeds), "results_dir": results, "protocol": protocol}, log=False)


def run_encoder_cross_corpus(*, root: Path | None = None, results: str | None = None) -> None:
    """The Whisper head's cross-corpus matrices (every group with its audio present, every normalisation)."""
    import serlib.experiments.encoder_crosscorpus as xc

    for group, corpora in xc.ENCODER_GROUPS.items():
        if not all(corpus_available(c, root) for c in corpora):
            print(f"skip the Whisper cross-corpus group {group}: not every corpus of {corpora} is present")
            continue
        data: dict = {}
        for normalisation in xc.NORMALISATIONS:
            try:
                xc.encoder_matrix(group, corpora, normalisation=normalisation, data_root=root, results=results,
                                  data=data)
            except Exception as err:  # noqa: BLE001 - a missing encoder skips, anything else is reported
                reason = missing_dependency(err)
                if reason is None:
                    raise
                print(f"skip the Whisper cross-corpus matrices: {reason}")
                return


# ----------------------------------------------------------------------------- command line


def _count(low: int):
    """An argparse type: an integer of at least ``low`` (``--seeds -1`` and ``--epochs 0`` are refused at once)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value
    return parse


def _add_scheduler_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", default=os.environ.get("SERLIB_SCHEDULER") or "local",
                        help="local (a Dask LocalCluster, the default), tcp://host:port (a running scheduler), "
                             "or none (one process)")


def main(argv: Sequence[str] | None = None) -> int:
    from serlib.systems.reuse import StaleRunError

    parser = argparse.ArgumentParser(prog="python -m serlib.experiments.batch", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("corpus", "all"):
        p = sub.add_parser(name)
        if name == "corpus":
            p.add_argument("corpus", choices=CORPORA)
            p.add_argument("--protocol")
        p.add_argument("--seeds", type=_count(0), nargs="+", default=[0, 1, 2], help="network seeds (others: seed 0)")
        p.add_argument("--models", nargs="+", default=list(REPORT_SYSTEMS), help="registered systems to run and show")
        p.add_argument("--epochs", type=_count(1))
        p.add_argument("--smoke", action="store_true", help="tiny run (2 epochs, 1 fold, 1 seed)")
        p.add_argument("--retrain", action="store_true", help="replace run folders made from another config or data")
        p.add_argument("--pages-only", action="store_true", help="re-execute the pages from existing run folders")
        _add_scheduler_option(p)
        _add_allow_dirty_option(p)
    sub.add_parser("summary")
    p = sub.add_parser("ablations")
    p.add_argument("--corpus", default="ravdess")
    p.add_argument("--seeds", type=_count(0), nargs="+", default=[0])
    p.add_argument("--pages-only", action="store_true")
    _add_scheduler_option(p)
    _add_allow_dirty_option(p)
    p = sub.add_parser("selection", help="Tier-1+: train the recipe steps on the selection folds, then its page")
    p.add_argument("--pages-only", action="store_true")
    _add_scheduler_option(p)
    _add_allow_dirty_option(p)
    p = sub.add_parser("cross-corpus", help="Tier-1 trained on fold 1 of each corpus, tested on the others; then "
                                            "the page (with the Whisper matrices)")
    p.add_argument("--seeds", type=_count(0), nargs="+", default=[0, 1])
    p.add_argument("--pages-only", action="store_true")
    _add_scheduler_option(p)
    _add_allow_dirty_option(p)
    p = sub.add_parser("manifest", help="a corpus of your own (CSV/TSV of path, label[, speaker, split], or a "
                                        "LABEL/ folder): its grid, then its data and protocol pages")
    p.add_argument("manifest")
    p.add_argument("--models", nargs="+", default=list(MANIFEST_SYSTEMS))
    p.add_argument("--seeds", type=_count(0), nargs="+", default=[0, 1, 2], help="network seeds (others: seed 0)")
    p.add_argument("--folds", type=_count(2), help="number of speaker (or stratified) folds")
    p.add_argument("--epochs", type=_count(1))
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--pages-only", action="store_true")
    _add_allow_dirty_option(p)
    p = sub.add_parser("rerun-dirty", help="re-run, from this clean tree, every run folder whose provenance "
                                           "records uncommitted code; prints the old and new test UAR of each")
    p.add_argument("--corpus", nargs="+", choices=CORPORA, help="only these corpora (default: all)")
    p.add_argument("--runs", metavar="PATTERN", help="only runs whose corpus/protocol/model/fold-k/seed-s matches "
                                                     "this shell pattern, e.g. 'ravdess/*/tier1-plus-*/*'")
    p.add_argument("--dry-run", action="store_true", help="list them and stop")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:  # one line: every run folder resumes from its last.pt with the same command
        print("make: interrupted; run the same command again to resume", file=sys.stderr)
        # an interrupted page leaves papermill's event-loop task behind, whose KeyboardInterrupt asyncio would
        # log with a traceback when it is collected; the page itself was never replaced
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        return 130
    except PageFailed as err:
        print(f"make: page not replaced: {err}", file=sys.stderr)
        return 1
    except GridFailed as err:
        print(f"make: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # ConfigError and friends: a typo in a make variable
        print(f"make: error: {err}", file=sys.stderr)
        return 2
    except StaleRunError as err:  # a run folder made from another config or data: needs RETRAIN=1
        print(f"make: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2


def _add_allow_dirty_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-dirty", action="store_true",
                        help="train even when serlib/ or configs/ have uncommitted changes (each run records it)")


def require_clean_tree(allow_dirty: bool) -> None:
    """Refuse to train from uncommitted code, unless allowed; an allowed run records ``allow_dirty`` in its provenance.

    A run made from uncommitted code names a commit that does not hold that
    code, so the report could not be traced back to it.
    """
    from serlib.core.runs import ALLOW_DIRTY_ENV, git_commit

    commit = git_commit()
    if not commit.endswith("+dirty"):
        return
    if not allow_dirty:
        raise ValueError("serlib/ or configs/ have uncommitted changes: commit them first, so every run names the "
                         "code it ran, or pass --allow-dirty (the runs then record it)")
    os.environ[ALLOW_DIRTY_ENV] = "1"  # read by serlib.core.runs.provenance, here and in the grid's workers


def _scheduler(args: argparse.Namespace) -> str | None:
    """``--scheduler``: ``none`` runs in this process, anything else goes to Dask."""
    value = getattr(args, "scheduler", "local")
    return None if value in ("none", "", None) else value


def _run(args: argparse.Namespace) -> int:
    root = data_root()
    train = not getattr(args, "pages_only", False)
    if args.what == "rerun-dirty":
        return _rerun_dirty(args, root)
    if train and args.what not in ("summary",):
        require_clean_tree(args.allow_dirty)
    if args.what == "corpus":
        if not corpus_available(args.corpus, root):
            print(f"skip {args.corpus}: no data at {root}/{args.corpus} (set SERLIB_DATA; see README, 'Data')")
            return 2
        run_corpus(args.corpus, protocol=args.protocol, models=args.models, seeds=args.seeds, epochs=args.epochs,
                   smoke=args.smoke, root=root, retrain=args.retrain, train=train, scheduler=_scheduler(args))
    elif args.what == "all":
        failures = []
        for corpus in CORPORA:
            if not corpus_available(corpus, root):
                print(f"skip {corpus}: not run, no data at {root}/{corpus}")
                continue
            try:
                run_corpus(corpus, models=args.models, seeds=args.seeds, epochs=args.epochs, smoke=args.smoke,
                           root=root, summary=False, retrain=args.retrain, train=train, scheduler=_scheduler(args))
            except GridFailed as err:
                failures.append(str(err))
        run_summary(root=root)
        if failures:
            raise GridFailed(" | ".join(failures))
    elif args.what == "manifest":
        run_manifest(args.manifest, models=args.models, seeds=args.seeds, folds=args.folds, epochs=args.epochs,
                     retrain=args.retrain, train=train)
    elif args.what == "summary":
        run_summary(root=root)
    elif args.what == "ablations":
        run_ablations(args.corpus, seeds=args.seeds, root=root, train=train, scheduler=_scheduler(args))
        run_summary(root=root)
    elif args.what == "selection":
        run_selection(root=root, train=train, scheduler=_scheduler(args))
    elif args.what == "cross-corpus":
        run_cross_corpus(seeds=args.seeds, root=root, train=train, scheduler=_scheduler(args))
    return 0


def _rerun_dirty(args: argparse.Namespace, root: Path | None) -> int:
    from serlib.experiments.reruns import dirty_runs, rerun_dirty, select_runs

    results = default_results_dir()
    runs = select_runs(dirty_runs(results), args.corpus, args.runs)
    print(f"{len(runs)} run folder(s) record uncommitted code")
    if args.dry_run or runs.empty:
        for row in runs.itertuples():
            print(f"  {row.corpus}/{row.protocol}/{row.model}/fold-{row.fold}/seed-{row.seed}  ({row.git_commit})")
        return 0
    require_clean_tree(False)
    table = rerun_dirty(results, data_root=root, corpora=args.corpus, pattern=args.runs)
    failed = table[table["status"] == "failed"]
    changed = table[table["changed"] & (table["status"] != "failed")]
    print(f"re-ran {len(table)}: {len(changed)} changed test UAR, {len(failed)} failed")
    return 1 if len(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
