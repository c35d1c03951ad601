"""Command line: ``serlib prepare | train | evaluate | predict | models``.

Examples::

    SERLIB_DATA=../shared/data serlib prepare ravdess
    serlib train --config configs/ravdess.yaml --fold 1 --seed 0
    serlib train --config configs/ravdess.yaml --seeds 0 1 2          # every fold
    serlib train --config configs/ravdess.yaml --overlay configs/ablations/no-vad.yaml --name tier1-no-vad
    serlib evaluate results/ravdess/emobox/tier1/fold-1/seed-0/best_uar_0.6000.pt --corpus emodb
    serlib predict results/.../best_uar_0.6000.pt clip.wav other.flac
    serlib predict --model ravdess clip.wav --format json             # a shipped model
    serlib models                                                     # the shipped models

Folds are numbered from 1 on the command line, as in run folders and the report.
Errors in the user's input (missing corpus folder, bad config key or value,
unreadable audio, a full disk, a wrong argument) print one line
``serlib COMMAND: error: ...`` and exit with status 2, before any long work
where the problem can be seen up front; warnings are one line
``serlib: warning: ...``.

Start-up is kept short (``serlib --help`` well under a second): this module
imports only the standard library at import time, and each command imports
what it uses (pandas, torch and scikit-learn only where they are needed).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from serlib import __version__

_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_LISTED_PER_REASON = 20  # unrecognised files printed per reason by `prepare` (all are in unrecognised.csv)


class CommandError(ValueError):
    """A command-line argument cannot work (checked before any long work starts)."""


def _check_run_name(name: str) -> None:
    """``--name`` must be one safe folder name: it becomes a path component below the results folder."""
    if not _RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise CommandError(f"--name {name!r}: must be a single folder name of letters, digits and . _ - + "
                           "(e.g. tier1-no-vad), not a path")


def _check_fold_numbers(folds: Sequence[int] | None) -> None:
    for fold in folds or ():
        if fold < 1:
            raise CommandError(f"--fold {fold}: folds are numbered from 1")


def _check_folds_exist(folds: Sequence[int] | None, prepared: Any, config: Any) -> None:
    from serlib.features.prepared import fold_count

    total = fold_count(prepared.features, config)
    for fold in folds or ():
        if fold > total:
            raise CommandError(f"--fold {fold}: {config.data.corpus} {config.data.protocol} has {total} fold(s), "
                               f"numbered 1..{total}")


def _require_usable(prepared: Any, corpus: str) -> None:
    """One line instead of a failure deep in training when every clip was quarantined."""
    import pandas as pd

    fs = prepared.features
    if len(fs.usable):
        return
    reasons = fs.quarantine["reason"].value_counts() if len(fs.quarantine) else pd.Series(dtype=int)
    why = ", ".join(f"{n} {r}" for r, n in reasons.items()) or "none found"
    raise CommandError(f"{corpus}: no usable clips ({len(fs.manifest)} file(s): {why}); "
                       f"`serlib prepare {corpus}` lists them")


def _check_folds_option(args: argparse.Namespace) -> None:
    folds = getattr(args, "folds", None)
    if folds is not None and not getattr(args, "manifest", None):
        raise CommandError("--folds is for --manifest corpora (the seven corpora have fixed protocols)")
    if folds is not None and folds < 2:
        raise CommandError(f"--folds {folds}: at least 2 folds")


def _check_workers(args: argparse.Namespace) -> None:
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise CommandError(f"--workers {args.workers}: must be at least 1")


def _print_unrecognised(scan: Any, cache: Path | None) -> None:
    """Name every file the reader left out (up to a limit per reason) and save the full list."""
    from serlib.core.files import atomic_write, display_path

    unrec = scan.unrecognised
    if not len(unrec):
        return
    root = display_path(scan.root)

    def relative(path: str) -> str:
        if path.startswith("row "):  # a manifest's row, named as the manifest names it
            return path
        try:
            return os.path.relpath(path, root)
        except ValueError:
            return path

    print(f"\n{len(unrec)} file(s) not used by the reader (paths below {root}):")
    counts = unrec["reason"].value_counts()
    for reason in counts.index:
        paths = unrec.loc[unrec["reason"] == reason, "path"]
        print(f"  {reason}: {len(paths)}")
        for path in paths.iloc[:_LISTED_PER_REASON]:
            print(f"    {relative(path)}")
        if len(paths) > _LISTED_PER_REASON:
            print(f"    ... and {len(paths) - _LISTED_PER_REASON} more")
    if cache is not None:
        listing = unrec.assign(path=unrec["path"].map(relative))
        atomic_write(cache / "unrecognised.csv", lambda tmp: listing.to_csv(tmp, index=False), "the feature cache")
        print(f"  full list: {cache / 'unrecognised.csv'}")


def _config(args: argparse.Namespace, corpus: str | None = None, recipe: tuple[str, ...] = ()):
    """The config of the command: file, then a system's ``recipe`` overlay, then ``--overlay`` files, then ``--set``.

    With ``--manifest`` the corpus is the manifest (:func:`_manifest_overrides`), before ``--set``.
    """
    from serlib.config import load_config

    overrides = list(getattr(args, "set", None) or [])
    if getattr(args, "manifest", None):
        overrides = _manifest_overrides(args) + overrides
    elif corpus:
        overrides.append(f"data.corpus={corpus}")
    return load_config(getattr(args, "config", None), *recipe, *(getattr(args, "overlay", None) or []),
                       overrides=overrides)


_MAPPING_SHOWN: set[str] = set()


def _manifest_overrides(args: argparse.Namespace) -> list[str]:
    """``--manifest FILE|FOLDER`` (and ``--folds K``) as config overrides
    (:func:`serlib.data.manifest.manifest_overrides`); what was read is printed once."""
    from serlib.data.manifest import manifest_overrides

    overrides, line = manifest_overrides(args.manifest, getattr(args, "folds", None))
    if line not in _MAPPING_SHOWN:  # one line, even with --quiet: how the labels were read
        _MAPPING_SHOWN.add(line)
        print(line)
    return overrides


def cmd_prepare(args: argparse.Namespace) -> int:
    from serlib.features.prepared import prepare

    _check_workers(args)
    if not args.corpus and not args.manifest:
        raise CommandError("give a corpus (serlib prepare ravdess) or --manifest FILE|FOLDER")
    if args.corpus and args.manifest:
        raise CommandError("give a corpus or --manifest, not both")
    _check_folds_option(args)
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
    if fs.resumed:
        print(f"continued from {fs.resumed} clip(s) saved by an interrupted run")
    print(f"cache: {summary['cache']}  (data fingerprint {summary['fingerprint']})")
    if summary["vad_no_speech"]:
        print(f"VAD found no speech in {summary['vad_no_speech']} clip(s): kept whole and flagged")
    _print_unrecognised(prepared.scan, fs.path)
    if len(fs.quarantine):
        print("\nquarantined:")
        print(fs.quarantine[["utt_id", "reason", "detail"]].to_string(index=False))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from serlib.config import check_device_available
    from serlib.experiments.protocol import check_plan, plan_protocol, run_protocol
    from serlib.features.prepared import prepare

    _check_workers(args)
    _check_run_name(args.name)
    _check_fold_numbers(args.fold)
    seeds = args.seeds if args.seeds else [args.seed]
    if any(seed is not None and seed < 0 for seed in seeds):
        raise CommandError(f"--seed/--seeds {min(s for s in seeds if s is not None)}: seeds must be >= 0")
    if not args.config and not args.manifest:
        raise CommandError("give --config configs/<corpus>.yaml, or --manifest FILE|FOLDER for a corpus of your own")
    _check_folds_option(args)
    config = _config(args)
    check_device_available(config.train.device)
    from serlib.systems.registry import get_model, recipe_overlays

    if args.model == ["all"]:  # an ablation (--name) is Tier-1 under an overlay: the baseline is not part of it
        models: tuple[str, ...] = ("tier1", "baseline-svm") if args.name == "tier1" else ("tier1",)
    else:
        models = tuple(args.model)
    for model in models:
        get_model(model)  # a typo in --model is one line before any feature is computed
    groups: dict[tuple[str, ...], list[str]] = {}  # systems with a recipe train under their own config
    for model in models:
        groups.setdefault(recipe_overlays(model), []).append(model)
    configs = {recipe: _config(args, recipe=recipe) for recipe in groups}  # every config checked before work
    requests = []
    for recipe, group in groups.items():  # every group's run folders are checked before any trains
        config = configs[recipe]
        prepared = prepare(config, data_root=args.data_root, cache_dir=args.cache_dir, workers=args.workers,
                           progress=not args.quiet)
        _require_usable(prepared, config.data.corpus)
        _check_folds_exist(args.fold, prepared, config)
        request = dict(folds=[f - 1 for f in args.fold] if args.fold else None,
                       seeds=[config.seed if seed is None else seed for seed in seeds], models=tuple(group),
                       results=args.results, tier1_name=args.name)
        if not args.retrain:  # --retrain replaces the folders anyway
            check_plan(plan_protocol(config, prepared, **request))
        requests.append((config, prepared, request))
    tables = [run_protocol(config, prepared, **request, resume=args.resume, retrain=args.retrain,
                           progress=not args.quiet) for config, prepared, request in requests]
    import pandas as pd

    table = pd.concat(tables, ignore_index=True)
    print()
    print(table.drop(columns=["path"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for model, g in table.groupby("model"):
        print(f"{model}: test UAR {g.test_uar.mean() * 100:.2f} ± {g.test_uar.std(ddof=1) * 100 if len(g) > 1 else 0:.2f} % "
              f"over {len(g)} run(s)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from serlib.core.runs import write_json
    from serlib.data.corpora import canonical_corpus_name
    from serlib.evaluation.metrics import per_class_table
    from serlib.features.prepared import prepare, split_for
    from serlib.systems.tier1.predictor import Predictor

    _check_workers(args)
    if args.protocol and args.fold is None:
        raise CommandError("--protocol only chooses whose test part --fold scores: give --fold K as well")
    _check_fold_numbers([args.fold] if args.fold is not None else None)
    out = _output_folder(args.out) if args.out else None
    predictor = Predictor.load(args.checkpoint, demucs_model=args.demucs_model)
    config = predictor.config
    trained_on = config.data.corpus
    if args.manifest and args.corpus:
        raise CommandError("give --corpus or --manifest, not both")
    if args.manifest:  # a corpus of one's own (its name, location and default protocol)
        from serlib.data.manifest import manifest_overrides

        overrides, line = manifest_overrides(args.manifest)
        print(line)
        values = dict(o.split("=", 1) for o in overrides)
        config.data.manifest, config.data.corpus = values["data.manifest"], values["data.corpus"]
        config.data.protocol = values["data.protocol"]
    else:
        config.data.corpus = canonical_corpus_name(args.corpus) if args.corpus else trained_on
    if config.data.corpus == trained_on and args.fold is None:
        if not args.all_clips:
            raise CommandError(
                f"{trained_on} is the corpus this checkpoint was trained on, so scoring every clip would score its "
                "training clips too: give --fold K (the fold it was trained on) to score held-out clips only, "
                "or --all-clips to score every clip anyway"
            )
        print(f"serlib evaluate: warning: scoring every clip of {trained_on}, the training corpus: training clips "
              "are included, so the score is optimistic", file=sys.stderr)
    if args.protocol:
        config.data.protocol = args.protocol
    prepared = prepare(config, data_root=args.data_root, cache_dir=args.cache_dir, workers=args.workers,
                       augment=False, progress=not args.quiet)
    ids = None
    if args.fold:
        _check_folds_exist([args.fold], prepared, config)
        assignment = split_for(prepared.features, config, args.fold - 1)
        ids = prepared.features.usable["utt_id"][assignment == "test"]
    report, preds = predictor.evaluate(prepared.features, ids)
    print(f"{config.data.corpus}{' fold ' + str(args.fold) if args.fold else ''}: n={report['n']}  "
          f"UAR {report['uar'] * 100:.2f}% (95% CI {report['uar_ci95'][0] * 100:.1f}-{report['uar_ci95'][1] * 100:.1f})  "
          f"accuracy {report['accuracy'] * 100:.2f}%")
    print(per_class_table(report).to_string())
    if out is not None:
        write_json(out / "metrics.json", {"checkpoint": str(args.checkpoint), "corpus": config.data.corpus,
                                          "fold": args.fold, "test": report})
        preds.to_csv(out / "predictions.csv", index=False)
        print(f"written to {out}")
    return 0


def _output_folder(path: str) -> Path:
    """``evaluate --out``: checked (and created) before the evaluation starts, not after it."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out}: exists and is not a folder (metrics.json and predictions.csv go in a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CommandError(f"--out {out}: cannot create the folder ({err.strerror or err})") from None
    if not os.access(out, os.W_OK):
        raise CommandError(f"--out {out}: the folder is not writable")
    return out


