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

``key`` hashes the preprocessing and feature sections of the config and the file
list with sizes and modification times, so changing either recomputes; every
file is written to a temporary name and renamed, so a killed run never leaves a
cache that loads as valid.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import torch
import torchaudio

from .audio import AudioError, load_audio
from .augment import augment_wave, clip_rng
from .config import Config, FeatureConfig, PreprocessConfig, WaveAugmentConfig
from .preprocess import Denoiser, make_denoiser, preprocess_wave

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """``$SERLIB_CACHE`` or ``~/.cache/serlib``."""
    return Path(os.environ.get("SERLIB_CACHE", Path.home() / ".cache" / "serlib")).expanduser()


# ----------------------------------------------------------------------------- extraction


class FeatureExtractor:
    """Waveform (16 kHz float) -> ``(frames, dims)`` float32 features with torchaudio."""

    def __init__(self, config: FeatureConfig, sample_rate: int = 16000) -> None:
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

    @property
    def dim(self) -> int:
        base = self.config.n_mfcc if self.config.kind == "mfcc" else self.config.n_mels
        return base * (3 if self.config.deltas else 1)

    @torch.no_grad()
    def __call__(self, wave: np.ndarray) -> np.ndarray:
        spec = self.transform(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)))
        if self.config.deltas:
            d1 = torchaudio.functional.compute_deltas(spec)
            spec = torch.cat([spec, d1, torchaudio.functional.compute_deltas(d1)], dim=0)
        return spec.T.contiguous().numpy().astype(np.float32)


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


# ----------------------------------------------------------------------------- keys


def data_fingerprint(manifest: pd.DataFrame) -> str:
    """Content identity of a corpus copy: utterance ids, labels, speakers and file sizes.

    Independent of where the files live, so two machines with the same copy agree.
    """
    h = hashlib.sha256()
    for row in manifest.sort_values("utt_id").itertuples():
        h.update(f"{row.utt_id}|{row.label}|{row.speaker}|{os.path.getsize(row.path)}\n".encode())
    return h.hexdigest()[:16]


