"""The command line starts fast: ``serlib --help`` and a warm ``serlib prepare`` load no heavy library.

Targets (issue 13): ``serlib --help`` under 1 s and a warm ``serlib prepare ravdess``
under 1.5 s end to end on two cores. Most of the old 8 s was importing
scikit-learn, SciPy, matplotlib and torch, which neither command uses; these
tests pin that down by the modules a fresh process has loaded, and check the
wall time as a user sees it. ``benchmarks/cli_startup.py`` records the figures
on the real RAVDESS copy.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import fast_overrides

HEAVY = ("torch", "torchaudio", "sklearn", "scipy", "matplotlib", "librosa", "seaborn")
SERLIB = Path(sys.executable).parent / "serlib"


def loaded_after(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run ``serlib.cli.main(argv)`` in a fresh interpreter; its exit status and the heavy modules it loaded."""
    code = ("import json, sys\nfrom serlib.cli import main\n"
            f"try:\n    status = main({argv!r})\nexcept SystemExit as e:\n    status = e.code\n"
            f"sys.stderr.write(json.dumps([status, sorted(m for m in {HEAVY!r} if m in sys.modules)]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    status, heavy = json.loads(done.stderr.strip().splitlines()[-1])
    return status, heavy


def median_seconds(cmd: list[str], repeats: int = 3, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env, timeout=120)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_help_loads_no_heavy_library():
    status, heavy = loaded_after(["--help"])
    assert status == 0 and heavy == []
    status, heavy = loaded_after(["predict", "--help"])
    assert status == 0 and heavy == []


def test_help_answers_within_a_second():
    assert median_seconds([str(SERLIB), "--help"]) < 1.0


def test_models_loads_no_heavy_library():
    status, heavy = loaded_after(["models"])
    assert status == 0 and heavy == []


@pytest.fixture(scope="module")
def warm_cache(synthetic_ravdess, tmp_path_factory) -> tuple[list[str], dict[str, str]]:
    """A ``serlib prepare`` command line whose cache has been built once."""
    cache = tmp_path_factory.mktemp("speedcache")
    sets = [a for o in fast_overrides() for a in ("--set", o)]
    argv = ["prepare", "ravdess", "--data-root", str(synthetic_ravdess), "--cache-dir", str(cache), "--workers", "1",
            "--quiet", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([str(SERLIB), *argv], capture_output=True, check=True, env=env, timeout=300)  # cold: builds it
    return argv, env


def test_a_warm_prepare_loads_neither_torch_nor_scikit_learn_nor_matplotlib(warm_cache):
    argv, env = warm_cache
    status, heavy = loaded_after(argv, env)
    assert status == 0 and heavy == []


def test_a_warm_prepare_takes_under_one_and_a_half_seconds_end_to_end(warm_cache):
    argv, env = warm_cache
    assert median_seconds([str(SERLIB), *argv], env=env) < 1.5


def test_errors_of_modules_loaded_late_are_still_one_line(tmp_path):
    """The one-line error handling finds project errors without importing their modules up front."""
    (tmp_path / "ravdess").mkdir()
    done = subprocess.run([str(SERLIB), "prepare", "ravdess", "--data-root", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("serlib prepare: error: ") and done.stderr.count("\n") == 1
