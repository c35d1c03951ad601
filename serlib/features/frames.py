"""Frame features (MFCC / log-mel), normalisation statistics and the on-disk cache.

Features are computed once per (corpus files, preprocessing config, feature
config) and cached under ``$SERLIB_CACHE`` (default ``~/.cache/serlib``)::

    <cache>/<corpus>/<key>/
        meta.json               written last: a folder without it is not a cache
        features.npz            utt_ids, offsets, data (all frames concatenated)
        augmented-<akey>.npz    cached waveform-augmented copies (training only)
        manifest.csv            the manifest with a ``status`` column (ok / reason)
        quarantine.csv          excluded files and why
        preprocess.csv          per clip: seconds in/out, VAD found speech, denoiser

``key`` hashes the preprocessing and feature sections of the config and the
corpus's content (every clip's id, label, speaker and the sha256 of its bytes),
so changing a setting or a file recomputes, while a corpus copied or moved
elsewhere (new paths, new modification times) keeps its cache. A finished cache
made under the older key (paths and modification times) is adopted when its
settings and data fingerprint are the request's (:func:`adopt_earlier_cache`).
Every file is written to a temporary name and renamed, so a killed run never
leaves a cache that loads as valid.

Faults never cost more than a little work, and never a traceback:

- clips finished so far are saved in chunks (``partial-*/chunk-*.npz``, every
  :data:`CHUNK_CLIPS` clips or :data:`CHUNK_SECONDS` seconds, and on Ctrl-C), so
  a re-run after a kill continues where it stopped;
- a cache file that is damaged (truncated, empty, garbage) is named in a
  :class:`CacheWarning` and rebuilt;
- temporaries left by a killed run are removed by the next one, and a full disk
  is a :class:`serlib.core.files.DiskFullError` naming the folder;
- feature workers die with the process that started them (:mod:`serlib.core.workers`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from serlib.config import Config, FeatureConfig, PreprocessConfig, WaveAugmentConfig
from serlib.core.files import DiskFullError, atomic_write, clean_stale_temporaries, is_disk_full
from serlib.core.workers import worker_pool
from serlib.data.audio import AudioError, load_audio
from serlib.features.cache import data_fingerprint, default_cache_dir
from serlib.features.preprocess import Denoiser, make_denoiser, preprocess_wave

CACHE_VERSION = 1
CHUNK_CLIPS = 100
"""Finished clips are saved to a chunk file at least every this many clips..."""
CHUNK_SECONDS = 60.0
"""... or every this many seconds, so a killed ``prepare`` loses at most one chunk."""
_WHAT = "the feature cache"


class CacheWarning(UserWarning):
    """A cache file was damaged (or could not be used) and is being rebuilt."""


class FeatureError(RuntimeError):
    """Feature extraction cannot go on (a worker process died); finished clips are kept."""


# ----------------------------------------------------------------------------- extraction


class FeatureExtractor:
    """Waveform (16 kHz float) -> ``(frames, dims)`` float32 features with torchaudio.

    With ``features.lld`` set, openSMILE's low-level descriptors of that set
    (:func:`serlib.features.functionals.extract_llds`, aligned to the same 10 ms frames)
    follow the MFCC / log-mel values in every frame, before the deltas.
    """

    def __init__(self, config: FeatureConfig, sample_rate: int = 16000) -> None:
        import torch  # imported where used: a warm `serlib prepare` never loads torch
        import torchaudio

        self.config = config
        win = int(round(sample_rate * config.win_ms / 1000))
        hop = int(round(sample_rate * config.hop_ms / 1000))
        n_fft = 1 << (win - 1).bit_length()
        mel = dict(n_fft=n_fft, win_length=win, hop_length=hop, n_mels=config.n_mels, f_min=20.0,
                   f_max=sample_rate / 2, center=True)
        if config.kind == "mfcc":
            self.transform: torch.nn.Module = torchaudio.transforms.MFCC(
                sample_rate=sample_rate, n_mfcc=config.n_mfcc, log_mels=True, melkwargs=mel
            )
        elif config.kind == "logmel":
            self.transform = torch.nn.Sequential(
                torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, **mel),
                torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0),
            )
        else:
            raise ValueError(f"features.kind must be 'mfcc' or 'logmel', got {config.kind!r}")
        self.sample_rate, self.hop_seconds = sample_rate, hop / sample_rate
        self.smile = None
        if config.lld != "none":
            from serlib.features.functionals import make_smile

            self.smile = make_smile(config.lld, level="lld")

    @property
    def dim(self) -> int:
        from serlib.features.functionals import LLD_DIMS

        base = self.config.n_mfcc if self.config.kind == "mfcc" else self.config.n_mels
        base += LLD_DIMS.get(self.config.lld, 0)
        return base * (3 if self.config.deltas else 1)

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        import torch
        import torchaudio

        with torch.no_grad():
            spec = self.transform(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
            if self.smile is not None:  # openSMILE descriptors as extra rows (their deltas follow below)
                from serlib.features.functionals import extract_llds

                llds = extract_llds(wave, self.smile, spec.shape[1], self.hop_seconds, self.sample_rate)
                spec = torch.cat([spec, torch.from_numpy(llds.T.copy())], dim=0)
            if self.config.deltas:
                d1 = torchaudio.functional.compute_deltas(spec)
                spec = torch.cat([spec, d1, torchaudio.functional.compute_deltas(d1)], dim=0)
            return spec.T.contiguous().numpy().astype(np.float32)


class FileFrames:
    """An audio file -> its frame features as the cache made them: read, preprocess, extract (raises AudioError).

    The denoiser and the extractor are built on the first file and reused.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._denoiser: Denoiser | None = None
        self._extractor: FeatureExtractor | None = None

    def __call__(self, path: str | Path) -> np.ndarray:
        pre = self.config.preprocess
        wave = load_audio(path, pre.sample_rate)
        if self._extractor is None:
            self._denoiser = make_denoiser(pre)
            self._extractor = FeatureExtractor(self.config.features, pre.sample_rate)
        wave, _ = preprocess_wave(wave, pre, self._denoiser)
        return self._extractor(wave)


@dataclass
class Normalizer:
    """Per-dimension mean/std, fitted on training utterances only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, arrays: Iterable[np.ndarray]) -> "Normalizer":
        stacked = np.concatenate(list(arrays), axis=0).astype(np.float64)
        return cls(stacked.mean(0).astype(np.float32), (stacked.std(0) + 1e-5).astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Normalizer":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def standardize_by_speaker(variants: list[list[np.ndarray]], speakers: Sequence[str]) -> list[list[np.ndarray]]:
    """Every version of every clip standardised with its speaker's per-dimension frame mean and std.

    ``variants[i]`` holds the versions of clip ``i`` (the clean clip first, then
    cached augmented copies); a speaker's statistics come from the frames of
    its clean clips only and are applied to all versions. Applied to test
    speakers this is *transductive*: their unlabelled clips set the statistics.
    """
    if len(variants) != len(speakers):
        raise ValueError(f"{len(variants)} clips but {len(speakers)} speaker ids")
    stats: dict[str, Normalizer] = {}
    for speaker in dict.fromkeys(speakers):
        stats[speaker] = Normalizer.fit(v[0] for v, s in zip(variants, speakers) if s == speaker)
    return [[stats[s](x).astype(np.float32) for x in v] for v, s in zip(variants, speakers)]


def center_clip(x: np.ndarray) -> np.ndarray:
    """``x`` ``(frames, dims)`` minus its own mean frame (sentence-level mean normalisation).

    Inductive: it needs nothing but the clip itself, so a single file is scored
    exactly as in training. SpeechBrain's emotion recipes normalise their inputs
    this way (``InputNormalization(norm_type="sentence", std_norm=False)``).
    """
    return (x - x.mean(axis=0, dtype=np.float64)).astype(np.float32)


def center_each_clip(variants: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Every version of every clip (clean and augmented copies) minus its own mean frame (:func:`center_clip`)."""
    return [[center_clip(x) for x in v] for v in variants]


# ----------------------------------------------------------------------------- keys


