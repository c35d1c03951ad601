"""Results never lie: a run folder is reused or resumed only for exactly the run that was asked for.

Also: run folders hold no absolute paths (a copied folder is independent of its
original), and no checkpoint can run code when it is loaded.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from serlib.core.checkpoints import CheckpointError, load_checkpoint
from serlib.cli import main
from serlib.config import load_config
from serlib.features.prepared import Prepared, split_for
from serlib.experiments.protocol import run_protocol
from serlib.systems.tier1.predictor import Predictor
from serlib.systems.reuse import StaleRunError, make_request, reusable_run
from serlib.systems.reuse import differences as reusable_run_differences
from serlib.systems.tier1.trainer import fit

from conftest import fast_overrides


def config_with(*extra: str):
    return load_config(overrides=fast_overrides() + ["data.corpus=ravdess", "data.protocol=speaker-split", *extra])


@pytest.fixture(scope="module")
def results_of_one_epoch(prepared_ravdess, tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("results")
    run_protocol(config_with("train.epochs=1"), prepared_ravdess, folds=[0], results=results, progress=False)
    return results


def tier1_folder(results: Path) -> Path:
    return results / "ravdess" / "speaker-split" / "tier1" / "fold-1" / "seed-0"


def test_the_same_request_reuses_the_finished_run(prepared_ravdess, results_of_one_epoch):
    table = run_protocol(config_with("train.epochs=1"), prepared_ravdess, folds=[0], results=results_of_one_epoch,
                         progress=False)
    assert set(table["status"]) == {"cached"}


def test_a_changed_config_stops_before_any_work_naming_the_key_and_the_flag(prepared_ravdess, results_of_one_epoch):
    before = {p: p.stat().st_mtime_ns for p in results_of_one_epoch.rglob("*") if p.is_file()}
    with pytest.raises(StaleRunError) as err:
        run_protocol(config_with("train.epochs=3"), prepared_ravdess, folds=[0], results=results_of_one_epoch,
                     progress=False)
    message = str(err.value)
    assert "train.epochs: 1 -> 3" in message and "--retrain" in message and "\n" not in message
    assert {p: p.stat().st_mtime_ns for p in results_of_one_epoch.rglob("*") if p.is_file()} == before


def test_settings_that_cannot_change_a_result_do_not_make_a_run_stale(prepared_ravdess, results_of_one_epoch):
    table = run_protocol(config_with("train.epochs=1", "train.num_threads=2", "train.keep_checkpoints=true"),
                         prepared_ravdess, folds=[0], results=results_of_one_epoch, progress=False)
    assert set(table["status"]) == {"cached"}


def test_the_baseline_is_not_stale_when_only_the_network_changes(prepared_ravdess, results_of_one_epoch):
    table = run_protocol(config_with("train.epochs=3"), prepared_ravdess, folds=[0], models=("baseline-svm",),
                         results=results_of_one_epoch, progress=False)
    assert set(table["status"]) == {"cached"}


def test_other_data_makes_a_run_stale(prepared_ravdess, results_of_one_epoch):
    other = Prepared(prepared_ravdess.scan, prepared_ravdess.features)
    other.features = type(prepared_ravdess.features)(**{**prepared_ravdess.features.__dict__, "fingerprint": "0" * 16})
    with pytest.raises(StaleRunError, match="data_fingerprint: .* -> 0000000000000000"):
        run_protocol(config_with("train.epochs=1"), other, folds=[0], results=results_of_one_epoch, progress=False)


def test_retrain_replaces_the_stale_run(prepared_ravdess, tmp_path, results_of_one_epoch):
    results = tmp_path / "results"
    shutil.copytree(results_of_one_epoch, results)
    table = run_protocol(config_with("train.epochs=2"), prepared_ravdess, folds=[0], models=("tier1",),
                         results=results, retrain=True, progress=False)
    assert table["status"].str.startswith("ran").all()
    assert json.loads((tier1_folder(results) / "metrics.json").read_text())["epochs_run"] == 2


def test_run_folders_from_before_request_json_are_judged_from_config_and_provenance(prepared_ravdess, tmp_path,
                                                                                   results_of_one_epoch):
    results = tmp_path / "results"
    shutil.copytree(results_of_one_epoch, results)
    for request in results.rglob("request.json"):
        request.unlink()
    cached = run_protocol(config_with("train.epochs=1"), prepared_ravdess, folds=[0], results=results, progress=False)
    assert set(cached["status"]) == {"cached"}
    with pytest.raises(StaleRunError, match="model.lstm_hidden: 16 -> 8.*older run folder without request.json"):
        run_protocol(config_with("train.epochs=1", "model.lstm_hidden=8"), prepared_ravdess, folds=[0],
                     results=results, progress=False)


def test_an_interrupted_run_resumes_only_under_its_own_config(prepared_ravdess, fast_config, tmp_path):
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    fit(prepared_ravdess.features, assignment, fast_config, tmp_path, progress=False, stop_after_epochs=1)
    bigger = config_with("model.lstm_hidden=8")
    with pytest.raises(StaleRunError, match="model.lstm_hidden: 16 -> 8.*--retrain"):
        fit(prepared_ravdess.features, assignment, bigger, tmp_path, resume=True, progress=False)
    longer = config_with("train.epochs=5")
    with pytest.raises(StaleRunError, match="train.epochs: 3 -> 5"):
        fit(prepared_ravdess.features, assignment, longer, tmp_path, resume=True, progress=False)


def test_an_interrupted_run_folder_is_checked_against_its_request_too(tmp_path):
    request = make_request(config_with().to_dict(), "abc", fold=1)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "request.json").write_text(json.dumps(request))
    assert reusable_run(folder, request) is None  # same request, nothing finished: resume
    with pytest.raises(StaleRunError, match="interrupted run"):
        reusable_run(folder, make_request(config_with("train.lr=0.1").to_dict(), "abc", fold=1))


def test_a_copied_run_folder_resumes_without_touching_the_original(prepared_ravdess, fast_config, tmp_path):
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    original = tmp_path / "original"
    fit(prepared_ravdess.features, assignment, fast_config, original, progress=False, stop_after_epochs=1)
    state = load_checkpoint(original / "last.pt")
    assert not os.path.isabs(state["best_path"]) and "/" not in state["best_path"]
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    originals = sorted(p.name for p in original.iterdir())
    fit(prepared_ravdess.features, assignment, fast_config, copy, resume=True, progress=False)
    assert sorted(p.name for p in original.iterdir()) == originals
    assert len(list(copy.glob("best_uar_*.pt"))) == 1


def test_a_damaged_last_checkpoint_is_set_aside_and_the_run_trains_from_the_start(prepared_ravdess, fast_config,
                                                                                   tmp_path):
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    fit(prepared_ravdess.features, assignment, fast_config, tmp_path, progress=False, stop_after_epochs=1)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.warns(UserWarning, match="last.pt is damaged.*training this run from the start"):
        metrics = fit(prepared_ravdess.features, assignment, fast_config, tmp_path, resume=True, progress=False)
    assert metrics["epochs_run"] == fast_config.train.epochs and (tmp_path / "last.pt.damaged").is_file()


def test_a_damaged_best_checkpoint_names_the_file_and_the_remedy(prepared_ravdess, fast_config, tmp_path):
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    fit(prepared_ravdess.features, assignment, fast_config, tmp_path, progress=False)
    (tmp_path / "metrics.json").unlink()
    best = next(tmp_path.glob("best_uar_*.pt"))
    best.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=rf"{best.name} is damaged.*--retrain"):
        fit(prepared_ravdess.features, assignment, fast_config, tmp_path, resume=True, progress=False)


class _Exploit:
    """A pickle payload that touches a file when unpickled (stands for ``os.system``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["torch.save", "plain pickle"])
