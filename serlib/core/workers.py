"""Worker processes that never outlive the process that started them.

A ``kill -9`` of ``serlib prepare`` cannot run any clean-up code, so its
feature workers have to notice on their own: each worker started by
:func:`worker_pool` asks the Linux kernel to kill it when its parent dies
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``) and, on every platform, runs a daemon
thread that exits the worker as soon as its parent process is gone.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_POLL_SECONDS = 1.0


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_POLL_SECONDS)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int | None = None) -> None:
    """Make this process exit when ``parent`` (default: the current parent) dies.

    Parameters
    ----------
    parent
        The pid the caller expects as parent (pass the starter's ``os.getpid()``
        so that a parent that died before this call is noticed too).
    """
    parent = os.getppid() if parent is None else parent
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog thread still works
            pass
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="serlib-die-with-parent").start()


def _guarded_init(parent: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent)
    # Ctrl-C reaches the whole process group: the parent handles it (and these workers die with it),
    # so a worker never prints a KeyboardInterrupt traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def is_pool_shutdown_race(args: threading.ExceptHookArgs) -> bool:
    """Whether a thread died of CPython 3.11's ``InvalidStateError`` race in a process pool's manager thread.

    After Ctrl-C cancels a pool's futures, its manager thread can still try to set a
    result on a cancelled future and dies printing a traceback; nothing is lost
    (the caller is already handling the interrupt), so it is not shown.
    """
    from concurrent.futures import InvalidStateError

    tb, files = args.exc_traceback, []
    while tb is not None:
        files.append(tb.tb_frame.f_code.co_filename.replace(os.sep, "/"))
        tb = tb.tb_next
    return (args.exc_type is not None and issubclass(args.exc_type, InvalidStateError)
            and any(f.endswith("concurrent/futures/process.py") for f in files))


def quiet_pool_shutdown_races() -> None:
    """Install (once) a ``threading.excepthook`` that drops :func:`is_pool_shutdown_race` and passes on the rest."""
    if getattr(threading.excepthook, "_serlib_quiet", False):
        return
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not is_pool_shutdown_race(args):
            previous(args)

    hook._serlib_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def worker_pool(
    workers: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
) -> ProcessPoolExecutor:
    """A ``spawn`` process pool whose workers die with this process.

    ``spawn``, not ``fork``: forking after torch has started threads can deadlock.

    Parameters
    ----------
    workers
        Number of processes.
    initializer, initargs
        Run in each worker after the die-with-parent guard is installed; workers ignore Ctrl-C
        (their parent takes it).
    """
    quiet_pool_shutdown_races()
    return ProcessPoolExecutor(
        workers,
        mp_context=mp.get_context("spawn"),
        initializer=_guarded_init,
        initargs=(os.getpid(), initializer, tuple(initargs)),
    )