def content_signature(manifest: pd.DataFrame) -> str:
    """sha256 over every clip's id, label, speaker and file bytes: the copy's content, wherever it lives.

    A file that cannot be read counts as unreadable (it is quarantined later, not a crash here).
    """
    h = hashlib.sha256()
    for row in manifest.sort_values("utt_id").itertuples():
        digest = hashlib.sha256()
        try:
            with open(row.path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            content = digest.hexdigest()
        except OSError:
            content = "unreadable"
        h.update(f"{row.utt_id}|{getattr(row, 'label', '')}|{getattr(row, 'speaker', '')}|{content}\n"
                 .encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:16]


def cache_key(manifest: pd.DataFrame, config: Config) -> str:
    """Key of the base feature cache for this corpus content (:func:`content_signature`) and these settings."""
    return _key(config, content_signature(manifest))


def _feature_settings(features: dict[str, Any]) -> dict[str, Any]:
    """A features section as cache keys see it: ``lld`` (added later) only when set, so older caches keep their keys."""
    return {k: v for k, v in features.items() if not (k == "lld" and v == "none")}


def _preprocess_settings(preprocess: dict[str, Any]) -> dict[str, Any]:
    """A preprocess section as cache keys see it: ``max_file_seconds`` (added later) only when not the default."""
    default = PreprocessConfig().max_file_seconds
    return {k: v for k, v in preprocess.items() if not (k == "max_file_seconds" and v == default)}


def _key(config: Config, content: str) -> str:
    sections = config.to_dict()
    return _hash([CACHE_VERSION, _preprocess_settings(sections["preprocess"]), _feature_settings(sections["features"]),
                  content])


def adopt_earlier_cache(folder: Path, config: Config, fingerprint: str, content: str) -> bool:
    """Rename a finished cache of the same settings and data into ``folder``, the current key's; True when done.

    Caches made before :func:`cache_key` hashed the content were keyed on file
    paths and modification times, so a fresh copy of the same corpus missed
    them. Such an earlier cache (its ``meta.json`` has no ``content`` entry) is
    adopted (renamed, never recomputed) when it records this cache version, the
    same preprocessing and feature settings and this data fingerprint (clip ids,
    labels, speakers, file sizes); the newest one wins. A cache of the current
    kind is never adopted: another key means other content. Nothing happens when
    ``folder`` already holds a cache or another process adopts it first. The
    adopted ``meta.json`` records ``content``, the current content signature.
    """
    if (folder / "meta.json").exists() or not folder.parent.is_dir():
        return False
    sections = config.to_dict()
    for meta_path in sorted(folder.parent.glob("*/meta.json"), key=_mtime, reverse=True):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        earlier = meta.get("config", {}) if isinstance(meta, dict) else {}
        if not (isinstance(earlier, dict) and "content" not in meta and meta.get("version") == CACHE_VERSION
                and meta.get("fingerprint") == fingerprint and isinstance(earlier.get("preprocess"), dict)
                and _preprocess_settings(earlier["preprocess"]) == _preprocess_settings(sections["preprocess"])
                and isinstance(earlier.get("features"), dict)
                and _feature_settings(earlier["features"]) == _feature_settings(sections["features"])):
            continue
        meta.update(key=folder.name, content=content, adopted_from=meta_path.parent.name)
        try:  # the meta data first, so that the folder is a valid cache the moment it has its new name
            _atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
            if folder.exists():
                folder.rmdir()  # only an empty folder; one holding partial work is kept and computed into
            meta_path.parent.rename(folder)
        except OSError:
            return False
        return True
    return False


def _with_paths(quarantine: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """``quarantine`` with each clip's path in ``manifest`` (the cache may have been made from another copy)."""
    paths = manifest[["utt_id", "path"]].astype({"utt_id": str})
    return quarantine.drop(columns=["path"], errors="ignore").astype({"utt_id": str}).merge(paths, on="utt_id",
                                                                                             how="left")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def augment_key(config: Config) -> str:
    """Key of the augmented-copies file inside a base cache folder.

    Only the settings the chosen ``kind`` reads count, and the random kind's key
    is the one it had before speed perturbation existed (its caches stay valid).
    """
    section = dict(config.to_dict()["wave_augment"])
    kind = section.pop("kind", "random")
    speeds = section.pop("speeds", None)
    if kind == "speed":
        section = {"enabled": section["enabled"], "kind": kind, "speeds": list(speeds)[: section["copies"]]}
    return _hash(section)


# ----------------------------------------------------------------------------- atomic io


def _atomic_write(path: Path, write) -> None:
    atomic_write(path, write, _WHAT)


def _pack(arrays: dict[str, np.ndarray], prefix: str = "") -> dict[str, np.ndarray]:
    """Many 2-D arrays as three: ids, offsets and all rows concatenated."""
    ids = list(arrays)
    lengths = np.array([arrays[i].shape[0] for i in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    dim = next(iter(arrays.values())).shape[1] if arrays else 0
    data = np.concatenate([arrays[i] for i in ids]) if ids else np.zeros((0, dim), np.float32)
    return {f"{prefix}utt_ids": np.array(ids, dtype=str), f"{prefix}offsets": offsets, f"{prefix}data": data}


def _unpack(z: Any, prefix: str = "") -> dict[str, np.ndarray]:
    ids, offsets, data = z[f"{prefix}utt_ids"], z[f"{prefix}offsets"], z[f"{prefix}data"]
    if offsets.ndim != 1 or len(offsets) != len(ids) + 1 or data.ndim != 2 or offsets[-1] != len(data) \
            or np.any(np.diff(offsets) < 0):
        raise ValueError("inconsistent ids, offsets and data")
    return {str(u): data[offsets[i] : offsets[i + 1]] for i, u in enumerate(ids)}


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    packed = _pack(arrays)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **packed)

    _atomic_write(path, write)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # own handle: closed even on a bad zip
        return _unpack(z)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    _atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, errors="surrogateescape"))


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read a cache CSV that must have ``columns`` (raises ValueError naming what is missing)."""
    frame = pd.read_csv(path, dtype={"utt_id": str}, keep_default_na=False, na_values=[""],
                        encoding_errors="surrogateescape")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}")
    return frame


# ----------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(config: dict[str, Any], denoiser: Denoiser | None, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    pre = PreprocessConfig(**config["preprocess"])
    feats = FeatureConfig(**config["features"])
    aug = config["wave_augment"]
    aug = WaveAugmentConfig(**{**aug, **{k: tuple(v) for k, v in aug.items() if isinstance(v, list)}})
    _WORKER.update(
        pre=pre,
        aug=aug,
        extractor=FeatureExtractor(feats, pre.sample_rate),
        denoiser=denoiser,
    )


def _process(task: tuple[str, str, bool, int]) -> dict[str, Any]:
    """Load, preprocess and featurise one clip (and its augmented copies)."""
    from serlib.features.augment import augment_wave, clip_rng

    utt_id, path, want_base, copies = task
    pre: PreprocessConfig = _WORKER["pre"]
    try:
        wave = load_audio(path, pre.sample_rate, max_seconds=pre.max_file_seconds or None)
    except AudioError as err:
        return {"utt_id": utt_id, "error": err.reason, "detail": err.detail}
    try:
        wave, info = preprocess_wave(wave, pre, _WORKER["denoiser"])
        extractor: FeatureExtractor = _WORKER["extractor"]
        out: dict[str, Any] = {"utt_id": utt_id, "info": info.__dict__}
        if want_base:
            out["features"] = extractor(wave)
        out["augmented"] = [
            extractor(augment_wave(wave, pre.sample_rate, _WORKER["aug"], clip_rng(utt_id, k), copy=k))
            for k in range(copies)
        ]
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a clip the pipeline cannot handle is quarantined, not fatal
        return {"utt_id": utt_id, "error": "processing-failed", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    return out


def _run_tasks(
    tasks: list[tuple[str, str, bool, int]],
    config: Config,
    workers: int,
    denoiser: Denoiser | None,
    progress: bool,
) -> Iterator[dict[str, Any]]:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc=f"prepare {config.data.corpus}", unit="clip", disable=not progress)
    if workers <= 1:
        import torch

        _init_worker(config.to_dict(), denoiser, torch.get_num_threads())
        for task in tasks:
            yield _process(task)
            bar.update()
    else:
        with worker_pool(workers, _init_worker, (config.to_dict(), denoiser, 1)) as pool:
            try:
                for result in pool.map(_process, tasks, chunksize=max(1, min(32, len(tasks) // (8 * workers)))):
                    yield result
                    bar.update()
            except BrokenProcessPool:
                raise FeatureError(
                    "a feature worker process died (out of memory? killed?); the clips finished so far "
                    "are saved: re-run the same command to continue (--workers 1 uses less memory)"
                ) from None
    bar.close()


# ----------------------------------------------------------------------------- the cache


@dataclass
class FeatureSet:
    """Everything :func:`prepare_features` produced for one corpus."""

    manifest: pd.DataFrame  # every scanned file, with ``status`` ("ok" or a quarantine reason)
    features: dict[str, np.ndarray]  # utt_id -> (frames, dims), usable clips only
    augmented: dict[str, list[np.ndarray]] = field(default_factory=dict)
    quarantine: pd.DataFrame = field(default_factory=pd.DataFrame)
    preprocess_info: pd.DataFrame = field(default_factory=pd.DataFrame)
    path: Path | None = None
    key: str = ""
    fingerprint: str = ""
    content: str = ""  # sha256 over every clip's bytes (content_signature) of this copy
    seconds: float = 0.0
    computed: int = 0  # clips (re)computed by this call; 0 when everything came from the cache
    resumed: int = 0  # clips taken from the chunks an interrupted run saved

    @property
    def usable(self) -> pd.DataFrame:
        """Manifest rows that passed validation."""
        return self.manifest[self.manifest["status"] == "ok"].reset_index(drop=True)

    def fingerprint_with(self, extra: dict[str, "FeatureSet"]) -> str:
        """This corpus's fingerprint followed by ``corpus:fingerprint`` of each extra training corpus (``+``-joined)."""
        return "+".join([self.fingerprint] + [f"{corpus}:{fs.fingerprint}" for corpus, fs in extra.items()])

    def summary(self) -> dict[str, Any]:
        ok = self.usable
        secs = self.preprocess_info.set_index("utt_id")["input_seconds"] if len(self.preprocess_info) else pd.Series(dtype=float)
        return {
            "corpus": str(self.manifest["corpus"].iloc[0]) if len(self.manifest) else "",
            "files": int(len(self.manifest)),
            "usable": int(len(ok)),
            "quarantined": int(len(self.quarantine)),
            "speakers": int(ok["speaker"].nunique()),
            "classes": sorted(ok["label"].unique().tolist()),
            "hours": round(float(secs.sum()) / 3600, 3),
            "vad_no_speech": int((~self.preprocess_info["vad_found_speech"].astype(bool)).sum()) if len(self.preprocess_info) else 0,
            "augmented_copies": int(sum(len(v) for v in self.augmented.values())),
            "seconds": round(self.seconds, 2),
            "computed": self.computed,
            "resumed": self.resumed,
            "cache": str(self.path),
            "fingerprint": self.fingerprint,
        }


_INFO_COLUMNS = ["utt_id", "input_seconds", "output_seconds", "vad_found_speech", "denoise"]
_QUARANTINE_COLUMNS = ["utt_id", "reason", "detail"]


def _damaged(where: Path, name: str, exc: BaseException, action: str = "rebuilding it") -> None:
    why = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:160] if str(exc) else type(exc).__name__
    warnings.warn(f"feature cache {where}: {name} is damaged ({why}); {action}", CacheWarning, stacklevel=3)


