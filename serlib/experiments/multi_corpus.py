"""The multi-corpus study: Whisper-base heads trained on several corpora, in-corpus and leave-one-corpus-out.

``python -m serlib.experiments.multi_corpus STAGE`` (``make multi-corpus`` runs them in order):

``selection``
    the plain join and each one-change variant of it (``encoder.extra_classes``,
    ``encoder.corpus_norm``, ``encoder.corpus_weight``; :data:`serlib.features.multi_corpus.OPTIONS`)
    trained with ``whisper-mlp-multi`` on fold 1, seed 0 of each in-corpus protocol; a change
    that raises the mean **validation** UAR enters the recipe (``configs/models/multi.yaml``).
    Runs go to ``results/studies/multi-selection/<option>/``.
``in-corpus``
    the -multi heads of :data:`MULTI_SYSTEMS` on every fold of each corpus's protocol (:data:`IN_CORPUS`), every seed
    of the MLP heads; the same folds and seeds as the single-corpus heads, for paired comparisons.
``loco``
    leave one corpus out: each corpus of :data:`LOCO_CORPORA` held out whole, the heads of
    :data:`LOCO_SYSTEMS` trained on the other five (``loco``: four classes; ``loco-6``: six, for
    the corpora that have them). ``whisper-logreg-loco-multi`` chooses its layer and ``C`` by
    leaving each of those five out in turn. Runs go to ``results/<corpus>/loco[-6]/<system>/fold-1/seed-s/``.
``page``
    executes the report page ``notebooks/multi_corpus.ipynb`` (reads run folders only).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from serlib.core.runs import default_results_dir
from serlib.features.multi_corpus import OPTIONS

IN_CORPUS: dict[str, str] = {"ravdess": "emobox", "cremad": "speaker-cv", "savee": "emobox", "emodb": "speaker-cv",
                             "urdu": "speaker-cv"}
"""Each corpus's in-corpus protocol: the one its single-corpus Whisper heads were run on (report order)."""
LOCO_CORPORA: tuple[str, ...] = ("ravdess", "cremad", "savee", "tess", "emodb", "urdu")
"""The corpora held out in turn, in the report's corpus order (:data:`serlib.data.corpora.CORPORA`)."""
MULTI_SYSTEMS: tuple[str, ...] = ("whisper-logreg-multi", "whisper-mlp-multi", "whisper-mlp-twostage-multi")
"""The -multi heads run in-corpus."""
LOCO_SYSTEMS: tuple[str, ...] = ("whisper-logreg-multi", "whisper-mlp-multi", "whisper-logreg-loco-multi")
"""The heads run leave-one-corpus-out: the one-stage -multi heads (the two-stage head needs the corpus's own training
speakers) and the logistic head chosen on held-out corpora."""
SELECTION_FOLD = 1


def selection_results(results: str | Path | None = None) -> Path:
    """Where the selection runs go: ``<results>/studies/multi-selection``."""
    return Path(results or default_results_dir()) / "studies" / "multi-selection"


def _config(corpus: str, protocol: str, model: str, overrides: Sequence[str] = ()):
    """``configs/<corpus>.yaml`` under ``model``'s recipe, the protocol and ``overrides``."""
    from serlib.experiments.batch import load_corpus_config
    from serlib.systems.registry import recipe_overlays

    return load_corpus_config(corpus, protocol=protocol, overlays=recipe_overlays(model), overrides=overrides)


def _prepare(config, root: Path | None):
    from serlib.features.prepared import prepare

    return prepare(config, data_root=root, progress=False)


def _run(config, prepared, model: str, *, seeds: Sequence[int], folds: Sequence[int] | None,
         results: Path, retrain: bool = False) -> pd.DataFrame:
    from serlib.experiments.batch import seeds_for
    from serlib.experiments.protocol import run_protocol

    return run_protocol(config, prepared, folds=folds, seeds=seeds_for(model, seeds), models=(model,),
                        results=results, progress=True, retrain=retrain)


def run_selection(corpora: Sequence[str] = tuple(IN_CORPUS), *, options: Sequence[str] = tuple(OPTIONS),
                  model: str = "whisper-mlp-multi", root: Path | None = None,
                  results: str | Path | None = None) -> pd.DataFrame:
    """``options`` of :data:`OPTIONS` on fold :data:`SELECTION_FOLD`, seed 0 of each corpus; one row per run."""
    rows = []
    for corpus in corpora:
        prepared = None
        for option in options:
            overrides = OPTIONS[option]
            config = _config(corpus, IN_CORPUS[corpus], model, overrides)
            prepared = prepared or _prepare(config, root)  # the options change the heads only
            table = _run(config, prepared, model, seeds=(0,), folds=[SELECTION_FOLD - 1],
                         results=selection_results(results) / option)
            rows.append(table.assign(corpus=corpus, option=option))
    return pd.concat(rows, ignore_index=True)


