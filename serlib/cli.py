"""Command line: ``serlib prepare | train | evaluate | predict``.

Examples::

    SERLIB_DATA=../shared/data serlib prepare ravdess
    serlib train --config configs/ravdess.yaml --fold 1 --seed 0
    serlib train --config configs/ravdess.yaml --seeds 0 1 2          # every fold
    serlib train --config configs/ravdess.yaml --overlay configs/ablations/no-vad.yaml --name tier1-no-vad
    serlib evaluate results/ravdess/emobox/tier1/fold-1/seed-0/best_uar_0.6000.pt --corpus emodb
    serlib predict results/.../best_uar_0.6000.pt clip.wav other.flac

Folds are numbered from 1 on the command line, as in run folders and the report.
Errors in the user's input (missing corpus folder, bad config key, unreadable
audio) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import pandas as pd

from . import __version__


def _config(args: argparse.Namespace, corpus: str | None = None):
    from .config import load_config

    overrides = list(getattr(args, "set", None) or [])
    if corpus:
        overrides.append(f"data.corpus={corpus}")
    return load_config(getattr(args, "config", None), *(getattr(args, "overlay", None) or []), overrides=overrides)


def cmd_prepare(args: argparse.Namespace) -> int:
    from .experiment import prepare

    config = _config(args, args.corpus)
    t0 = time.perf_counter()
    prepared = prepare(config, data_root=args.data_root, cache_dir=args.cache_dir, workers=args.workers,
                       augment=False if args.no_augment else None, progress=not args.quiet)
    fs = prepared.features
    summary = fs.summary()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"\n{config.data.corpus}: {summary['files']} files, {summary['usable']} usable, "
          f"{summary['quarantined']} quarantined, {summary['speakers']} speakers, {len(summary['classes'])} classes "
          f"({', '.join(summary['classes'])}), {summary['hours']:.2f} h of audio; "
          f"{summary['computed']} clips computed in {summary['seconds']:.1f} s")
    print(f"cache: {summary['cache']}  (data fingerprint {summary['fingerprint']})")
    if summary["vad_no_speech"]:
        print(f"VAD found no speech in {summary['vad_no_speech']} clip(s): kept whole and flagged")
    unrec = prepared.scan.unrecognised
    if len(unrec):
        print(f"\n{len(unrec)} file(s) not used by the reader:")
        print(unrec.groupby("reason").size().rename("files").to_string())
    if len(fs.quarantine):
        print("\nquarantined:")
        print(fs.quarantine[["utt_id", "reason", "detail"]].to_string(index=False))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .experiment import prepare, run_protocol

    config = _config(args)
    prepared = prepare(config, data_root=args.data_root, cache_dir=args.cache_dir, workers=args.workers,
                       progress=not args.quiet)
    folds = [f - 1 for f in args.fold] if args.fold else None
    seeds = args.seeds if args.seeds else [args.seed if args.seed is not None else config.seed]
    models = ("tier1", "baseline-svm") if args.model == "all" else (args.model,)
    table = run_protocol(config, prepared, folds=folds, seeds=seeds, models=models, results=args.results,
                         tier1_name=args.name, resume=args.resume, progress=not args.quiet)
    print()
    print(table.drop(columns=["path"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for model, g in table.groupby("model"):
        print(f"{model}: test UAR {g.test_uar.mean() * 100:.2f} ± {g.test_uar.std(ddof=1) * 100 if len(g) > 1 else 0:.2f} % "
              f"over {len(g)} run(s)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .experiment import prepare, split_for
    from .inference import Predictor
    from .metrics import per_class_table
    from .runs import write_json

    predictor = Predictor.load(args.checkpoint)
    config = predictor.config
    config.data.corpus = args.corpus or config.data.corpus
    if args.protocol:
        config.data.protocol = args.protocol
    prepared = prepare(config, data_root=args.data_root, cache_dir=args.cache_dir, workers=args.workers,
                       augment=False, progress=not args.quiet)
    ids = None
    if args.fold:
        assignment = split_for(prepared.features, config, args.fold - 1)
        ids = prepared.features.usable["utt_id"][assignment == "test"]
    report, preds = predictor.evaluate(prepared.features, ids)
    print(f"{config.data.corpus}{' fold ' + str(args.fold) if args.fold else ''}: n={report['n']}  "
          f"UAR {report['uar'] * 100:.2f}% (95% CI {report['uar_ci95'][0] * 100:.1f}-{report['uar_ci95'][1] * 100:.1f})  "
          f"accuracy {report['accuracy'] * 100:.2f}%")
    print(per_class_table(report).to_string())
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", {"checkpoint": str(args.checkpoint), "corpus": config.data.corpus,
                                          "fold": args.fold, "test": report})
        preds.to_csv(out / "predictions.csv", index=False)
        print(f"written to {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .audio import AudioError
    from .inference import Predictor

    predictor = Predictor.load(args.checkpoint)
    failed = 0
    for path in args.files:
        try:
            row = predictor.predict_files([path]).iloc[0]
        except AudioError as err:
            print(f"error: {path}: {err.reason}: {err.detail}", file=sys.stderr)
            failed += 1
            continue
        probs = "  ".join(f"{lab} {row[f'p_{lab}']:.3f}" for lab in predictor.labels)
        print(f"{path}\t{row['label']}\t{probs}")
    return 2 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serlib", description="Speech emotion recognition: prepare, train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"serlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-root", help="corpus folder, or a folder holding one folder per corpus (default: $SERLIB_DATA/<corpus>)")
        p.add_argument("--cache-dir", help="feature cache (default: $SERLIB_CACHE or ~/.cache/serlib)")
        p.add_argument("--workers", type=int, default=None, help="processes for feature extraction (default: every core)")
        p.add_argument("--quiet", action="store_true", help="no progress output")

    def config_args(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--config", required=required, help="experiment YAML (configs/<corpus>.yaml)")
        p.add_argument("--overlay", action="append", help="extra YAML merged on top (ablations); repeatable")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.epochs=5; repeatable")

    p = sub.add_parser("prepare", help="scan a corpus, quarantine bad files, build the feature cache")
    p.add_argument("corpus")
    config_args(p, required=False)
    data_args(p)
    p.add_argument("--no-augment", action="store_true", help="skip the cached augmented copies")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train and test on one fold, or every fold of the protocol")
    config_args(p, required=True)
    data_args(p)
    p.add_argument("--fold", type=int, action="append", help="fold number (1-based); repeatable; default: every fold")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the config's)")
    p.add_argument("--seeds", type=int, nargs="+", help="several seeds")
    p.add_argument("--model", choices=["tier1", "baseline-svm", "all"], default="all")
    p.add_argument("--name", default="tier1", help="run-folder name of the Tier-1 model (ablations: tier1-<what>)")
    p.add_argument("--results", help="results folder (default: $SERLIB_RESULTS or ./results)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue interrupted runs from last.pt (default: on)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a checkpoint on a corpus (or one fold's test part)")
    p.add_argument("checkpoint")
    p.add_argument("--corpus", help="corpus to evaluate on (default: the one it was trained on)")
    p.add_argument("--protocol", help="with --fold: protocol whose test part to use")
    p.add_argument("--fold", type=int, help="evaluate only this fold's test part (1-based)")
    p.add_argument("--out", help="folder for metrics.json and predictions.csv")
    data_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label audio files with a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_predict)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``serlib`` console script."""
    from .audio import AudioError
    from .config import ConfigError
    from .corpora import CorpusLayoutError
    from .inference import CheckpointError
    from .preprocess import DemucsUnavailable
    from .splits import SplitError

    args = build_parser().parse_args(argv)
    warnings.filterwarnings("default")
    pd.set_option("display.width", 160)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, CorpusLayoutError, CheckpointError, DemucsUnavailable, SplitError, AudioError,
            FileNotFoundError, ValueError) as err:
        print(f"serlib {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