def _predict_inputs(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The model and the names to read (files, folders) of ``predict``, refusing checkpoints given as audio.

    Without ``--model`` the first argument is the model. A shell glob such as
    ``best_uar_*.pt`` that matched several checkpoints would otherwise have its
    extra matches read as audio.
    """
    if args.model is not None and not args.model.strip():
        raise CommandError("--model '': give a shipped model name (serlib models) or a checkpoint file")
    if not args.model and not args.inputs:
        raise CommandError("no model given: serlib predict --model NAME FILE|FOLDER ... (or a checkpoint first)")
    model, names = (args.model, list(args.inputs)) if args.model else (args.inputs[0], list(args.inputs[1:]))
    checkpoints = [f for f in names if Path(f).suffix in (".pt", ".safetensors")]
    if checkpoints:
        given = [model] + checkpoints if Path(model).suffix == ".pt" else checkpoints
        raise CommandError(f"{len(given)} checkpoint(s) given where audio files are expected ({', '.join(given)}): "
                           "a glob such as best_uar_*.pt matched several; give exactly one model "
                           "(the first argument, or --model)")
    if args.list is not None and not os.path.isfile(args.list):
        raise CommandError(f"--list {args.list}: no such file (one audio path per line)")
    if not names and args.list is None:
        raise CommandError(f"no audio files given after the model {model!r}: serlib predict [--model NAME] "
                           "[CHECKPOINT] FILE|FOLDER [...] [--list FILE]")
    return model, names


def _prediction_record(path: str, probs: Any, labels: list[str]) -> dict[str, Any]:
    best = int(probs.argmax())
    return {"path": path, "label": labels[best], "probabilities": {lab: round(float(p), 6) for lab, p in zip(labels, probs)}}


class _Outputs:
    """Where ``predict`` writes each record: stdout in ``--format``, and ``--output FILE`` (CSV or JSON Lines)."""

    def __init__(self, fmt: str, output: str | None, labels: list[str], prefix: str, segments: bool = False) -> None:
        from serlib.core.formats import CsvRecords, JsonRecords

        self.fmt, self.labels, self.prefix = fmt, labels, prefix
        self.timed = ["start", "end"] if segments else []
        fields = ["path", *self.timed, "label"] + [f"{prefix}_{lab}" for lab in labels]
        self.stdout: Any = CsvRecords(fields) if fmt == "csv" else JsonRecords() if fmt == "json" else None
        self.file, self.handle = None, None
        if output:
            suffix = Path(output).suffix.lower()
            if suffix not in (".csv", ".jsonl", ".json"):
                raise CommandError(f"--output {output}: give a .csv or a .jsonl (JSON Lines) file")
            try:
                self.handle = open(output, "w", encoding="utf-8", newline="")
            except OSError as err:
                raise CommandError(f"--output {output}: cannot write it ({err.strerror or err})") from None
            self.file = CsvRecords(fields, self.handle) if suffix == ".csv" else JsonRecords(self.handle)
            self.file_is_csv = suffix == ".csv"

    def write(self, record: dict[str, Any]) -> None:
        from serlib.core.formats import escape_controls

        flat = {"path": record["path"], **{k: f"{record[k]:.2f}" for k in self.timed}, "label": record["label"],
                **{f"{self.prefix}_{lab}": f"{p:.6f}" for lab, p in record["probabilities"].items()}}
        if self.fmt == "table":
            shown = "  ".join(f"{escape_controls(lab)} {p:.3f}" for lab, p in record["probabilities"].items())
            when = f"\t{record['start']:.2f}-{record['end']:.2f} s" if self.timed else ""
            print(f"{escape_controls(record['path'])}{when}\t{escape_controls(record['label'])}\t{shown}")
        else:
            self.stdout.write(flat if self.fmt == "csv" else record)
        sys.stdout.flush()
        if self.file is not None:
            self.file.write(flat if self.file_is_csv else record)
            self.handle.flush()  # a killed run keeps every line written so far

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


PROGRESS_FROM = 20
"""``predict`` shows a progress bar on stderr for more files than this."""


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from serlib.core.formats import escape_controls
    from serlib.data.audio import AudioError
    from serlib.serve.inputs import gather
    from serlib.serve.predict import load_predictor

    model, names = _predict_inputs(args)
    predictor = load_predictor(model, demucs_model=args.demucs_model)  # a bad model is the first thing to say
    inputs = gather(names, args.list)
    for name in inputs.missing:
        print(f"error: {escape_controls(name)}: not found: no such file or folder", file=sys.stderr)
    for name in inputs.empty_folders:
        print(f"error: {escape_controls(name)}: no audio: the folder holds no file that reads as audio", file=sys.stderr)
    failed = len(inputs.missing) + len(inputs.empty_folders)
    if not inputs.files:
        raise CommandError("nothing to label: no audio file among the inputs")
    if args.segments:
        if args.own_statistics:
            raise CommandError("--own-statistics standardises whole files, not the segments of a recording")
        return _predict_segments(args, predictor, inputs.files, failed)
    if args.plot:
        raise CommandError("--plot draws a recording's timeline: give it with --segments")
    if args.own_statistics:
        return _predict_own_statistics(args, predictor, inputs.files, failed)
    outputs = _Outputs(args.format, args.output, list(predictor.labels), predictor.outputs)
    progress = None
    if len(inputs.files) > PROGRESS_FROM and not getattr(args, "quiet", False):
        from tqdm import tqdm

        progress = tqdm(total=len(inputs.files), file=sys.stderr, unit="file", dynamic_ncols=True, leave=False)
    from threadpoolctl import threadpool_limits

    # numpy's BLAS threads spinning beside torch's slow the encoder down (as in the feature step)
    blas = threadpool_limits(limits=1, user_api="blas")
    try:
        for path in inputs.files:
            try:
                probs = predictor.predict_file(path)
                if not np.all(np.isfinite(probs)):
                    raise AudioError(path, "non-finite-output", "the model gave NaN or infinite outputs for this file")
            except AudioError as err:
                message = f"error: {escape_controls(path)}: {err.reason}: {escape_controls(str(err.detail))}"
                (progress.write(message, file=sys.stderr) if progress else print(message, file=sys.stderr))
                failed += 1
                continue
            finally:
                if progress is not None:
                    progress.update(1)
            outputs.write(_prediction_record(path, probs, list(predictor.labels)))
    finally:
        blas.restore_original_limits()
        outputs.close()
        if progress is not None:
            progress.close()
    return 2 if failed else 0


MIN_OWN_STATISTICS_FILES = 20
"""Fewest readable files ``predict --own-statistics`` standardises with their own statistics."""


def _predict_own_statistics(args: argparse.Namespace, predictor: Any, files: list[str], failed: int) -> int:
    """``predict --own-statistics``: every file featurised first, then all scored with their own statistics."""
    from threadpoolctl import threadpool_limits

    from serlib.core.formats import escape_controls
    from serlib.data.audio import AudioError

    if not predictor.adapts:  # refused before any file is read
        raise CommandError("--own-statistics: only the Whisper-base heads (encoder-head, encoder-mlp models) can "
                           "standardise the files with their own statistics")
    read, arrays = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for path in files:
            try:
                arrays.append(predictor.featurize(path))
                read.append(path)
            except AudioError as err:
                print(f"error: {escape_controls(path)}: {err.reason}: {escape_controls(str(err.detail))}",
                      file=sys.stderr)
                failed += 1
    if len(read) < MIN_OWN_STATISTICS_FILES:
        raise CommandError(f"--own-statistics needs at least {MIN_OWN_STATISTICS_FILES} readable files of one source "
                           f"to standardise with; {len(read)} were read")
    adapted = predictor.adapted_to(arrays)
    print(f"note: transductive: the {len(read)} files were standardised with their own statistics", file=sys.stderr)
    probabilities = adapted.predict_arrays(arrays)
    outputs = _Outputs(args.format, args.output, list(predictor.labels), predictor.outputs)
    try:
        for path, probs in zip(read, probabilities):
            outputs.write(_prediction_record(path, probs, list(predictor.labels)))
    finally:
        outputs.close()
    return 2 if failed else 0


def _trained_clip_seconds(predictor: Any) -> float:
    """The longest clip the model was trained on (its config's ``preprocess.max_seconds``; 8 s when unknown)."""
    config = predictor.info.get("config") if isinstance(getattr(predictor, "info", None), dict) else None
    value = ((config or {}).get("preprocess") or {}).get("max_seconds") if isinstance(config, dict) else None
    return float(value) if isinstance(value, (int, float)) and value > 0 else 8.0


def _predict_segments(args: argparse.Namespace, predictor: Any, files: list[str], failed: int) -> int:
    """``predict --segments``: one row per speech segment of each recording (see :mod:`serlib.serve.segments`)."""
    from serlib.core.formats import escape_controls
    from serlib.data.audio import AudioError, audio_info
    from serlib.serve.segments import label_segments, plot_timeline, speech_segments

    labels = list(predictor.labels)
    if args.plot and not os.access(Path(args.plot).parent if str(Path(args.plot).parent) else ".", os.W_OK):
        raise CommandError(f"--plot {args.plot}: its folder does not exist or is not writable")
    outputs = _Outputs(args.format, args.output, labels, predictor.outputs, segments=True)
    max_segment = args.max_segment or _trained_clip_seconds(predictor)
    from threadpoolctl import threadpool_limits

    blas = threadpool_limits(limits=1, user_api="blas")  # as in cmd_predict
    try:
        for path in files:
            try:
                duration = audio_info(path)[2]
                segments = speech_segments(path, min_pause=args.min_pause, max_segment=max_segment)
            except AudioError as err:
                print(f"error: {escape_controls(path)}: {err.reason}: {escape_controls(str(err.detail))}",
                      file=sys.stderr)
                failed += 1
                continue
            if not segments:
                print(f"error: {escape_controls(path)}: no-speech: Silero VAD found no speech", file=sys.stderr)
                failed += 1
                continue
            rows = []
            for segment, probs, why in label_segments(predictor, path, segments, duration=duration):
                if probs is None:
                    print(f"error: {escape_controls(path)} {segment.start:.2f}-{segment.end:.2f} s: "
                          f"{escape_controls(str(why))}", file=sys.stderr)
                    failed += 1
                    continue
                record = {**_prediction_record(path, probs, labels), "start": segment.start, "end": segment.end}
                record = {k: record[k] for k in ("path", "start", "end", "label", "probabilities")}
                outputs.write(record)
                rows.append(record)
            if args.plot and rows:
                out = Path(args.plot) if len(files) == 1 else Path(args.plot).with_name(
                    f"{Path(args.plot).stem}-{Path(path).stem}{Path(args.plot).suffix}")
                plot_timeline(rows, labels, out, title=f"{Path(path).name}: {predictor.info.get('name', '')}",
                              duration=duration)
    finally:
        blas.restore_original_limits()
        outputs.close()
    return 2 if failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from serlib.core.formats import CsvRecords, JsonRecords, escape_controls
    from serlib.serve.shipped import MODELS_DIR, broken_models, list_models

    if args.card:
        from serlib.serve.cards import card
        from serlib.serve.shipped import find_model

        print(card(find_model(args.card).meta), end="")
        return 0
    rows = [m.summary() for m in list_models()]
    for name, why in broken_models().items():  # listed as broken, never hidden
        print(f"serlib models: warning: {escape_controls(name)} is broken: {escape_controls(why)}", file=sys.stderr)
    if args.format == "json":
        writer = JsonRecords()
        for row in rows:
            writer.write(row)
        return 0
    if args.format == "csv":
        out = CsvRecords(["name", "kind", "system", "post_hoc", "corpus", "protocol", "classes", "folds", "mean_of_folds", "std_of_folds",
                          "pooled_uar", "pooled_ci95", "test_speakers", "fold", "seed", "fold_test_uar"])
        for row in rows:
            out.write({**row, "classes": " ".join(row["classes"]),
                       "pooled_ci95": " ".join(f"{x:.4f}" for x in row["pooled_ci95"] or [])})
        return 0
    if not rows:
        print(f"no shipped models (in {MODELS_DIR}); a checkpoint works too: serlib predict CHECKPOINT FILE")
        return 0
    table = [["name", "system", "corpus", "protocol", "UAR % mean ± std of folds", "pooled UAR % [95 % CI]", "classes"]]
    for row in rows:
        system = escape_controls(str(row["system"] or row["kind"])) + (" (post hoc)" if row["post_hoc"] else "")
        table.append([escape_controls(str(row["name"])), system]
                     + [escape_controls(str(row[k])) for k in ("corpus", "protocol")]
                     + [_folds_figure(row), _pooled_figure(row), escape_controls(", ".join(row["classes"]))])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1])
    print("UAR of the system over every fold of its protocol (each shipped model is one fold's run; its own fold's "
          "figure is in its sidecar); pooled: all folds' test clips scored as one set, CI resampling test speakers "
          "(n = test speakers); post hoc: a rule written after test numbers were seen")
    return 0