def _files_signature(manifest: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for row in manifest.sort_values("utt_id").itertuples():
        st = os.stat(row.path)
        h.update(f"{row.utt_id}|{row.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:16]


def cache_key(manifest: pd.DataFrame, config: Config) -> str:
    """Key of the base feature cache for this file list and preprocessing/feature config."""
    sections = config.to_dict()
    return _hash([CACHE_VERSION, sections["preprocess"], sections["features"], _files_signature(manifest)])


def augment_key(config: Config) -> str:
    """Key of the augmented-copies file inside a base cache folder."""
    return _hash(config.to_dict()["wave_augment"])


# ----------------------------------------------------------------------------- atomic io


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    ids = list(arrays)
    lengths = np.array([arrays[i].shape[0] for i in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    dim = next(iter(arrays.values())).shape[1] if arrays else 0
    data = np.concatenate([arrays[i] for i in ids]) if ids else np.zeros((0, dim), np.float32)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, utt_ids=np.array(ids, dtype=str), offsets=offsets, data=data)

    _atomic_write(path, write)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        ids, offsets, data = z["utt_ids"], z["offsets"], z["data"]
    return {str(u): data[offsets[i] : offsets[i + 1]] for i, u in enumerate(ids)}


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    _atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


# ----------------------------------------------------------------------------- workers

_WORKER: dict[str, Any] = {}


def _init_worker(config: dict[str, Any], denoiser: Denoiser | None, threads: int) -> None:
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
    utt_id, path, want_base, copies = task
    pre: PreprocessConfig = _WORKER["pre"]
    try:
        wave = load_audio(path, pre.sample_rate)
    except AudioError as err:
        return {"utt_id": utt_id, "error": err.reason, "detail": err.detail}
    wave, info = preprocess_wave(wave, pre, _WORKER["denoiser"])
    extractor: FeatureExtractor = _WORKER["extractor"]
    out: dict[str, Any] = {"utt_id": utt_id, "info": info.__dict__}
    if want_base:
        out["features"] = extractor(wave)
    out["augmented"] = [
        extractor(augment_wave(wave, pre.sample_rate, _WORKER["aug"], clip_rng(utt_id, k)))
        for k in range(copies)
    ]
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
        _init_worker(config.to_dict(), denoiser, torch.get_num_threads())
        for task in tasks:
            yield _process(task)
            bar.update()
    else:
        ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(config.to_dict(), denoiser, 1)) as pool:
            for result in pool.map(_process, tasks, chunksize=max(1, min(32, len(tasks) // (8 * workers)))):
                yield result
                bar.update()
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
    seconds: float = 0.0
    computed: int = 0  # clips (re)computed by this call; 0 when everything came from the cache

    @property
    def usable(self) -> pd.DataFrame:
        """Manifest rows that passed validation."""
        return self.manifest[self.manifest["status"] == "ok"].reset_index(drop=True)

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
            "cache": str(self.path),
            "fingerprint": self.fingerprint,
        }


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
        From :func:`serlib.corpora.read_corpus`.
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
    """
    start = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    augment = config.wave_augment.enabled if augment is None else augment
    copies = config.wave_augment.copies if augment else 0
    corpus = str(manifest["corpus"].iloc[0]) if len(manifest) else "empty"
    key = cache_key(manifest, config)
    folder = Path(cache_dir or default_cache_dir()) / corpus / key
    aug_path = folder / f"augmented-{augment_key(config)}.npz"
    meta_path = folder / "meta.json"

    have_base = meta_path.is_file() and json.loads(meta_path.read_text()).get("key") == key
    have_aug = copies == 0 or aug_path.is_file()
    computed = 0
    if have_base:
        status = pd.read_csv(folder / "manifest.csv", dtype={"utt_id": str})[["utt_id", "status"]]
        features = _load_arrays(folder / "features.npz")
        info = pd.read_csv(folder / "preprocess.csv", dtype={"utt_id": str})
        quarantine = pd.read_csv(folder / "quarantine.csv", dtype={"utt_id": str})
    if not (have_base and have_aug):
        if denoiser is None:
            denoiser = make_denoiser(config.preprocess)  # fails fast here, not inside a worker
        folder.mkdir(parents=True, exist_ok=True)
        ok_ids = set(features) if have_base else None
        tasks = [
            (r.utt_id, r.path, not have_base, copies)
            for r in manifest.itertuples()
            if ok_ids is None or r.utt_id in ok_ids
        ]
        new_features: dict[str, np.ndarray] = {}
        augmented: dict[str, list[np.ndarray]] = {}
        infos, bad = [], []
        for res in _run_tasks(tasks, config, workers, denoiser, progress):
            computed += 1
            if "error" in res:
                bad.append({"utt_id": res["utt_id"], "reason": res["error"], "detail": res["detail"]})
                continue
            infos.append({"utt_id": res["utt_id"], **res["info"]})
            if "features" in res:
                new_features[res["utt_id"]] = res["features"]
            for k, arr in enumerate(res["augmented"]):
                augmented[f"{res['utt_id']}#{k}"] = arr
        if copies:
            _save_arrays(aug_path, augmented)
        if not have_base:
            features = new_features
            info = pd.DataFrame(infos, columns=["utt_id", "input_seconds", "output_seconds", "vad_found_speech", "denoise"])
            quarantine = pd.DataFrame(bad, columns=["utt_id", "reason", "detail"])
            reasons = dict(zip(quarantine["utt_id"], quarantine["reason"]))
            status = pd.DataFrame({"utt_id": manifest["utt_id"], "status": [reasons.get(u, "ok") for u in manifest["utt_id"]]})
            _save_arrays(folder / "features.npz", features)
            _write_csv(folder / "manifest.csv", manifest.assign(status=status["status"].values))
            _write_csv(folder / "preprocess.csv", info)
            _write_csv(folder / "quarantine.csv", quarantine.merge(manifest[["utt_id", "path"]], on="utt_id", how="left"))
            meta = {"key": key, "version": CACHE_VERSION, "corpus": corpus, "config": config.to_dict(),
                    "fingerprint": data_fingerprint(manifest), "clips": len(features), "created": time.time()}
            _atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
    aug_arrays = _load_arrays(aug_path) if copies else {}
    grouped: dict[str, list[np.ndarray]] = {}
    for name in sorted(aug_arrays, key=lambda n: (n.rsplit("#", 1)[0], int(n.rsplit("#", 1)[1]))):
        grouped.setdefault(name.rsplit("#", 1)[0], []).append(aug_arrays[name])
    full = manifest.drop(columns=["status"], errors="ignore").merge(status, on="utt_id", how="left")
    full["status"] = full["status"].fillna("ok")
    return FeatureSet(
        manifest=full,
        features=features,
        augmented=grouped,
        quarantine=quarantine,
        preprocess_info=info,
        path=folder,
        key=key,
        fingerprint=json.loads(meta_path.read_text())["fingerprint"],
        seconds=time.perf_counter() - start,
        computed=computed,
    )
