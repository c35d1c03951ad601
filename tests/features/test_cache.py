"""The feature cache recovers from damage, interruptions and a full disk.

Issue 9, items 7 (a damaged cache file is named and rebuilt), 9 (a killed
``prepare`` continues from the chunks it saved) and 10 (a full disk is one
line naming the folder; temporaries of a killed run are cleaned up).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from serlib.features import frames as F
from serlib.cli import main
from serlib.config import load_config
from serlib.data.corpora import read_corpus
from serlib.features.frames import CacheWarning, prepare_features
from serlib.core.files import DiskFullError, atomic_write, clean_stale_temporaries
from serlib.data.synthetic import write_synthetic_corpus

from conftest import fast_overrides


@pytest.fixture
def corpus(tmp_path):
    root = write_synthetic_corpus("emodb", tmp_path / "emodb", per_class=1, seconds=0.3)
    manifest = read_corpus("emodb", root).manifest.head(12).reset_index(drop=True)
    return root, manifest


@pytest.fixture
def config():
    return load_config(overrides=fast_overrides() + ["data.corpus=emodb"])


def build(manifest, config, cache, **kw):
    return prepare_features(manifest, config, cache_dir=cache, workers=1, progress=False, **kw)


def assert_same_features(a, b):
    assert set(a.features) == set(b.features)
    for u, arr in a.features.items():
        np.testing.assert_array_equal(b.features[u], arr)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ------------------------------------------------------------------ item 7: damaged cache files


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


DAMAGES = {
    "truncated": truncate,
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(os.urandom(300)),
}


@pytest.mark.parametrize("name", ["features.npz", "manifest.csv", "meta.json", "preprocess.csv", "quarantine.csv"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_cache_file_is_named_and_the_cache_rebuilt(corpus, config, tmp_path, name, damage):
    _, manifest = corpus
    first = build(manifest, config, tmp_path / "c", augment=False)
    DAMAGES[damage](first.path / name)
    with pytest.warns(CacheWarning, match=rf"{first.path}: {name} is damaged \(.+\); rebuilding it"):
        again = build(manifest, config, tmp_path / "c", augment=False)
    assert again.computed == len(manifest)
    assert_same_features(first, again)
    assert json.loads((again.path / "meta.json").read_text())["key"] == again.key
    third = build(manifest, config, tmp_path / "c", augment=False)  # and it is sound again
    assert third.computed == 0


def test_a_damaged_augmented_copies_file_is_rebuilt_alone(corpus, config, tmp_path):
    _, manifest = corpus
    first = build(manifest, config, tmp_path / "c")
    aug = next(first.path.glob("augmented-*.npz"))
    truncate(aug)
    with pytest.warns(CacheWarning, match=rf"{aug.name} is damaged"):
        again = build(manifest, config, tmp_path / "c")
    assert again.computed == len(first.features)  # the augmented copies only; the base features were sound
    assert_same_features(first, again)
    for u, copies in first.augmented.items():
        np.testing.assert_array_equal(again.augmented[u][0], copies[0])


def test_prepare_on_a_damaged_cache_warns_and_succeeds(corpus, tmp_path, capsys):
    root, _ = corpus
    args = ["prepare", "emodb", "--data-root", str(root), "--cache-dir", str(tmp_path / "c"), "--workers", "1",
            "--quiet", "--no-augment"] + [a for o in fast_overrides() for a in ("--set", o)]
    assert main(args) == 0
    features = next((tmp_path / "c").rglob("features.npz"))
    truncate(features)
    with pytest.warns(CacheWarning, match="features.npz is damaged"):
        assert main(args) == 0
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------ item 9: chunks


class Stop(BaseException):
    """Stands for a kill: nothing after it runs in the process."""


def interrupt_after(monkeypatch, n: int, exc: type[BaseException]) -> None:
    calls = {"n": 0}
    process = F._process

    def flaky(task):
        calls["n"] += 1
        if calls["n"] > n:
            raise exc()
        return process(task)

    monkeypatch.setattr(F, "_process", flaky)


def test_a_killed_prepare_keeps_finished_chunks_and_the_rerun_continues_from_them(corpus, config, tmp_path, monkeypatch):
    _, manifest = corpus
    reference = build(manifest, config, tmp_path / "ref", augment=False)
    monkeypatch.setattr(F, "CHUNK_CLIPS", 3)
    interrupt_after(monkeypatch, 7, Stop)  # killed while computing clip 8: clips 1-6 are in two chunks
    with pytest.raises(Stop):
        build(manifest, config, tmp_path / "c", augment=False)
    folder = tmp_path / "c" / "emodb" / reference.key
    assert len(list(folder.glob("partial-*/chunk-*.npz"))) == 2 and not (folder / "meta.json").exists()
    monkeypatch.undo()
    again = build(manifest, config, tmp_path / "c", augment=False)
    assert (again.resumed, again.computed) == (6, len(manifest) - 6)
    assert_same_features(reference, again)
    assert not list(folder.glob("partial-*"))  # chunks are removed once the cache is complete


def test_ctrl_c_saves_every_finished_clip(corpus, config, tmp_path, monkeypatch):
    _, manifest = corpus
    monkeypatch.setattr(F, "CHUNK_CLIPS", 100)
    interrupt_after(monkeypatch, 5, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        build(manifest, config, tmp_path / "c")
    monkeypatch.undo()
    again = build(manifest, config, tmp_path / "c")
    assert (again.resumed, again.computed) == (5, len(manifest) - 5)
    assert set(again.augmented) == set(again.features)  # augmented copies were saved with their clips


def test_a_damaged_chunk_is_named_and_its_clips_computed_again(corpus, config, tmp_path, monkeypatch):
    _, manifest = corpus
    monkeypatch.setattr(F, "CHUNK_CLIPS", 4)
    interrupt_after(monkeypatch, 9, Stop)
    with pytest.raises(Stop):
        build(manifest, config, tmp_path / "c", augment=False)
    monkeypatch.undo()
    chunks = sorted((tmp_path / "c").rglob("chunk-*.npz"))
    truncate(chunks[0])
    with pytest.warns(CacheWarning, match=r"chunk-00000.npz is damaged .*its clips are computed again"):
        again = build(manifest, config, tmp_path / "c", augment=False)
    assert (again.resumed, again.computed) == (4, len(manifest) - 4)


def test_the_cli_says_when_prepare_continues_an_interrupted_run(corpus, tmp_path, monkeypatch, capsys):
    root, _ = corpus
    args = ["prepare", "emodb", "--data-root", str(root), "--cache-dir", str(tmp_path / "c"), "--workers", "1",
            "--no-augment"] + [a for o in fast_overrides() for a in ("--set", o)]
    monkeypatch.setattr(F, "CHUNK_CLIPS", 5)
    interrupt_after(monkeypatch, 12, KeyboardInterrupt)
    assert main(args + ["--quiet"]) == 130
    assert "interrupted: re-run the same command to resume" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(args + ["--quiet"]) == 0
    assert "continued from 12 clip(s) saved by an interrupted run" in capsys.readouterr().out


def test_several_workers_are_started_so_that_they_die_with_their_parent(corpus, config, tmp_path, monkeypatch):
    _, manifest = corpus
    started = []

    class InProcessPool:  # stands for the real pool: records how it was asked for, runs in this process
        def __init__(self, workers, initializer, initargs):
            started.append(workers)
            initializer(*initargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, fn, tasks, chunksize=1):
            return map(fn, tasks)

    monkeypatch.setattr(F, "worker_pool", InProcessPool)
    fs = prepare_features(manifest.head(4), config, cache_dir=tmp_path / "c", workers=2, augment=False, progress=False)
    assert started == [2] and fs.computed == 4


# ------------------------------------------------------------------ item 10: full disk, stale temporaries


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_one_error_naming_the_cache_folder_and_leaves_no_temporary(corpus, config, tmp_path, monkeypatch):
    _, manifest = corpus
    monkeypatch.setattr(np, "savez", no_space)
    with pytest.raises(DiskFullError) as err:
        build(manifest, config, tmp_path / "c", augment=False)
    folder = tmp_path / "c" / "emodb"
    assert f"no space left on the device while writing the feature cache in {folder}" in str(err.value)
    assert not list(folder.rglob("*.tmp"))


def test_a_full_disk_during_prepare_is_one_line(corpus, tmp_path, monkeypatch, capsys):
    root, _ = corpus
    monkeypatch.setattr(np, "savez", no_space)
    code = main(["prepare", "emodb", "--data-root", str(root), "--cache-dir", str(tmp_path / "c"), "--workers", "1",
                 "--quiet", "--no-augment"] + [a for o in fast_overrides() for a in ("--set", o)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("serlib prepare: error: no space left on the device while writing the feature cache in ")
    assert err.count("\n") == 1


def test_any_other_full_disk_error_is_one_line_naming_the_folder(monkeypatch, capsys):
    import serlib.features.prepared

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/scratch/results/run/metrics.json")

    monkeypatch.setattr(serlib.features.prepared, "prepare", full)
    assert main(["prepare", "emodb"]) == 2
    assert capsys.readouterr().err == (
        "serlib prepare: error: no space left on the device while writing in /scratch/results/run: "
        "free some space or point it at another disk\n")


def test_a_failed_atomic_write_removes_its_temporary(tmp_path):
    def half_then_full(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    with pytest.raises(DiskFullError, match=str(tmp_path)):
        atomic_write(tmp_path / "x.npz", half_then_full)
    assert list(tmp_path.iterdir()) == []


def test_temporaries_of_a_killed_run_are_removed_and_those_of_a_live_one_kept(tmp_path):
    stale = tmp_path / f".features.npz.{dead_pid()}.tmp"
    live = tmp_path / f".features.npz.{os.getppid()}.tmp"
    kept = tmp_path / "features.npz"
    for p in (stale, live, kept):
        p.write_bytes(b"x")
    assert clean_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and kept.exists()


def test_the_next_prepare_cleans_up_the_temporaries_of_a_killed_one(corpus, config, tmp_path):
    _, manifest = corpus
    first = build(manifest, config, tmp_path / "c", augment=False)
    stale = first.path / f".features.npz.{dead_pid()}.tmp"
    stale.write_bytes(b"half written")
    build(manifest, config, tmp_path / "c", augment=False)
    assert not stale.exists()


def test_a_full_disk_error_without_a_file_name_names_the_folders_the_command_writes(monkeypatch, capsys, tmp_path):
    import serlib.features.prepared

    monkeypatch.setattr(serlib.features.prepared, "prepare", no_space)
    assert main(["train", "--config", "configs/emodb.yaml", "--cache-dir", str(tmp_path / "c"),
                 "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == (f"serlib train: error: no space left on the device while writing in the cache {tmp_path / 'c'} "
                   f"or the results {tmp_path / 'r'}: free some space or point it at another disk\n")