def _folds_figure(row: dict[str, Any]) -> str:
    mean, std, folds = row.get("mean_of_folds"), row.get("std_of_folds"), row.get("folds")
    if not isinstance(mean, (int, float)):
        fold = row.get("fold_test_uar")
        return f"fold {row.get('fold')} only: {100 * fold:.1f}" if isinstance(fold, (int, float)) else "?"
    return f"{100 * mean:.1f} ± {100 * std:.1f} ({folds} folds)" if isinstance(std, (int, float)) else f"{100 * mean:.1f}"


def _pooled_figure(row: dict[str, Any]) -> str:
    uar, ci = row.get("pooled_uar"), row.get("pooled_ci95")
    if not isinstance(uar, (int, float)) or not isinstance(ci, list) or len(ci) != 2:
        return "—"
    return f"{100 * uar:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] (n = {row.get('test_speakers')})"


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text} must be a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serlib", description="Speech emotion recognition: prepare, train, evaluate, predict.")
    parser.add_argument("--version", action="version", version=f"serlib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-root", help="corpus folder, or a folder holding one folder per corpus (default: $SERLIB_DATA/<corpus>)")
        p.add_argument("--cache-dir", help="feature cache (default: $SERLIB_CACHE or ~/.cache/serlib)")
        p.add_argument("--workers", type=int, default=None, help="processes for feature extraction (default: every core)")
        p.add_argument("--quiet", action="store_true", help="no progress output")

    def demucs_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--demucs-model", metavar="PATH", help="your Demucs weights (a folder or a .th/.safetensors "
                       "file) for a model trained with preprocess.denoise: demucs; a model file itself may only "
                       "name a pretrained Demucs model, read from your own caches")

    def config_args(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--config", required=required, help="experiment YAML (configs/<corpus>.yaml)")
        p.add_argument("--overlay", action="append", help="extra YAML merged on top (ablations); repeatable")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, e.g. train.epochs=5; repeatable")

    def manifest_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--manifest", metavar="FILE|FOLDER",
                       help="a corpus of your own: a CSV/TSV with path and label columns (speaker and split "
                            "optional), or a folder LABEL/.../*.wav")
        p.add_argument("--folds", type=int, default=None, metavar="K",
                       help="with --manifest: number of speaker (or stratified) folds (default: one per speaker up "
                            "to 10 speakers, else 5)")

    p = sub.add_parser("prepare", help="scan a corpus, quarantine bad files, build the feature cache")
    p.add_argument("corpus", nargs="?", help="one of the seven known corpora (or --manifest)")
    manifest_args(p)
    config_args(p, required=False)
    data_args(p)
    p.add_argument("--no-augment", action="store_true", help="skip the cached augmented copies")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train and test on one fold, or every fold of the protocol")
    config_args(p, required=False)
    manifest_args(p)
    data_args(p)
    p.add_argument("--fold", type=int, action="append", help="fold number (1-based); repeatable; default: every fold")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the config's)")
    p.add_argument("--seeds", type=int, nargs="+", help="several seeds")
    p.add_argument("--model", nargs="+", default=["all"], metavar="MODEL",
                   help="registered systems to run (serlib.systems.registry: tier1, baseline-svm, egemaps-svm, compare-svm, "
                        "whisper-logreg, ...; all = tier1 baseline-svm, or tier1 alone with --name)")
    p.add_argument("--name", default="tier1", help="run-folder name of the Tier-1 model (ablations: tier1-<what>; "
                                                    "then --model defaults to tier1 alone)")
    p.add_argument("--results", help="results folder (default: $SERLIB_RESULTS or ./results)")
    p.add_argument("--retrain", action="store_true",
                   help="replace run folders made from another config or other data (they are never reused)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue interrupted runs from last.pt (default: on)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a checkpoint on a corpus (or one fold's test part)")
    p.add_argument("checkpoint")
    p.add_argument("--corpus", help="corpus to evaluate on (default: the one it was trained on)")
    p.add_argument("--manifest", metavar="FILE|FOLDER", help="evaluate on a corpus of your own (a manifest)")
    p.add_argument("--protocol", choices=["speaker-split", "speaker-cv", "emobox", "split-column", "stratified-cv"],
                   help="with --fold: protocol whose test part to use")
    p.add_argument("--fold", type=int, help="evaluate only this fold's test part (1-based)")
    p.add_argument("--all-clips", action="store_true",
                   help="on the training corpus without --fold: score every clip, training clips included")
    p.add_argument("--out", help="folder for metrics.json and predictions.csv")
    demucs_arg(p)
    data_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label audio files (or folders of them) with a shipped model or a checkpoint",
                       usage="serlib predict [-h] [--model MODEL] [--format {table,csv,json}] [--output FILE] "
                             "[--list FILE] [--demucs-model PATH] [CHECKPOINT] FILE|FOLDER [...]",
                       description="Label audio files. The model is --model (a shipped model name, see `serlib models`, "
                                   "or a checkpoint file) or, without --model, the first argument (a checkpoint). "
                                   "Folders are searched recursively; a file counts as audio by its content, not its "
                                   "name. A bad file is one error line and the rest go on; the exit status is then 2.")
    p.add_argument("inputs", nargs="*", metavar="FILE|FOLDER",
                   help="audio files or folders (without --model: the checkpoint first)")
    p.add_argument("--list", metavar="FILE", help="a text file naming one audio file or folder per line "
                                                  "(relative to the list's folder; # starts a comment)")
    p.add_argument("--output", metavar="FILE", help="also write the predictions to FILE: .csv, or .jsonl (JSON Lines)")
    p.add_argument("--segments", action="store_true",
                   help="label each speech segment of a long recording (Silero VAD), one row per segment with its "
                        "start and end in seconds; the recording is read in blocks, so any length fits in memory")
    p.add_argument("--min-pause", type=_seconds, default=0.5, metavar="SECONDS",
                   help="with --segments: a pause shorter than this does not end a segment (default 0.5)")
    p.add_argument("--max-segment", type=_seconds, default=None, metavar="SECONDS",
                   help="with --segments: longer speech is cut into equal parts no longer than this "
                        "(default: the model's trained clip length)")
    p.add_argument("--plot", metavar="FILE.png", help="with --segments: draw the class probabilities over time")
    p.add_argument("--own-statistics", action="store_true",
                   help="standardise the files with their own statistics instead of the training corpus's "
                        f"(transductive: at least {MIN_OWN_STATISTICS_FILES} files from one source; Whisper-base "
                        "heads only)")
    p.add_argument("--model", help="shipped model name (serlib models) or checkpoint file")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="table: tab-separated text (default); csv: a header and one p_<label> column per class; "
                        "json: one JSON object per line")
    demucs_arg(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list the shipped models (serlib predict --model NAME)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--card", metavar="NAME", help="print one model's card: what it was trained on, its protocol and "
                                                  "figures, cross-corpus figures, intended use and limits")
    p.set_defaults(func=cmd_models, light=True)
    return parser


