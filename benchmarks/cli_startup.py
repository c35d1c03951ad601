"""Start-up time of the command line, timed as a user runs it (a new process each time).

    .venv/bin/python benchmarks/cli_startup.py [--data-root ../shared/data] [--corpus ravdess] [--repeats 5]

Times, as the median wall-clock seconds of ``--repeats`` runs of the installed ``serlib``
console script (each run a fresh process, output discarded):

- ``serlib --help``;
- ``serlib models``;
- ``serlib prepare <corpus>`` on a warm cache (the default cache, ``$SERLIB_CACHE`` or
  ``~/.cache/serlib``; a first, untimed run builds it when it is missing and is reported as
  ``warm_up_seconds``);
- ``serlib predict --model <corpus> clip.wav`` when a shipped model of that name exists.

Targets on 2 cores (issue 13): ``serlib --help`` < 1 s, a warm ``serlib prepare ravdess`` < 1.5 s.
The machine's load average is recorded with the figures: other jobs on a shared machine slow
every process down. Saved with :func:`serlib.core.runs.save_benchmark` to
``results/benchmarks/cli_startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from serlib.core.runs import default_results_dir, save_benchmark

TARGETS = {"help": 1.0, "prepare_warm": 1.5}


def serlib_command() -> list[str]:
    """The console script beside this interpreter (what ``make env`` installs), else ``python -m serlib.cli``."""
    script = Path(sys.executable).parent / "serlib"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "serlib.cli"]


def run_once(argv: list[str], env: dict[str, str]) -> float:
    """Seconds one run of ``argv`` takes, end to end; raises when it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds


def timed(argv: list[str], env: dict[str, str], repeats: int, shown: str | None = None) -> dict[str, object]:
    """Median, min and max seconds of ``repeats`` runs; ``shown`` is the command as recorded (no machine paths)."""
    times = [run_once(argv, env) for _ in range(repeats)]
    return {"command": shown or " ".join(["serlib", *argv[len(serlib_command()):]]),
            "median_seconds": round(statistics.median(times), 3), "min_seconds": round(min(times), 3),
            "max_seconds": round(max(times), 3), "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=os.environ.get("SERLIB_DATA", "../shared/data"))
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="for the warm-up run that builds a missing cache")
    parser.add_argument("--out", default=str(default_results_dir() / "benchmarks" / "cli_startup.json"))
    args = parser.parse_args()
    cmd = serlib_command()
    env = {**os.environ, "SERLIB_DATA": str(Path(args.data_root).expanduser().absolute())}
    out: dict[str, object] = {"cpu_count": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()]}

    out["help"] = timed(cmd + ["--help"], env, args.repeats)
    out["models"] = timed(cmd + ["models"], env, args.repeats)

    prepare = cmd + ["prepare", args.corpus, "--quiet"]
    t0 = time.perf_counter()  # untimed warm-up: builds the cache if it is missing, else is one more warm run
    run_once(prepare + (["--workers", str(args.workers)] if args.workers else []), env)
    out["warm_up_seconds"] = round(time.perf_counter() - t0, 2)
    out["prepare_warm"] = timed(prepare, env, args.repeats)

    shipped = Path(__file__).resolve().parents[1] / "serlib" / "models" / f"{args.corpus}.json"
    from serlib.data.corpora import AUDIO_EXTENSIONS

    clips = sorted(p for p in (Path(env["SERLIB_DATA"]) / args.corpus).rglob("*")
                   if p.suffix.lower() in AUDIO_EXTENSIONS)[:1]
    if shipped.is_file() and clips:
        out["predict_one_clip"] = timed(cmd + ["predict", "--model", args.corpus, str(clips[0]), "--format", "json"],
                                        env, args.repeats, f"serlib predict --model {args.corpus} CLIP --format json")
    else:
        out["predict_one_clip"] = f"not timed: no shipped model {args.corpus!r} or no audio"

    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out["targets_seconds"] = TARGETS
    out["meets_targets"] = {k: out[k]["median_seconds"] < v for k, v in TARGETS.items()}  # type: ignore[index]
    print(json.dumps(out, indent=2))
    save_benchmark(args.out, out)


if __name__ == "__main__":
    main()
