"""Safe file handling: what counts as readable, atomic writes, disk-full errors, stale temporaries.

Every module that reads user files or writes caches goes through these helpers,
so the same faults give the same one-line answers everywhere:

- :func:`unreadable_reason` never opens a file: a FIFO named like a clip (which
  would block a reader forever), a dangling link, a link loop or a folder is
  *unreadable, with a reason*, before anything tries to read it;
- :func:`undecodable_reason` flags paths that are not valid UTF-8 (they cannot
  travel through tables, CSV and JSON), :func:`display_path` prints them;
- :func:`atomic_write` writes to a temporary name and renames, removes the
  temporary on any failure, and turns a full disk (``ENOSPC``/``EDQUOT``) into a
  :class:`DiskFullError` naming the folder;
- :func:`clean_stale_temporaries` removes the temporaries a killed process
  (``kill -9``) left behind.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable

DISK_FULL_ERRNOS: frozenset[int] = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
"""``errno`` values that mean the disk (or the user's quota) is full."""

_TMP_SUFFIX = ".tmp"


class DiskFullError(OSError):
    """A write failed because the disk or quota is full; the message names the folder."""

    def __init__(self, folder: str | Path, what: str = "files") -> None:
        self.folder = str(folder)
        super().__init__(
            errno.ENOSPC,
            f"no space left on the device while writing {what} in {display_path(folder)}: "
            "free some space or point it at another disk",
        )

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is an ``OSError`` saying the disk or quota is full."""
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


def display_path(path: str | Path) -> str:
    """``path`` as printable text: bytes of a name that is not UTF-8 are shown as ``\\xNN``."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def unreadable_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None for a regular file.

    The file is never opened (only ``os.stat``), so a FIFO, which would block a
    reader forever, is caught here: anything that is not a regular file is
    unreadable.

    Returns
    -------
    str or None
        E.g. ``"unreadable: a FIFO (named pipe), not a regular file"``,
        ``"unreadable: dangling symbolic link (to x.wav)"``,
        ``"unreadable: symbolic link loop"``; None when ``path`` is a regular file
        (or a link to one).
    """
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "unreadable: symbolic link loop"
        if os.path.islink(path):
            try:
                target = display_path(os.readlink(path))
            except OSError:
                target = "?"
            return f"unreadable: dangling symbolic link (to {target})"
        return f"unreadable: {err.strerror or err}"
    if stat.S_ISREG(st.st_mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    kind = next((name for test, name in kinds if test(st.st_mode)), "a special file")
    return f"unreadable: {kind}, not a regular file"


def undecodable_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be carried through tables and CSV files (a name that is not UTF-8), or None."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "path is not valid UTF-8: rename the file or folder (e.g. with convmv) to use it"
    return None


def temporary_name(path: str | Path) -> Path:
    """The temporary a write of ``path`` by this process goes to: ``.<name>.<pid>.tmp`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")


def atomic_write(path: str | Path, write: Callable[[Path], None], what: str = "files") -> None:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``, so a reader never sees a half-written file.

    Parameters
    ----------
    path
        The final file.
    write
        Writes the whole content to the temporary path it is given.
    what
        What is written, for the disk-full message (``"the feature cache"``).

    Raises
    ------
    DiskFullError
        The disk or quota is full (the temporary is removed first).
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink()
        except OSError:
            pass
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(path.parent, what) from None
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the ``.<name>.<pid>.tmp`` files in ``folder`` whose writing process is gone.

    A process killed with ``kill -9`` cannot clean up after itself; the next
    run calls this. Temporaries of a process that is still running (another
    ``prepare`` writing the same cache) are left alone.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    removed: list[Path] = []
    try:
        candidates = [p for p in Path(folder).iterdir() if p.name.startswith(".") and p.name.endswith(_TMP_SUFFIX)]
    except OSError:
        return removed
    for tmp in candidates:
        pid_text = tmp.name[: -len(_TMP_SUFFIX)].rsplit(".", 1)[-1]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and _pid_alive(int(pid_text)):
            continue  # another live process is writing it
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed
