"""Papermill batches: execute the parameterized notebooks into the book's results folder.

``python -m serlib.batch corpus ravdess`` (what ``make run CORPUS=ravdess`` calls)
executes, with papermill, into ``book/results/`` (or ``<results>/pages/`` when
``$SERLIB_RESULTS`` names another results folder: see :func:`pages_dir`):

* ``notebooks/dataset_overview.ipynb`` -> ``corpora/<corpus>-data.ipynb``
* ``notebooks/train_evaluate.ipynb``   -> ``corpora/<corpus>-<protocol>.ipynb``
  (training writes run folders under ``results/``; finished runs are reused)
* then the summary and provenance notebooks.

``all`` does this for every corpus whose folder exists under ``$SERLIB_DATA``
and prints one skip line for each absent corpus. The papermill parameters are
the single source of truth of what a run did: the executed notebook shows them
in its injected-parameters cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .corpora import CORPORA, DISPLAY_NAMES, corpus_root
from .runs import PROJECT_ROOT, default_results_dir

NOTEBOOKS = PROJECT_ROOT / "notebooks"
BOOK_RESULTS = PROJECT_ROOT / "book" / "results"
ABLATIONS = ("no-vad", "no-wave-aug", "no-batch-aug", "large", "no-class-weights", "demucs")


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


def _set_title(path: Path, title: str) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("# "))
    cell.source = "\n".join([f"# {title}"] + cell.source.split("\n")[1:])
    nbformat.write(nb, path)


def execute(notebook: str, output: Path, parameters: dict[str, Any], log: bool = True, title: str | None = None) -> Path:
    """Run ``notebooks/<notebook>`` with papermill into ``output`` (cwd = project root).

    The page is executed into a scratch file and replaces ``output`` only when
    every cell ran: a failed execution never replaces a good page. It raises
    :class:`PageFailed` naming the error and where the failed notebook was kept
    (``_build/failed/``, outside the book). ``title`` replaces the template's
    first heading, so each executed page is named after what it shows. The
    page's written notes, if any, come from :func:`with_notes`.
    """
    import papermill as pm

    parameters = with_notes(output, parameters)
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = PROJECT_ROOT / "_build" / "executing" / f"{output.parent.name}-{output.name}"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"[papermill] {notebook} -> {output}  {parameters}", flush=True)
    try:
        pm.execute_notebook(str(NOTEBOOKS / notebook), str(scratch), parameters=parameters, cwd=str(PROJECT_ROOT),
                            kernel_name="python3", progress_bar=False, log_output=log, request_save_on_cell_execute=True)
    except pm.PapermillExecutionError as err:
        failed = PROJECT_ROOT / "_build" / "failed" / scratch.name
        failed.parent.mkdir(parents=True, exist_ok=True)
        os.replace(scratch, failed)
        raise PageFailed(f"{output.name} failed at cell {err.exec_count}: {err.ename}: {str(err.evalue)[:300]}; "
                         f"the previous page is kept, the failed notebook is {failed}") from None
    if title:
        _set_title(scratch, title)
    os.replace(scratch, output)
    print(f"[papermill] done in {time.perf_counter() - t0:.0f}s: {output}", flush=True)
    return output


def data_root() -> Path | None:
    root = os.environ.get("SERLIB_DATA")
    return Path(root) if root else None


def corpus_available(corpus: str, root: Path | None) -> bool:
    """Whether ``root`` holds a non-empty folder for ``corpus`` (named as :func:`corpus_root` matches it)."""
    if root is None:
        return False
    try:
        return any(corpus_root(corpus, root).iterdir())
    except (FileNotFoundError, ValueError):
        return False


def run_corpus(corpus: str, *, protocol: str | None = None, seeds: Sequence[int] = (0, 1, 2), epochs: int | None = None,
               out_dir: Path | None = None, smoke: bool = False, root: Path | None = None, results: str | None = None,
               cache_dir: str | None = None, summary: bool = True, retrain: bool = False) -> list[Path]:
    """Overview + train/evaluate notebooks for one corpus (then the summary pages).

    The config (with ``protocol``) is loaded and validated before any page runs,
    so a typo stops the batch with one line and leaves every page as it was.
    """
    from .config import load_config

    root = root or data_root()
    out_dir = out_dir or pages_dir(results)
    overrides = [f"data.protocol={protocol}"] if protocol else []
    protocol = load_config(PROJECT_ROOT / "configs" / f"{corpus}.yaml", overrides=overrides).data.protocol
    common = {"corpus": corpus, "data_root": str(root) if root else None, "smoke": smoke,
              "results_dir": results, "cache_dir": cache_dir}
    name = DISPLAY_NAMES[corpus]
    done = [execute("dataset_overview.ipynb", out_dir / "corpora" / f"{corpus}-data.ipynb",
                    {**common, "protocol": protocol}, title=f"{name}: the data"),
            execute("train_evaluate.ipynb", out_dir / "corpora" / f"{corpus}-{protocol}.ipynb",
                    {**common, "protocol": protocol, "seeds": list(seeds), "epochs": epochs, "retrain": retrain},
                    title=f"{name}: {protocol} protocol")]
    if summary:
        done += run_summary(out_dir, results=results, root=root)
    return done


def run_summary(out_dir: Path | None = None, *, results: str | None = None, root: Path | None = None) -> list[Path]:
    out_dir = out_dir or pages_dir(results)
    params = {"results_dir": results, "data_root": str(root or data_root() or "")}
    return [execute("summary.ipynb", out_dir / "summary.ipynb", params, log=False),
            execute("provenance.ipynb", out_dir / "provenance.ipynb", {"results_dir": results}, log=False)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serlib.batch", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("corpus", "all"):
        p = sub.add_parser(name)
        if name == "corpus":
            p.add_argument("corpus", choices=CORPORA)
            p.add_argument("--protocol")
        p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
        p.add_argument("--epochs", type=int)
        p.add_argument("--smoke", action="store_true", help="tiny run (2 epochs, 1 fold, 1 seed)")
        p.add_argument("--retrain", action="store_true", help="replace run folders made from another config or data")
    sub.add_parser("summary")
    p = sub.add_parser("ablations")
    p.add_argument("--corpus", default="ravdess")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    sub.add_parser("cross-corpus")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except PageFailed as err:
        print(f"make: page not replaced: {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # ConfigError and friends: a typo in a make variable
        print(f"make: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    root = data_root()
    pages = pages_dir()
    if args.what == "corpus":
        if not corpus_available(args.corpus, root):
            print(f"skip {args.corpus}: no data at {root}/{args.corpus} (set SERLIB_DATA; see README, 'Data')")
            return 2
        run_corpus(args.corpus, protocol=args.protocol, seeds=args.seeds, epochs=args.epochs, smoke=args.smoke, root=root,
                   retrain=args.retrain)
    elif args.what == "all":
        for corpus in CORPORA:
            if corpus_available(corpus, root):
                run_corpus(corpus, seeds=args.seeds, epochs=args.epochs, smoke=args.smoke, root=root, summary=False,
                           retrain=args.retrain)
            else:
                print(f"skip {corpus}: not run, no data at {root}/{corpus}")
        run_summary(root=root)
    elif args.what == "summary":
        run_summary(root=root)
    elif args.what == "ablations":
        execute("ablations.ipynb", pages / "studies" / f"ablations-{args.corpus}.ipynb",
                {"corpus": args.corpus, "data_root": str(root) if root else None, "seeds": args.seeds,
                 "ablations": list(ABLATIONS)}, title=f"Tier-1 ablations on {DISPLAY_NAMES[args.corpus]}")
        run_summary(root=root)
    elif args.what == "cross-corpus":
        execute("cross_corpus.ipynb", pages / "studies" / "cross-corpus.ipynb",
                {"data_root": str(root) if root else None})
    return 0


if __name__ == "__main__":
    sys.exit(main())
