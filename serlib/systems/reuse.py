"""When a run folder may be reused: only for exactly the run that was asked for.

A run folder is identified by its path (corpus / protocol / model / fold / seed)
and by its *request*: the resolved config and the data fingerprint it was
trained on. The request is written to ``request.json`` before any training, so
finished and interrupted runs both carry it (folders from before it existed are
read from ``config.yaml`` and ``provenance.json``).

:func:`reusable_run` is asked before a run starts:

* no run there: ``None`` (train it);
* a finished run of the same request: its ``metrics.json`` (reuse it);
* an interrupted run of the same request: ``None`` (training resumes from ``last.pt``);
* a run of another request (or of an older version of the system's code,
  :attr:`serlib.systems.base.System.version`): :class:`StaleRunError`, one line
  naming the keys that differ and the flag that retrains. Old numbers are never returned silently, and
  an old schedule is never resumed under a new one.

Settings that cannot change a result's meaning (threads, device, keeping old
checkpoints, the experiment's display name) are not compared.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from serlib.core.runs import read_json, write_json

REQUEST_FILE = "request.json"
IGNORED_KEYS = frozenset({"name", "train.num_threads", "train.device", "train.keep_checkpoints", "data.manifest"})
"""Flattened config keys that do not change what a run computes (a manifest's location does not: its data
fingerprint and content say what it holds)."""

RETRAIN_HINT = "rerun with --retrain (make: RETRAIN=1) to replace it"


class StaleRunError(RuntimeError):
    """A run folder holds a run of another config or other data than the one requested."""


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def make_request(config_dict: dict[str, Any], data_fingerprint: str, *, fold: int,
                 sections: Iterable[str] | None = None, version: int = 1,
                 data_content: str | None = None) -> dict[str, Any]:
    """The identity of one run: its 1-based fold, data fingerprint and content, and the config keys that matter.

    ``data_fingerprint`` (clip ids, labels, speakers, file sizes) names the copy;
    ``data_content`` (the sha256 of every file's bytes, :func:`serlib.features.frames.content_signature`)
    catches a clip whose bytes changed but not its size. Folders made before the
    content was recorded have none, and are compared on the fingerprint alone.

    ``sections`` limits the compared config to the sections a model reads (a
    baseline ignores ``train`` and ``model``); ``None`` compares all of them.
    ``version`` is the system's :attr:`serlib.systems.base.System.version`: a
    change of the code that changes what a system computes bumps it, so its old
    run folders become stale. Version 1 is not written (folders made before
    versions existed are version 1).
    """
    config = {k: v for k, v in config_dict.items() if sections is None or k in set(sections)}
    request = {"fold": int(fold), "data_fingerprint": data_fingerprint,
               "config": {k: v for k, v in flatten(config).items() if k not in IGNORED_KEYS}}
    if version != 1:
        request["version"] = int(version)
    if data_content:
        request["data_content"] = data_content
    return request


def _normalised(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A stored config with today's defaults filled in (keys added to the schema since it was written)."""
    from serlib.config import ConfigError, config_from_dict

    try:
        return config_from_dict(config_dict).to_dict()
    except (ConfigError, TypeError, ValueError):
        return config_dict


def stored_request(folder: str | Path, sections: Iterable[str] | None = None) -> dict[str, Any] | None:
    """The request a run folder was made for, or ``None`` when the folder holds no run."""
    folder = Path(folder)
    if (folder / REQUEST_FILE).is_file():
        return read_json(folder / REQUEST_FILE)
    if not (folder / "config.yaml").is_file():
        return None
    config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    prov = read_json(folder / "provenance.json") if (folder / "provenance.json").is_file() else {}
    fold = prov.get("fold") or int(folder.parent.name.split("-")[-1])
    return make_request(_normalised(config), prov.get("data_fingerprint", "unknown"), fold=fold, sections=sections)


def differences(stored: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """``key: stored -> requested`` for every compared value that differs."""
    out = []
    for key in ("fold", "data_fingerprint"):
        if stored.get(key) != requested.get(key):
            out.append(f"{key}: {stored.get(key)} -> {requested.get(key)}")
    if "data_content" in stored and "data_content" in requested and stored["data_content"] != requested["data_content"]:
        out.append("data_content: the bytes of at least one clip changed since this run "
                   f"({str(stored['data_content'])[:12]}... -> {str(requested['data_content'])[:12]}...)")
    if stored.get("version", 1) != requested.get("version", 1):
        out.append(f"system version: {stored.get('version', 1)} -> {requested.get('version', 1)} (its code changed)")
    old, new = stored.get("config", {}), requested.get("config", {})
    defaults = _schema_defaults()
    for key in sorted(set(old) | set(new)):
        # A key added to the schema after the run was made counts as its default (what the code then did).
        before, after = old.get(key, defaults.get(key, "(absent)")), new.get(key, defaults.get(key, "(absent)"))
        if before != after:
            out.append(f"{key}: {before} -> {after}")
    return out


def _schema_defaults() -> dict[str, Any]:
    from serlib.config import Config

    return flatten(Config().to_dict())


def reusable_run(folder: str | Path, request: dict[str, Any], *, retrain: bool = False,
                 sections: Iterable[str] | None = None) -> dict[str, Any] | None:
    """The finished metrics to reuse, or ``None`` to train (fresh or resumed); see the module docstring.

    With ``retrain`` an existing folder is removed first, so the run starts over.
    """
    folder = Path(folder)
    if retrain and folder.exists():
        shutil.rmtree(folder)
    stored = stored_request(folder, sections)
    if stored is None:
        return None
    diff = differences(stored, request)
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        state = "finished" if (folder / "metrics.json").is_file() else "interrupted"
        older = "" if (folder / REQUEST_FILE).is_file() else (
            f" (an older run folder without {REQUEST_FILE}: its request was read from its config.yaml)")
        raise StaleRunError(f"{folder} holds a {state} run of another request ({shown}){older}; {RETRAIN_HINT}")
    if (folder / "metrics.json").is_file():
        return read_json(folder / "metrics.json")
    return None


class RunFolderBusy(StaleRunError):
    """Another process is training in this run folder now."""


LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold the run folder for this process: a second training of the same folder stops at once in one line.

    The lock (``flock`` on ``<folder>/.lock``) is released when the process ends,
    however it ends, so a killed run never leaves its folder locked.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(f"{folder} is being trained by another process right now: wait for it to finish "
                                "(its result is then reused), or use another --results folder") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def forget_request(folder: str | Path) -> None:
    """Remove ``request.json`` from a folder where nothing was trained, so another request may use it."""
    folder = Path(folder)
    progress = [p for p in folder.iterdir() if p.name not in (REQUEST_FILE, LOCK_FILE)] if folder.is_dir() else []
    if not progress:
        (folder / REQUEST_FILE).unlink(missing_ok=True)


def record_request(folder: str | Path, request: dict[str, Any]) -> None:
    """Write ``request.json`` into the run folder (before any training)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / REQUEST_FILE, request)


__all__ = ["StaleRunError", "IGNORED_KEYS", "make_request", "stored_request", "differences", "reusable_run",
           "record_request", "flatten", "RunFolderBusy", "run_folder_lock", "forget_request"]