def test_a_crafted_checkpoint_never_runs_its_code(tmp_path, capsys, writer):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "best_uar_0.9000.pt"
    payload = {"model": _Exploit(marker), "config": {}, "labels": ["a"], "n_feats": 1}
    if writer == "torch.save":
        torch.save(payload, crafted)
    else:
        crafted.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError):
        Predictor.load(crafted)
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"")
    assert main(["predict", str(crafted), str(clip)]) == 2
    assert "damaged or not a serlib checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_real_checkpoints_load_with_weights_only(prepared_ravdess, fast_config, tmp_path):
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    fit(prepared_ravdess.features, assignment, fast_config, tmp_path, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Predictor.load(next(tmp_path.glob("best_uar_*.pt")))
        assert load_checkpoint(tmp_path / "last.pt")["finished"] is True


def test_a_key_added_to_the_schema_after_a_run_counts_as_its_default():
    old = make_request(config_with().to_dict(), "abc", fold=1)
    del old["config"]["encoder.mode"]
    assert reusable_run_differences(old, make_request(config_with().to_dict(), "abc", fold=1)) == []
    assert reusable_run_differences(old, make_request(config_with("encoder.mode=pad30").to_dict(), "abc", fold=1)) \
        == ["encoder.mode: own -> pad30"]


def test_a_run_of_an_older_version_of_the_systems_code_is_stale(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    old = make_request({"data": {"corpus": "savee"}}, "abc", fold=1)
    (folder / "request.json").write_text(json.dumps(old))
    assert "version" not in old  # folders made before versions existed read as version 1
    assert reusable_run(folder, old) is None  # the same version: an interrupted run, resumed
    with pytest.raises(StaleRunError, match="system version: 1 -> 2"):
        reusable_run(folder, make_request({"data": {"corpus": "savee"}}, "abc", fold=1, version=2))


def test_a_full_disk_while_saving_a_checkpoint_names_the_run_folder_and_leaves_no_temporary(tmp_path, monkeypatch):
    import errno

    from serlib.core.checkpoints import save_checkpoint
    from serlib.core.files import DiskFullError

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(DiskFullError, match="run folder"):
        save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_run_cleans_the_temporaries_a_killed_run_left_in_its_folder(prepared_ravdess, fast_config, tmp_path):
    stale = tmp_path / ".last.pt.99999999.tmp"  # written by a process that no longer exists
    stale.write_bytes(b"half a checkpoint")
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    fit(prepared_ravdess.features, assignment, fast_config, tmp_path, progress=False, stop_after_epochs=1)
    assert not stale.exists()


def test_a_gpu_that_is_not_there_is_a_config_error_from_the_python_api_too():
    from serlib.config import ConfigError
    from serlib.systems.tier1.trainer import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_a_clip_whose_bytes_change_but_not_its_size_makes_the_run_stale(synthetic_ravdess, tmp_path):
    from serlib.features.prepared import prepare

    data = tmp_path / "ravdess"
    shutil.copytree(synthetic_ravdess, data)
    config = config_with()
    first = prepare(config, data_root=data, cache_dir=tmp_path / "cache", workers=1, progress=False)
    run_protocol(config, first, models=("baseline-svm",), folds=[0], results=tmp_path / "results", progress=False)
    clips = sorted(data.glob("Actor_01/*.wav"))
    same_size = next(c for c in clips[1:] if c.stat().st_size == clips[0].stat().st_size)
    shutil.copyfile(same_size, clips[0])  # the same size, other bytes: the size-based fingerprint cannot see it
    again = prepare(config, data_root=data, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert again.fingerprint == first.fingerprint and again.content != first.content
    with pytest.raises(StaleRunError, match="data_content: the bytes of at least one clip changed"):
        run_protocol(config, again, models=("baseline-svm",), folds=[0], results=tmp_path / "results", progress=False)


def test_a_run_folder_that_never_recorded_its_content_is_judged_on_the_fingerprint(tmp_path):
    old = make_request({"data": {"corpus": "emodb"}}, "fp", fold=1)  # folders made before content was recorded
    new = make_request({"data": {"corpus": "emodb"}}, "fp", fold=1, data_content="abc")
    assert reusable_run_differences(old, new) == []
    assert reusable_run_differences(new, make_request({"data": {"corpus": "emodb"}}, "fp", fold=1, data_content="xyz"))


def _failing_system(monkeypatch, name: str):
    import sys
    import types

    from serlib.systems.base import System
    from serlib.systems.registry import register

    module = types.ModuleType(f"{name.replace('-', '_')}_system")

    def fit(prepared, split, config, run_dir, *, extra, resume, progress):
        raise ValueError("the validation part is empty")

    module.fit = fit
    monkeypatch.setitem(sys.modules, module.__name__, module)
    register(System(name, "Fails at once", module.__name__, "classical", ("data",)))
    return name


def test_a_run_that_fails_before_training_leaves_no_claim_on_its_folder(prepared_ravdess, tmp_path, monkeypatch):
    from serlib.systems.registry import REGISTRY

    name = _failing_system(monkeypatch, "fails-early")
    try:
        with pytest.raises(ValueError, match="validation part is empty"):
            run_protocol(config_with(), prepared_ravdess, models=(name,), folds=[0], results=tmp_path, progress=False)
        folder = tmp_path / "ravdess" / "speaker-split" / name / "fold-1" / "seed-0"
        assert not (folder / "request.json").exists()
        assert reusable_run(folder, make_request({"data": {}}, "other", fold=1)) is None  # not "another request"
    finally:
        REGISTRY.pop(name, None)


def test_a_run_folder_being_trained_refuses_a_second_training_in_one_line(tmp_path):
    import subprocess
    import sys

    from serlib.systems.reuse import RunFolderBusy, run_folder_lock

    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from serlib.systems.reuse import run_folder_lock\n"
        f"with run_folder_lock({str(folder)!r}):\n    print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match="being trained by another process"):
            with run_folder_lock(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    with run_folder_lock(folder):  # a killed holder leaves the folder free
        pass
