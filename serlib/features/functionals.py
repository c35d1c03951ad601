"""openSMILE utterance functionals (eGeMAPSv02, ComParE_2016) and their on-disk cache.

The standard classical SER baseline describes each clip by one vector of
openSMILE functionals: eGeMAPSv02 (88 values; Eyben et al. 2016, IEEE Trans.
Affective Computing 7(2)) or ComParE_2016 (6373 values; Schuller et al.,
Interspeech 2016), extracted with the ``opensmile`` Python package (Eyben,
Wöllmer & Schuller, ACM Multimedia 2010).

Licence: the ``opensmile`` package ships the SMILExtract library under the
**audEERING Research License** -- free for private, research and educational
use, **not for commercial products** (a commercial licence is sold by
audEERING GmbH). serlib itself is MIT; using this module binds you to
openSMILE's terms.

Each clip is read with :func:`serlib.data.audio.load_audio` (16 kHz mono, any
format soundfile decodes, Opus ``.ogg`` included) and handed to openSMILE as a
numpy signal; openSMILE never opens files itself. Functionals are computed on
the raw clip: no denoising, VAD trimming or level normalisation (the usual
baseline recipe; the features are largely level-invariant).

Cache layout (under :func:`serlib.features.cache.default_cache_dir`)::

    <cache>/<corpus>/functionals-<set>-<key>/
        chunk-00000.npz   utt_ids, values (clips x dims float32), bad_ids, bad_reasons, bad_details
        chunk-00001.npz   ...
        meta.json         written last: feature names, opensmile version, counts

``key`` hashes the manifest fingerprint (:func:`serlib.features.cache.data_fingerprint`:
ids, labels, speakers, file sizes), the feature set, the opensmile version and
the chunk size. Clips are processed in fixed chunks of the manifest sorted by
``utt_id``; every chunk is written atomically as soon as it is done, so an
interrupted extraction resumes at the first missing chunk. Clips that cannot
be used are quarantined with a reason (the :class:`serlib.data.audio.AudioError`
reasons, ``opensmile-error`` or ``non-finite-functionals``), never fatal.
Only numpy arrays of numbers and strings are stored; nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from serlib.data.audio import MAX_FILE_SECONDS, AudioError, load_audio
from serlib.features.cache import data_fingerprint, default_cache_dir, load_chunk, save_chunk

CACHE_VERSION = 1
SAMPLE_RATE = 16000
CHUNK_SIZE = 256
FEATURE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}  # short name -> opensmile.FeatureSet member
LICENCE = "openSMILE: audEERING Research License (research, private and educational use; no commercial use)"


class FunctionalsError(ValueError):
    """The functionals cannot be prepared (unknown feature set, opensmile missing)."""


def _opensmile():
    try:
        import opensmile
    except ImportError:  # pragma: no cover - opensmile is a declared dependency
        raise FunctionalsError("the 'opensmile' package is not installed: pip install opensmile") from None
    return opensmile


def opensmile_version() -> str:
    return str(_opensmile().__version__)


def resolve_feature_set(name: str) -> str:
    """Short name (``egemaps`` / ``compare``) or openSMILE name (``eGeMAPSv02``) -> the short name."""
    for short, full in FEATURE_SETS.items():
        if name.lower() in (short, full.lower()):
            return short
    raise FunctionalsError(f"unknown functional set {name!r}: use one of {sorted(FEATURE_SETS)}")


def make_smile(feature_set: str, level: str = "functionals"):
    """An ``opensmile.Smile`` for ``feature_set`` (one thread).

    ``level="functionals"`` gives one vector per clip; ``level="lld"`` the
    frame-level low-level descriptors (10 ms hop) the functionals summarise.
    """
    opensmile = _opensmile()
    short = resolve_feature_set(feature_set)
    if level not in ("functionals", "lld"):
        raise FunctionalsError(f"unknown openSMILE level {level!r}: use 'functionals' or 'lld'")
    feature_level = (opensmile.FeatureLevel.Functionals if level == "functionals"
                     else opensmile.FeatureLevel.LowLevelDescriptors)
    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[short]),
                           feature_level=feature_level, num_workers=1)


LLD_DIMS = {"egemaps": 25, "compare": 65}
"""Low-level descriptors per frame of each feature set (eGeMAPSv02: pitch, jitter, shimmer, HNR, formants,
loudness, spectral balance, MFCC 1-4; ComParE_2016: 65)."""


def extract_llds(wave: np.ndarray, smile, n_frames: int, hop_seconds: float,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Frame-level descriptors aligned to ``n_frames`` frames centred at ``t * hop_seconds``.

    Returns ``(n_frames, dims)`` float32: each frame takes the openSMILE frame
    whose centre is nearest in time (openSMILE frames are not centred on the
    signal's start, so the counts differ by a few frames). Undefined values
    (NaN) become 0, openSMILE's own value for unvoiced frames; a clip too short
    for any openSMILE frame gives zeros.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = smile.process_signal(np.ascontiguousarray(wave, dtype=np.float32), sample_rate)
    values = np.nan_to_num(frame.to_numpy(dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if not len(values):
        return np.zeros((n_frames, len(smile.feature_names)), dtype=np.float32)
    starts = frame.index.get_level_values("start").total_seconds().to_numpy()
    ends = frame.index.get_level_values("end").total_seconds().to_numpy()
    centres = (starts + ends) / 2
    if len(centres) == 1:
        return np.repeat(values, n_frames, axis=0)
    want = np.arange(n_frames) * hop_seconds
    pos = np.clip(np.searchsorted(centres, want), 1, len(centres) - 1)
    nearer_left = want - centres[pos - 1] <= centres[pos] - want
    return values[pos - nearer_left]


def feature_names(feature_set: str) -> list[str]:
    """The names of the functionals, in column order (88 for eGeMAPS, 6373 for ComParE)."""
    return list(make_smile(feature_set).feature_names)


def extract_functionals(wave: np.ndarray, smile, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One clip's functionals as a float32 vector (may contain NaN for clips openSMILE finds too short)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Segment too short, filling with NaN."
        frame = smile.process_signal(np.ascontiguousarray(wave, dtype=np.float32), sample_rate)
    return frame.to_numpy(dtype=np.float32).reshape(-1)


def functionals_key(manifest: pd.DataFrame, feature_set: str, chunk_size: int = CHUNK_SIZE) -> str:
    """Cache key for this corpus copy and feature set (see the module docstring)."""
    parts = [CACHE_VERSION, data_fingerprint(manifest), resolve_feature_set(feature_set), opensmile_version(), chunk_size]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(feature_set: str) -> None:
    _WORKER["smile"] = make_smile(feature_set)
    _WORKER["set"] = feature_set


def _process_clip(utt_id: str, path: str) -> tuple[np.ndarray | None, str, str]:
    try:
        wave = load_audio(path, SAMPLE_RATE, max_seconds=MAX_FILE_SECONDS)
    except AudioError as err:
        return None, err.reason, err.detail
    try:
        values = extract_functionals(wave, _WORKER["smile"])
    except Exception as exc:  # SMILExtract raises plain RuntimeErrors
        return None, "opensmile-error", f"{type(exc).__name__}: {exc}".strip()
    if not np.all(np.isfinite(values)):
        return None, "non-finite-functionals", f"{int((~np.isfinite(values)).sum())} NaN/inf values"
    return values, "ok", ""


def _process_chunk(task: tuple[int, list[str], list[str]]) -> tuple[int, dict[str, np.ndarray]]:
    index, ids, paths = task
    good_ids, rows, bad = [], [], []
    for utt_id, path in zip(ids, paths):
        values, reason, detail = _process_clip(utt_id, path)
        if values is None:
            bad.append((utt_id, reason, detail))
        else:
            good_ids.append(utt_id)
            rows.append(values)
    dim = rows[0].shape[0] if rows else 0
    return index, {
        "utt_ids": np.array(good_ids, dtype=str),
        "values": np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32),
        "bad_ids": np.array([b[0] for b in bad], dtype=str),
        "bad_reasons": np.array([b[1] for b in bad], dtype=str),
        "bad_details": np.array([b[2] for b in bad], dtype=str),
    }


def _run_chunks(tasks: list[tuple[int, list[str], list[str]]], feature_set: str, workers: int,
                progress: bool, desc: str) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    from tqdm import tqdm

    bar = tqdm(total=sum(len(t[1]) for t in tasks), desc=desc, unit="clip", disable=not progress)
    if workers <= 1:
        _init_worker(feature_set)
        for task in tasks:
            result = _process_chunk(task)
            bar.update(len(task[1]))
            yield result
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(feature_set,)) as pool:
            for task, result in zip(tasks, pool.map(_process_chunk, tasks)):
                bar.update(len(task[1]))
                yield result
    bar.close()


# ----------------------------------------------------------------------------- cache io


@dataclass
class FunctionalSet:
    """The functionals of every usable clip of one corpus copy."""

    feature_set: str  # short name: egemaps / compare
    names: list[str]
    utt_ids: list[str]
    values: np.ndarray  # (clips, dims) float32, rows in utt_ids order
    quarantine: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["utt_id", "reason", "detail"]))
    path: Path | None = None
    key: str = ""
    fingerprint: str = ""
    opensmile_version: str = ""
    seconds: float = 0.0
    computed: int = 0  # clips extracted by this call (0: all from the cache)

    def matrix(self, utt_ids: Sequence[str]) -> np.ndarray:
        """Rows for ``utt_ids`` in that order; clips without functionals (quarantined, unknown) are NaN rows."""
        index = {u: i for i, u in enumerate(self.utt_ids)}
        rows = np.array([index.get(str(u), -1) for u in utt_ids], dtype=np.int64)
        out = np.full((len(rows), self.values.shape[1]), np.nan, dtype=np.float32)
        out[rows >= 0] = self.values[rows[rows >= 0]]
        return out

    def summary(self) -> dict[str, Any]:
        return {"feature_set": self.feature_set, "opensmile_name": FEATURE_SETS[self.feature_set],
                "dims": int(self.values.shape[1]), "clips": len(self.utt_ids), "quarantined": int(len(self.quarantine)),
                "seconds": round(self.seconds, 2), "computed": self.computed, "cache": str(self.path), "key": self.key,
                "fingerprint": self.fingerprint, "opensmile": self.opensmile_version, "licence": LICENCE}


_MEMO: dict[str, FunctionalSet] = {}  # folder -> loaded set, so the folds of one protocol load it once


def prepare_functionals(manifest: pd.DataFrame, feature_set: str = "egemaps", *, cache_dir: str | Path | None = None,
                        chunk_size: int = CHUNK_SIZE, workers: int = 1, progress: bool = True) -> FunctionalSet:
    """Extract (or load from the cache) the openSMILE functionals of every clip in ``manifest``.

    Parameters
    ----------
    manifest
        From :func:`serlib.data.corpora.read_corpus` (columns ``utt_id``, ``path``,
        ``label``, ``speaker``, ``corpus``); a ``status`` column is ignored:
        every file is tried and unusable ones are quarantined here too.
    feature_set
        ``egemaps`` (eGeMAPSv02, 88 values) or ``compare`` (ComParE_2016, 6373).
    cache_dir
        Cache root (default :func:`serlib.features.cache.default_cache_dir`).
    chunk_size
        Clips per cache file: an interruption loses at most one chunk per worker.
    workers
        Processes; ``1`` extracts in this process (openSMILE itself uses one thread).
    """
    start = time.perf_counter()
    short = resolve_feature_set(feature_set)
    if chunk_size < 1:
        raise FunctionalsError(f"chunk_size must be positive, not {chunk_size}")
    missing = {"utt_id", "path"} - set(manifest.columns)
    if missing:
        raise FunctionalsError(f"manifest lacks the column(s) {sorted(missing)}")
    corpus = str(manifest["corpus"].iloc[0]) if "corpus" in manifest.columns and len(manifest) else "corpus"
    key = functionals_key(manifest, short, chunk_size)
    folder = Path(cache_dir or default_cache_dir()) / corpus / f"functionals-{short}-{key}"
    meta_path = folder / "meta.json"
    if meta_path.is_file() and str(folder) in _MEMO:
        return replace(_MEMO[str(folder)], seconds=time.perf_counter() - start, computed=0)
    ordered = manifest.sort_values("utt_id", kind="stable")
    ids, paths = ordered["utt_id"].astype(str).tolist(), ordered["path"].astype(str).tolist()
    spans = [(i, ids[a : a + chunk_size], paths[a : a + chunk_size]) for i, a in enumerate(range(0, len(ids), chunk_size))]
    folder.mkdir(parents=True, exist_ok=True)
    chunks: dict[int, dict[str, np.ndarray]] = {}
    todo = []
    for index, cids, cpaths in spans:
        chunk = load_chunk(folder / f"chunk-{index:05d}.npz", cids, failed_key="bad_ids",
                           required=("utt_ids", "values", "bad_ids", "bad_reasons", "bad_details"))
        if chunk is None:
            todo.append((index, cids, cpaths))
        else:
            chunks[index] = chunk
    computed = 0
    if todo:
        for index, chunk in _run_chunks(todo, short, workers, progress, f"openSMILE {short} {corpus}"):
            save_chunk(folder / f"chunk-{index:05d}.npz", chunk)
            chunks[index] = chunk
            computed += len(spans[index][1])
    names = feature_names(short)
    parts = [chunks[i] for i in sorted(chunks)]
    values = np.concatenate([c["values"].reshape(-1, len(names)) for c in parts]) if parts else np.zeros((0, len(names)), np.float32)
    quarantine = pd.DataFrame({
        "utt_id": np.concatenate([c["bad_ids"] for c in parts]) if parts else [],
        "reason": np.concatenate([c["bad_reasons"] for c in parts]) if parts else [],
        "detail": np.concatenate([c["bad_details"] for c in parts]) if parts else [],
    }).astype(str)
    result = FunctionalSet(
        feature_set=short, names=names, utt_ids=[str(u) for c in parts for u in c["utt_ids"]], values=values,
        quarantine=quarantine, path=folder, key=key, fingerprint=data_fingerprint(manifest),
        opensmile_version=opensmile_version(), seconds=time.perf_counter() - start, computed=computed)
    if computed or not meta_path.is_file():
        meta = {"key": key, "version": CACHE_VERSION, "corpus": corpus, "feature_set": short,
                "opensmile_name": FEATURE_SETS[short], "opensmile": result.opensmile_version,
                "fingerprint": result.fingerprint, "chunk_size": chunk_size, "clips": len(result.utt_ids),
                "quarantined": int(len(quarantine)), "names": names, "licence": LICENCE, "created": time.time()}
        tmp = meta_path.with_name(f".meta.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(meta_path)
    if len(_MEMO) >= 2:  # keep at most two sets (e.g. eGeMAPS and ComParE) in memory: ComParE of CREMA-D is ~190 MB
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[str(folder)] = result
    return result


__all__ = [
    "FEATURE_SETS", "LLD_DIMS", "LICENCE", "FunctionalsError", "FunctionalSet", "resolve_feature_set", "make_smile",
    "extract_llds", "feature_names", "extract_functionals", "functionals_key", "prepare_functionals", "opensmile_version",
]
