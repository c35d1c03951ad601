"""Worker processes die with the process that started them (issue 9, item 9).

``kill -9`` of a 2-worker ``serlib prepare`` used to leave both workers
running, blocked forever. :func:`serlib.core.workers.worker_pool` (which feature
extraction uses) guards every worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PARENT = """
import multiprocessing as mp, time
from serlib.core.workers import worker_pool

pool = worker_pool(2)
for f in [pool.submit(time.sleep, 0.5) for _ in range(2)]:
    f.result()                                   # both workers are up and initialised
for _ in range(2):
    pool.submit(time.sleep, 600)                 # ... and busy for a long time
print(" ".join(str(p.pid) for p in mp.active_children()), flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as dead)."""
    if Path("/proc/self/stat").exists():
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_workers_die_when_their_parent_is_killed_with_sigkill():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    workers: list[int] = []
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(w) for w in workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(w) for w in workers), "a worker outlived its parent"
    finally:
        parent.kill()
        for w in workers:
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_worker_whose_parent_already_died_exits_at_once(monkeypatch):
    from serlib.core import workers

    exits = []
    monkeypatch.setattr(workers.os, "_exit", lambda code: exits.append(code))
    monkeypatch.setattr(workers.threading, "Thread", lambda *a, **k: type("T", (), {"start": lambda self: None})())
    workers.die_with_parent(parent=os.getppid() + 1_000_000)
    assert exits == [1]


def test_a_process_pool_shutdown_race_after_ctrl_c_is_dropped_and_other_thread_errors_still_pass(monkeypatch):
    import sys
    import threading
    from concurrent.futures import InvalidStateError

    from serlib.core import workers

    def hook_args(source: str, filename: str) -> threading.ExceptHookArgs:
        try:
            exec(compile(source, filename, "exec"), {"InvalidStateError": InvalidStateError})
        except Exception:
            return threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread()))
        raise AssertionError("the source should raise")

    race = hook_args("raise InvalidStateError('CANCELLED')", "/usr/lib/python3.11/concurrent/futures/process.py")
    real = hook_args("raise ValueError('a real error')", "mine.py")
    assert workers.is_pool_shutdown_race(race) and not workers.is_pool_shutdown_race(real)
    shown = []
    monkeypatch.setattr(threading, "excepthook", lambda args: shown.append(args.exc_type))
    workers.quiet_pool_shutdown_races()
    workers.quiet_pool_shutdown_races()  # installed once
    threading.excepthook(race)
    threading.excepthook(real)
    assert shown == [ValueError]
