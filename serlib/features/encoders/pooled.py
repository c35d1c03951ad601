"""Pooled frozen-encoder features per clip (Whisper-base), cached on disk.

For each clip of a manifest, :func:`compute_embeddings` reads the audio with
:func:`serlib.data.audio.load_audio` (16 kHz mono, validated; **no VAD, denoising or
level normalisation**), encodes it with a Whisper-base backend
(:mod:`serlib.features.encoders`) in one input-length mode (``own``, ``pad10``,
``pad30``), keeps the encoder frames that hold audio and pools each hidden
state to mean + std (1024 values). The torch backend gives 7 hidden states
(front end + 6 blocks), CTranslate2 the last one only.

The cache lives beside the frame-feature cache (:func:`serlib.features.cache.default_cache_dir`)::

    <cache>/<corpus>/whisper/<key>/
        chunk-00000.npz ...   utt_ids, features (n, layers, 1024), seconds, failed clips
        meta.json             written last: the set is complete

``key`` hashes the corpus content fingerprint (:func:`manifest_fingerprint`, equal to
:func:`serlib.features.cache.data_fingerprint`: utterance ids, labels, speakers, file sizes), the mode, the backend (and CTranslate2
compute type) and the sha256 of the encoder's ``model.bin``. Clips are processed in
chunks in ``utt_id`` order, each chunk written atomically, so an interrupted run
continues from the last finished chunk. Clips that cannot be read or encoded are
quarantined with a reason and never crash the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serlib.data.audio import MAX_FILE_SECONDS, AudioError, load_audio
from serlib.features.cache import load_chunk, save_chunk
from serlib.features.encoders import (
    MODES,
    POOLED_DIM,
    WhisperBackend,
    locate_whisper,
    make_encoder,
)

CACHE_VERSION = 1
PREPROCESSING = "load_audio 16 kHz mono; no VAD, no denoising, no level normalisation"
LAYERS = {"torch": 7, "ct2": 1}


@dataclass
class EmbeddingSet:
    """Pooled encoder features of a manifest, aligned with its rows."""

    manifest: pd.DataFrame  # the input rows in their order, plus ``status`` ("ok" or a quarantine reason)
    features: np.ndarray  # (n_clips, n_layers, 1024) float32; NaN rows for quarantined clips
    quarantine: pd.DataFrame  # utt_id, path, reason, detail
    encoder: dict[str, Any]  # backend, sha256, compute_type, mode, n_layers, preprocessing
    path: Path | None = None
    key: str = ""
    seconds: float = 0.0  # wall time of this call
    computed: int = 0  # clips encoded by this call (0: all from the cache)
    audio_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per clip, NaN when quarantined

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the usable rows."""
        return (self.manifest["status"] == "ok").to_numpy()

    @property
    def n_layers(self) -> int:
        return int(self.features.shape[1])

    def usable(self, layer: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """Usable manifest rows and their features (all layers, or one ``layer``: ``(n, 1024)``)."""
        feats = self.features[self.ok]
        return self.manifest[self.ok].reset_index(drop=True), feats if layer is None else feats[:, layer]


# ----------------------------------------------------------------------------- keys and io


def _check_manifest(manifest: pd.DataFrame) -> None:
    missing = {"utt_id", "path"} - set(manifest.columns)
    if missing:
        raise ValueError(f"the manifest lacks column(s) {', '.join(sorted(missing))}")
    dup = manifest["utt_id"][manifest["utt_id"].duplicated()]
    if len(dup):
        raise ValueError(f"the manifest has duplicate utt_id {dup.iloc[0]!r}")


def manifest_fingerprint(manifest: pd.DataFrame) -> str:
    """Content identity of the clips: :func:`serlib.features.cache.data_fingerprint` (so provenance can match the caches)."""
    from serlib.features.cache import data_fingerprint

    return data_fingerprint(manifest)


def encoder_identity(backend: str, sha256: str, compute_type: str | None, mode: str) -> dict[str, Any]:
    """What decides the numbers in an embedding cache (besides the clips)."""
    return {"backend": backend, "sha256": sha256, "compute_type": compute_type if backend == "ct2" else None,
            "mode": mode, "n_layers": LAYERS[backend], "preprocessing": PREPROCESSING, "version": CACHE_VERSION}


def embedding_key(manifest: pd.DataFrame, identity: dict[str, Any]) -> str:
    """Cache key of a manifest's embeddings for an :func:`encoder_identity`."""
    blob = json.dumps([manifest_fingerprint(manifest), identity], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def encode_rows(rows: pd.DataFrame, encode, bar) -> dict[str, list]:
    """Run ``encode(wave) -> array`` on each clip of ``rows``; unreadable or failing clips are recorded, not raised.

    Returns lists ``ids``, ``outputs``, ``seconds`` (of the encoded clips) and ``failed`` (utt_id, reason, detail).
    """
    from threadpoolctl import threadpool_limits

    out: dict[str, list] = {"ids": [], "outputs": [], "seconds": [], "failed": []}
    # numpy's BLAS threads, idle-spinning beside torch's, made the small log-mel matmul 20 times
    # slower than on one thread and the whole encoding about 15 % slower
    with threadpool_limits(limits=1, user_api="blas"):
        _encode_each(rows, encode, bar, out)
    return out


def _encode_each(rows: pd.DataFrame, encode, bar, out: dict[str, list]) -> None:
    for r in rows.itertuples():
        try:
            wave = load_audio(r.path, 16000, max_seconds=MAX_FILE_SECONDS)
            result = encode(wave)
            if not np.all(np.isfinite(result)):
                raise FloatingPointError("non-finite encoder output")
        except AudioError as exc:
            out["failed"].append((r.utt_id, exc.reason, exc.detail))
        except Exception as exc:  # noqa: BLE001 - one bad clip must not stop a corpus
            out["failed"].append((r.utt_id, "encoder-error", f"{type(exc).__name__}: {exc}"))
        else:
            out["ids"].append(r.utt_id)
            out["outputs"].append(result)
            out["seconds"].append(wave.shape[0] / 16000)
        if bar is not None:
            bar.update(1)


def chunk_arrays(encoded: dict[str, list], **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of one cache chunk: the encoded ids, seconds and failures, plus ``arrays``."""
    failed = encoded["failed"]
    return {
        "utt_ids": np.array(encoded["ids"], dtype=str),
        **arrays,
        "seconds": np.array(encoded["seconds"], dtype=np.float64),
        "failed_ids": np.array([f[0] for f in failed], dtype=str),
        "failed_reasons": np.array([f[1] for f in failed], dtype=str),
        "failed_details": np.array([f[2] for f in failed], dtype=str),
    }


def _encode_chunk(rows: pd.DataFrame, encoder: WhisperBackend, mode: str, bar) -> dict[str, np.ndarray]:
    encoded = encode_rows(rows, lambda wave: encoder.pooled(wave, mode), bar)
    feats = encoded["outputs"]
    return chunk_arrays(encoded, features=np.stack(feats).astype(np.float32) if feats
                        else np.zeros((0, encoder.n_layers, POOLED_DIM), np.float32))


def check_request(manifest: pd.DataFrame, backend: str, mode: str, encoder: WhisperBackend | None,
                  chunk_size: int) -> None:
    """Refuse an unknown mode or backend, a mismatched ``encoder``, a bad ``chunk_size`` or manifest (ValueError)."""
    if mode not in MODES:
        raise ValueError(f"unknown input mode {mode!r}; expected one of {', '.join(MODES)}")
    if backend not in LAYERS:
        raise ValueError(f"unknown encoder backend {backend!r}; expected one of {', '.join(LAYERS)}")
    if encoder is not None and encoder.name != backend:
        raise ValueError(f"encoder is a {encoder.name!r} backend but backend={backend!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    _check_manifest(manifest)


def cache_root(cache_dir: str | Path | None) -> Path:
    """``cache_dir`` or the feature cache's root (:func:`serlib.features.cache.default_cache_dir`)."""
    from serlib.features.cache import default_cache_dir

    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def cache_folder(manifest: pd.DataFrame, root: Path, kind: str, identity: dict[str, Any]) -> tuple[str, str, Path]:
    """Key, corpus name and the (created) folder ``<root>/<corpus>/<kind>/<key>`` of a manifest's encoder cache."""
    key = embedding_key(manifest, identity)
    corpus = str(manifest["corpus"].iloc[0]) if "corpus" in manifest.columns and len(manifest) else "manifest"
    folder = root / corpus / kind / key
    folder.mkdir(parents=True, exist_ok=True)
    return key, corpus, folder


def fill_chunks(manifest: pd.DataFrame, folder: Path, chunk_size: int, encode_chunk, *,
                progress_desc: str | None = None) -> tuple[list[dict[str, np.ndarray]], int]:
    """Every chunk of ``manifest`` (in ``utt_id`` order): finished ones read back, the rest encoded and saved.

    ``encode_chunk(rows, bar) -> arrays`` is called only for chunks missing from
    ``folder``; each is written atomically, so an interrupted call resumes
    there. Returns the chunks and the number of clips encoded by this call.
    """
    ordered = manifest.sort_values("utt_id", kind="stable").reset_index(drop=True)
    chunks: list[dict[str, np.ndarray]] = []
    todo = []
    for i, lo in enumerate(range(0, len(ordered), chunk_size)):
        rows = ordered.iloc[lo : lo + chunk_size]
        path = folder / f"chunk-{i:05d}.npz"
        got = load_chunk(path, rows["utt_id"].astype(str).tolist(), failed_key="failed_ids") if path.is_file() else None
        chunks.append(got)  # type: ignore[arg-type]
        if got is None:
            todo.append((i, rows, path))
    bar = None
    if todo and progress_desc:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(r) for _, r, _ in todo), desc=progress_desc, unit="clip")
    computed = 0
    for i, rows, path in todo:
        chunks[i] = encode_chunk(rows, bar)
        save_chunk(path, chunks[i])
        computed += len(rows)
    if bar is not None:
        bar.close()
    return chunks, computed


def chunk_status(manifest: pd.DataFrame, chunks: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, pd.DataFrame]:
    """Per manifest row ``"ok"`` or its quarantine reason, and the quarantine table."""
    index = {u: k for k, u in enumerate(manifest["utt_id"].astype(str))}
    status = np.array(["ok"] * len(manifest), dtype=object)
    bad = []
    for chunk in chunks:
        for u, reason, detail in zip(chunk["failed_ids"], chunk["failed_reasons"], chunk["failed_details"]):
            status[index[str(u)]] = str(reason)
            bad.append({"utt_id": str(u), "path": manifest["path"].iloc[index[str(u)]], "reason": str(reason),
                        "detail": str(detail)})
    return status, pd.DataFrame(bad, columns=["utt_id", "path", "reason", "detail"])


def write_meta(folder: Path, computed: int, **meta: Any) -> None:
    """Write ``meta.json`` (atomically) when this call encoded something or it is missing."""
    meta_path = folder / "meta.json"
    if computed or not meta_path.is_file():
        tmp = meta_path.with_name(f".meta.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**meta, "created": time.time()}, indent=2))
        os.replace(tmp, meta_path)


# ----------------------------------------------------------------------------- public entry point


def compute_embeddings(
    manifest: pd.DataFrame,
    *,
    backend: str = "torch",
    mode: str = "own",
    compute_type: str = "int8",
    cache_dir: str | Path | None = None,
    encoder: WhisperBackend | None = None,
    chunk_size: int = 200,
    threads: int | None = None,
    progress: bool = False,
) -> EmbeddingSet:
    """Pooled Whisper-base features of every clip of ``manifest``, from the cache when present.

    Parameters
    ----------
    manifest
        Rows with ``utt_id`` and ``path`` (as from :func:`serlib.data.corpora.read_corpus`;
        ``corpus``, ``label`` and ``speaker`` are used for the cache folder and key when present).
    backend
        ``torch`` (7 hidden states) or ``ct2`` (last layer).
    mode
        Input length, one of :data:`serlib.features.encoders.MODES`: ``own``, ``pad10``, ``pad30``.
    compute_type
        ``ct2`` only: ``int8`` (default) or ``float32``.
    cache_dir
        Cache root (default :func:`serlib.features.cache.default_cache_dir`).
    encoder
        An already built backend to use (its ``name`` must equal ``backend``);
        by default one is built only if something must be computed.
    chunk_size
        Clips per cache chunk (the unit of resumption).
    threads
        CPU threads for the encoder (see :func:`serlib.features.encoders.make_encoder`).
    progress
        Show a progress bar.

    Returns
    -------
    EmbeddingSet
        ``features`` ``(len(manifest), n_layers, 1024)`` aligned with the manifest rows.

    Raises
    ------
    ValueError
        Unknown mode or backend, or a manifest without ``utt_id``/``path`` or with duplicate ids.
    serlib.features.encoders.WhisperUnavailable
        The encoder weights are missing or do not verify.
    """
    start = time.perf_counter()
    check_request(manifest, backend, mode, encoder, chunk_size)
    root = cache_root(cache_dir)
    sha = encoder.sha256 if encoder is not None else locate_whisper(root).sha256
    ctype = getattr(encoder, "compute_type", compute_type) if backend == "ct2" else None
    identity = encoder_identity(backend, sha, ctype, mode)
    key, corpus, folder = cache_folder(manifest, root, "whisper", identity)

    def encode_chunk(rows: pd.DataFrame, bar) -> dict[str, np.ndarray]:
        nonlocal encoder
        if encoder is None:
            encoder = make_encoder(backend, threads=threads, compute_type=compute_type, cache_dir=root)
        return _encode_chunk(rows, encoder, mode, bar)

    chunks, computed = fill_chunks(manifest, folder, chunk_size, encode_chunk,
                                   progress_desc=f"whisper {backend} {mode}" if progress else None)
    index = {u: k for k, u in enumerate(manifest["utt_id"].astype(str))}
    features = np.full((len(manifest), LAYERS[backend], POOLED_DIM), np.nan, dtype=np.float32)
    seconds = np.full(len(manifest), np.nan)
    for chunk in chunks:
        rows_at = [index[str(u)] for u in chunk["utt_ids"]]
        features[rows_at] = chunk["features"]
        seconds[rows_at] = chunk["seconds"]
    status, quarantine = chunk_status(manifest, chunks)
    write_meta(folder, computed, key=key, corpus=corpus, encoder=identity, fingerprint=manifest_fingerprint(manifest),
               clips=int(len(manifest)), usable=int((status == "ok").sum()), quarantined=len(quarantine),
               audio_seconds=float(np.nansum(seconds)))
    return EmbeddingSet(
        manifest=manifest.assign(status=status),
        features=features,
        quarantine=quarantine,
        encoder=identity,
        path=folder,
        key=key,
        seconds=time.perf_counter() - start,
        computed=computed,
        audio_seconds=seconds,
    )