@dataclass
class _Base:
    """The base cache read back from disk."""

    status: pd.DataFrame
    features: dict[str, np.ndarray]
    info: pd.DataFrame
    quarantine: pd.DataFrame
    meta: dict[str, Any]


def _load_base(folder: Path, key: str, manifest: pd.DataFrame) -> _Base | None:
    """The base cache in ``folder`` if complete and sound; None (with a :class:`CacheWarning` if damaged) otherwise."""
    if not (folder / "meta.json").exists():
        return None  # never finished: nothing to report
    name = "meta.json"
    try:
        meta = json.loads((folder / name).read_text())
        if not isinstance(meta, dict) or meta.get("key") != key or not isinstance(meta.get("fingerprint"), str):
            raise ValueError("not the meta data of this cache")
        name = "manifest.csv"
        status = _read_csv(folder / name, ["utt_id", "status"])[["utt_id", "status"]]
        if sorted(status["utt_id"].astype(str)) != sorted(manifest["utt_id"].astype(str)):
            raise ValueError("it lists other clips than the corpus")
        name = "features.npz"
        features = _load_arrays(folder / name)
        ok = set(status.loc[status["status"] == "ok", "utt_id"])
        if set(features) != ok:
            raise ValueError(f"{len(features)} clips, but manifest.csv has {len(ok)} usable ones")
        name = "preprocess.csv"
        info = _read_csv(folder / name, _INFO_COLUMNS)
        if sorted(info["utt_id"]) != sorted(ok):
            raise ValueError(f"{len(info)} rows for {len(ok)} usable clips")
        name = "quarantine.csv"
        quarantine = _read_csv(folder / name, _QUARANTINE_COLUMNS)
        if sorted(quarantine["utt_id"]) != sorted(set(status["utt_id"]) - ok):
            raise ValueError(f"{len(quarantine)} rows for {len(status) - len(ok)} quarantined clips")
    except Exception as exc:  # truncated zip, empty or garbage file, missing file...
        _damaged(folder, name, exc)
        return None
    return _Base(status, features, info, quarantine, meta)


