"""Reading and writing checkpoints safely: no code from a data file ever runs.

Checkpoints are plain dicts of tensors, numbers, strings and lists. They are
read with ``torch.load(weights_only=True)``, which refuses any pickle that would
construct another object or call a function, so a crafted ``.pt`` file cannot
run code. A file that cannot be read (truncated, foreign, crafted) raises
:class:`CheckpointError` with one line naming the file.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serlib.core.files import atomic_write

if TYPE_CHECKING:  # pragma: no cover - torch is imported where a checkpoint is read or written
    import torch


class CheckpointError(ValueError):
    """A file is not a usable serlib checkpoint (missing, damaged, foreign or unsafe)."""


def unpickling_refusal(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one line, without torch's advice.

    Torch's message opens by suggesting ``weights_only=False``, which would run the
    file's code; only the cause is kept (e.g. "asks for the global posix.system").
    """
    text = str(exc).strip()
    found = re.search(r"unsupported (?:GLOBAL|global:?)\s*(?:GLOBAL\s*)?([\w.]+)", text, re.IGNORECASE)
    if found:
        return f"it asks for the global {found.group(1)}, which is not plain data (never executed)"
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return f"{type(exc).__name__}: {(lines[0] if lines else type(exc).__name__)[:200]}"


def load_checkpoint(path: str | Path, map_location: "str | torch.device" = "cpu") -> dict[str, Any]:
    """Load a serlib checkpoint with ``weights_only=True``.

    Raises
    ------
    CheckpointError
        When the file is missing, is not a regular file, is damaged or
        truncated, holds anything but plain data, or is not a dict.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found (or not a regular file): {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, unsafe global: never executed
        raise CheckpointError(f"{path} is damaged or not a serlib checkpoint ({unpickling_refusal(exc)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a serlib checkpoint (holds a {type(state).__name__}, not a dict)")
    return state


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` atomically (temporary file, then rename): a kill never leaves half a checkpoint.

    The checkpoint is serialised in memory first, so a full disk is an
    :class:`OSError` naming the run folder (:class:`serlib.core.files.DiskFullError`),
    not torch's own message from half-way through a zip file.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()), "the run folder")


__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "unpickling_refusal"]