def run_in_corpus(corpora: Sequence[str] = tuple(IN_CORPUS), *, models: Sequence[str] = MULTI_SYSTEMS,
                  seeds: Sequence[int] = (0, 1, 2), root: Path | None = None,
                  results: str | Path | None = None, retrain: bool = False) -> pd.DataFrame:
    """Every fold of each corpus's in-corpus protocol with the -multi heads (``retrain``: every planned run folder
    is trained afresh)."""
    rows = []
    for corpus in corpora:
        prepared = None
        for model in models:
            config = _config(corpus, IN_CORPUS[corpus], model)
            prepared = prepared or _prepare(config, root)
            rows.append(_run(config, prepared, model, seeds=seeds, folds=None,
                             results=Path(results or default_results_dir()), retrain=retrain))
    return pd.concat(rows, ignore_index=True)


def run_loco(corpora: Sequence[str] = LOCO_CORPORA, *, protocols: Sequence[str] = ("loco", "loco-6"),
             models: Sequence[str] = LOCO_SYSTEMS, seeds: Sequence[int] = (0, 1, 2), root: Path | None = None,
             results: str | Path | None = None, retrain: bool = False) -> pd.DataFrame:
    """Each corpus held out whole, the heads trained on the others; a corpus without the classes of a protocol is
    skipped (``retrain``: every planned run folder is trained afresh)."""
    from serlib.data.splits import LOCO_CLASSES

    rows = []
    for corpus in corpora:
        prepared = None
        for protocol in protocols:
            for model in models:
                config = _config(corpus, protocol, model)
                prepared = prepared or _prepare(config, root)
                present = set(prepared.features.usable["label"])
                if not set(LOCO_CLASSES[protocol]) <= present:
                    print(f"skip {corpus} {protocol}: it lacks {sorted(set(LOCO_CLASSES[protocol]) - present)}")
                    break
                rows.append(_run(config, prepared, model, seeds=seeds, folds=None,
                                 results=Path(results or default_results_dir()), retrain=retrain))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    from serlib.experiments.batch import require_clean_tree

    parser = argparse.ArgumentParser(prog="python -m serlib.experiments.multi_corpus", description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("selection", "in-corpus", "loco", "page"))
    parser.add_argument("--corpora", nargs="+", default=None, help="default: every corpus of the stage")
    parser.add_argument("--models", nargs="+", default=None,
                        help=f"default: the stage's heads (in-corpus: {', '.join(MULTI_SYSTEMS)}; "
                             f"loco: {', '.join(LOCO_SYSTEMS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--protocols", nargs="+", default=["loco", "loco-6"])
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=list(OPTIONS),
                        help="selection: the ways of joining corpora to try")
    parser.add_argument("--retrain", action="store_true",
                        help="train every planned run folder afresh (after a system's version changed)")
    parser.add_argument("--allow-dirty", action="store_true", help="train from uncommitted serlib/ or configs/")
    args = parser.parse_args(argv)
    try:
        if args.stage != "page":
            require_clean_tree(args.allow_dirty)
        if args.stage == "selection":
            print(run_selection(args.corpora or tuple(IN_CORPUS), options=args.options).to_string())
        elif args.stage == "in-corpus":
            print(run_in_corpus(args.corpora or tuple(IN_CORPUS), models=args.models or MULTI_SYSTEMS,
                                seeds=args.seeds, retrain=args.retrain).to_string())
        elif args.stage == "loco":
            print(run_loco(args.corpora or LOCO_CORPORA, protocols=args.protocols, models=args.models or LOCO_SYSTEMS,
                           seeds=args.seeds, retrain=args.retrain).to_string())
        else:
            run_page()
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; the same command continues with the rest", file=sys.stderr)
        return 130
    return 0


def run_page(out_dir: Path | None = None) -> Path:
    """Execute the multi-corpus page from the run folders."""
    from serlib.experiments.batch import BOOK_RESULTS, execute

    return execute("multi_corpus.ipynb", (out_dir or BOOK_RESULTS) / "studies" / "multi-corpus.ipynb", {},
                   title="One model for many corpora")


if __name__ == "__main__":
    sys.exit(main())