def _load_augmented(path: Path, ok_ids: set[str], copies: int) -> dict[str, np.ndarray] | None:
    """The augmented copies in ``path`` if complete and sound; None (warning if damaged) otherwise."""
    if not path.exists():
        return None
    try:
        arrays = _load_arrays(path)
        if set(arrays) != {f"{u}#{k}" for u in ok_ids for k in range(copies)}:
            raise ValueError(f"{len(arrays)} copies, expected {len(ok_ids) * copies}")
    except Exception as exc:
        _damaged(path.parent, path.name, exc)
        return None
    return arrays


def _json_default(obj: Any) -> Any:
    return obj.item() if hasattr(obj, "item") else str(obj)


def _save_chunk(folder: Path, results: list[dict[str, Any]]) -> None:
    """Save finished clips (features, augmented copies, info or quarantine reason) as the next chunk file."""
    folder.mkdir(exist_ok=True)
    numbers = [int(p.stem.split("-")[1]) for p in folder.glob("chunk-*.npz") if p.stem.split("-")[1].isdigit()]
    path = folder / f"chunk-{max(numbers, default=-1) + 1:05d}.npz"
    features = {r["utt_id"]: r["features"] for r in results if "features" in r}
    augmented = {f"{r['utt_id']}#{k}": a for r in results for k, a in enumerate(r.get("augmented", []))}
    records = [{k: v for k, v in r.items() if k not in ("features", "augmented")} for r in results]
    arrays = {**_pack(features, "f_"), **_pack(augmented, "a_"),
              "records": np.array(json.dumps(records, default=_json_default))}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    _atomic_write(path, write)