_PROJECT_ERRORS = (
    ("serlib.config", "ConfigError"), ("serlib.data.corpora", "CorpusLayoutError"), ("serlib.core.checkpoints", "CheckpointError"),
    ("serlib.features.preprocess", "DemucsUnavailable"), ("serlib.data.splits", "SplitError"), ("serlib.data.audio", "AudioError"),
    ("serlib.systems.reuse", "StaleRunError"), ("serlib.features.frames", "FeatureError"), ("serlib.features.encoders.weights", "WhisperUnavailable"),
    ("serlib.data.manifest", "ManifestError"),
)
"""The project's error classes that ``main`` turns into one line (besides every ValueError)."""


def _project_error_types() -> tuple[type[BaseException], ...]:
    """:data:`_PROJECT_ERRORS` of the modules this process has imported, plus ValueError.

    An error of a module that was never imported cannot have been raised, so
    looking only in ``sys.modules`` recognises every one without importing
    torch or pandas at start-up.
    """
    found: list[type[BaseException]] = []
    for module, name in _PROJECT_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return (*found, ValueError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``serlib`` console script."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("default")
    if not getattr(args, "light", False):
        import pandas as pd

        pd.set_option("display.width", 160)
    _tolerate_unprintable_names()
    previous_format = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:
        if isinstance(err, _project_error_types()):
            print(f"serlib {args.command}: error: {_one_line(err)}", file=sys.stderr)
            return 2
        if isinstance(err, OSError):  # last resort: a full disk, a permission, a missing file: one line
            print(f"serlib {args.command}: error: {_describe_os_error(err, args)}", file=sys.stderr)
            return 2
        raise
    finally:
        warnings.formatwarning = previous_format


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 1000 else text[:997] + "..."


def _one_line_warning(message: Any, category: type, filename: str, lineno: int, line: str | None = None) -> str:
    return f"serlib: warning: {_one_line(message)}\n"


def _output_folders(args: argparse.Namespace) -> str:
    """The folders a command writes to, for a disk-full message that lacks a file name."""
    from serlib.core.runs import default_results_dir
    from serlib.features.cache import default_cache_dir

    folders = [f"the cache {args.cache_dir or default_cache_dir()}"] if hasattr(args, "cache_dir") else []
    if hasattr(args, "results"):
        folders.append(f"the results {args.results or default_results_dir()}")
    if getattr(args, "out", None):
        folders.append(f"--out {args.out}")
    return " or ".join(folders) or "an output folder"


def _describe_os_error(err: OSError, args: argparse.Namespace) -> str:
    from serlib.core.files import DiskFullError, display_path, is_disk_full

    if isinstance(err, DiskFullError):
        return str(err)
    where = display_path(err.filename) if err.filename else None
    if is_disk_full(err):
        folder = display_path(Path(err.filename).parent) if err.filename else _output_folders(args)
        return f"no space left on the device while writing in {folder}: free some space or point it at another disk"
    return f"{err.strerror or err}: {where}" if where else _one_line(err)


def _tolerate_unprintable_names() -> None:
    """Print file names that are not valid UTF-8 as ``\\xNN`` instead of failing on them."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass


if __name__ == "__main__":
    sys.exit(main())
