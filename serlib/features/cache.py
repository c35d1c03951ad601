"""The on-disk cache's shared pieces: where it lives and the corpus fingerprint that keys it."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def default_cache_dir() -> Path:
    """``$SERLIB_CACHE`` or ``~/.cache/serlib``."""
    return Path(os.environ.get("SERLIB_CACHE", Path.home() / ".cache" / "serlib")).expanduser()


def data_fingerprint(manifest: pd.DataFrame) -> str:
    """Content identity of a corpus copy: utterance ids, labels, speakers and file sizes.

    Independent of where the files live, so two machines with the same copy agree.
    A missing file counts as size -1 (it is quarantined later, not a crash here).
    """
    h = hashlib.sha256()
    for row in manifest.sort_values("utt_id").itertuples():
        try:
            size = os.path.getsize(row.path)
        except OSError:
            size = -1
        h.update(f"{row.utt_id}|{getattr(row, 'label', '')}|{getattr(row, 'speaker', '')}|{size}\n".encode())
    return h.hexdigest()[:16]


def save_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write one cache chunk as ``.npz`` atomically (a temporary file, then a rename): a kill leaves no half chunk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def load_chunk(path: Path, ids: Sequence[str], *, failed_key: str,
               required: Sequence[str] = ()) -> dict[str, np.ndarray] | None:
    """A finished chunk covering exactly ``ids`` (done in ``utt_ids`` or failed in ``failed_key``), else None.

    Read without pickle; a missing, truncated or stale chunk, or one without a ``required`` array, is None.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            chunk = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if any(key not in chunk for key in required):
        return None
    done = [str(u) for u in chunk.get("utt_ids", [])] + [str(u) for u in chunk.get(failed_key, [])]
    return chunk if sorted(done) == sorted(str(u) for u in ids) else None