def _load_chunks(folder: Path, want_base: bool, copies: int) -> list[dict[str, Any]]:
    """Results saved by an interrupted run; a damaged chunk is dropped (its clips are recomputed)."""
    results: list[dict[str, Any]] = []
    for path in sorted(folder.glob("chunk-*.npz")) if folder.is_dir() else []:
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                features, augmented = _unpack(z, "f_"), _unpack(z, "a_")
                records = json.loads(str(z["records"]))
            chunk = []
            for rec in records:
                if "error" not in rec:
                    if want_base:
                        rec["features"] = features[rec["utt_id"]]
                    rec["augmented"] = [augmented[f"{rec['utt_id']}#{k}"] for k in range(copies)]
                chunk.append(rec)
        except Exception as exc:
            _damaged(folder, path.name, exc, "its clips are computed again")
            path.unlink(missing_ok=True)
            continue
        results.extend(chunk)
    return results


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(folder, _WHAT) from None
        raise


def prepare_features(
    manifest: pd.DataFrame,
    config: Config,
    *,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
    augment: bool | None = None,
    denoiser: Denoiser | None = None,
    progress: bool = True,
) -> FeatureSet:
    """Validate, preprocess and featurise every clip of ``manifest``, using the cache.

    Parameters
    ----------
    manifest
        From :func:`serlib.data.corpora.read_corpus`.
    config
        Only ``preprocess``, ``features`` and ``wave_augment`` matter here.
    cache_dir
        Root of the cache (default :func:`default_cache_dir`).
    workers
        Processes (default: every core). ``1`` runs in this process.
    augment
        Also build the cached augmented copies (default: ``wave_augment.enabled``).
    denoiser
        Inject a denoiser object (tests use a small random Demucs); by default it
        is built from ``config.preprocess``.

    Raises
    ------
    serlib.core.files.DiskFullError
        The cache folder's disk is full (the message names the folder).
    FeatureError
        A worker process died; the clips finished so far are saved in chunks
        and the next call continues from them (so does a call after Ctrl-C or
        ``kill -9``).
    """
    start = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    augment = config.wave_augment.enabled if augment is None else augment
    copies = config.wave_augment.copies if augment else 0
    corpus = str(manifest["corpus"].iloc[0]) if len(manifest) else "empty"
    content = content_signature(manifest)
    key = _key(config, content)
    folder = Path(cache_dir or default_cache_dir()) / corpus / key
    aug_path = folder / f"augmented-{augment_key(config)}.npz"
    meta_path = folder / "meta.json"
    adopt_earlier_cache(folder, config, data_fingerprint(manifest), content)
    _make_folder(folder)
    clean_stale_temporaries(folder)

    base = _load_base(folder, key, manifest)
    ok_ids = set(base.features) if base is not None else set()
    aug_arrays: dict[str, np.ndarray] | None = {}
    if copies:
        aug_arrays = _load_augmented(aug_path, ok_ids, copies) if base is not None else None
    need_base, need_aug = base is None, aug_arrays is None
    computed = resumed = 0
    if need_base or need_aug:
        if denoiser is None:
            denoiser = make_denoiser(config.preprocess)  # fails fast here, not inside a worker
        if need_base:
            meta_path.unlink(missing_ok=True)  # a rebuild stopped halfway never loads as valid
        tasks = [(r.utt_id, r.path, need_base, copies) for r in manifest.itertuples() if need_base or r.utt_id in ok_ids]
        partial = folder / f"partial-{'base' if need_base else 'aug'}-{augment_key(config) if copies else 'none'}"
        results = {r["utt_id"]: r for r in _load_chunks(partial, need_base, copies)}
        resumed = len(results)
        pending: list[dict[str, Any]] = []
        last_save = time.monotonic()
        try:
            for res in _run_tasks([t for t in tasks if t[0] not in results], config, workers, denoiser, progress):
                computed += 1
                results[res["utt_id"]] = res
                pending.append(res)
                if len(pending) >= CHUNK_CLIPS or time.monotonic() - last_save >= CHUNK_SECONDS:
                    _save_chunk(partial, pending)
                    pending, last_save = [], time.monotonic()
        except (KeyboardInterrupt, FeatureError):
            try:
                if pending:
                    _save_chunk(partial, pending)  # Ctrl-C keeps every finished clip
            except Exception:
                pass
            raise
        ordered = [results[t[0]] for t in tasks]
        good = [r for r in ordered if "error" not in r]
        if copies:
            aug_arrays = {f"{r['utt_id']}#{k}": arr for r in good for k, arr in enumerate(r["augmented"])}
            if need_aug:
                _save_arrays(aug_path, aug_arrays)
        if need_base:
            features = {r["utt_id"]: r["features"] for r in good}
            info = pd.DataFrame([{"utt_id": r["utt_id"], **r["info"]} for r in good], columns=_INFO_COLUMNS)
            quarantine = pd.DataFrame([{"utt_id": r["utt_id"], "reason": r["error"], "detail": r["detail"]}
                                       for r in ordered if "error" in r], columns=_QUARANTINE_COLUMNS)
            reasons = dict(zip(quarantine["utt_id"], quarantine["reason"]))
            status = pd.DataFrame({"utt_id": manifest["utt_id"], "status": [reasons.get(u, "ok") for u in manifest["utt_id"]]})
            _save_arrays(folder / "features.npz", features)
            _write_csv(folder / "manifest.csv", manifest.assign(status=status["status"].values))
            _write_csv(folder / "preprocess.csv", info)
            _write_csv(folder / "quarantine.csv", quarantine.merge(manifest[["utt_id", "path"]], on="utt_id", how="left"))
            meta = {"key": key, "version": CACHE_VERSION, "corpus": corpus, "config": config.to_dict(),
                    "fingerprint": data_fingerprint(manifest), "content": content, "clips": len(features),
                    "created": time.time()}
            _atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
            base = _Base(status, features, info, quarantine, meta)
        shutil.rmtree(partial, ignore_errors=True)
    assert base is not None
    grouped: dict[str, list[np.ndarray]] = {}
    for name in sorted(aug_arrays or {}, key=lambda n: (n.rsplit("#", 1)[0], int(n.rsplit("#", 1)[1]))):
        grouped.setdefault(name.rsplit("#", 1)[0], []).append(aug_arrays[name])
    full = manifest.drop(columns=["status"], errors="ignore").merge(base.status, on="utt_id", how="left")
    full["status"] = full["status"].fillna("ok")
    return FeatureSet(
        manifest=full,
        features=base.features,
        augmented=grouped,
        quarantine=_with_paths(base.quarantine, manifest),  # this copy's paths, for a cache made from another
        preprocess_info=base.info,
        path=folder,
        key=key,
        fingerprint=str(base.meta["fingerprint"]),
        content=content,
        seconds=time.perf_counter() - start,
        computed=computed,
        resumed=resumed,
    )
