"""Weight averaging over the last epochs (train.average_last) and the per-epoch validation posteriors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from serlib.systems.tier1.averaging import WeightAverage, recompute_batchnorm
from serlib.config import ConfigError, load_config
from serlib.systems.tier1.epoch_posteriors import VAL_POSTERIORS, epoch_choice_uars, read_val_posteriors, write_val_posteriors
from serlib.features.prepared import split_for
from serlib.evaluation.metrics import unweighted_average_recall
from serlib.systems.tier1.trainer import fit


class _Tiny(nn.Module):
    """A linear layer and a batch norm: float parameters, float buffers and an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x.mean(1)))


def test_the_average_is_the_plain_mean_of_every_added_state_and_integer_buffers_keep_the_newest():
    model, average, states = _Tiny(), WeightAverage(), []
    for step in range(3):
        with torch.no_grad():
            model.linear.weight.fill_(float(step))
            model.norm.running_mean.fill_(2.0 * step)
            model.norm.num_batches_tracked.fill_(10 + step)
        states.append(copy.deepcopy(model.state_dict()))
        average.update(model)
    target = _Tiny()
    average.copy_to(target)
    assert average.count == 3
    torch.testing.assert_close(target.linear.weight, torch.full((2, 3), 1.0))
    torch.testing.assert_close(target.linear.bias, torch.stack([s["linear.bias"] for s in states]).mean(0))
    torch.testing.assert_close(target.norm.running_mean, torch.full((2,), 2.0))
    assert int(target.norm.num_batches_tracked) == 12


def test_an_average_survives_its_state_dict_and_refuses_to_load_when_empty():
    model, average = _Tiny(), WeightAverage()
    with pytest.raises(RuntimeError, match="no epoch was averaged"):
        average.copy_to(model)
    average.update(model)
    again = WeightAverage()
    again.load_state_dict(average.state_dict())
    assert again.count == 1 and again.mean.keys() == average.mean.keys()
    for name, value in average.mean.items():
        torch.testing.assert_close(again.mean[name], value)


def test_batchnorm_statistics_are_measured_again_as_the_plain_average_over_the_batches():
    torch.manual_seed(0)
    model = _Tiny()
    batches = [(torch.randn(4, 5, 3), torch.full((4,), 5)) for _ in range(3)]
    assert recompute_batchnorm(model, batches)
    with torch.no_grad():
        hidden = torch.cat([model.linear(x.mean(1)) for x, _ in batches])
    torch.testing.assert_close(model.norm.running_mean, hidden.mean(0))
    assert model.norm.momentum == 0.1 and not model.training  # momentum restored, evaluation mode
    assert recompute_batchnorm(nn.Linear(3, 2), batches) is False


def test_averaging_needs_a_full_run_and_a_shorter_run_averages_all_its_epochs():
    # a smoke run of the swa overlay (train.epochs=2) stays valid: it averages both of its epochs
    assert load_config(overrides=["train.epochs=2", "train.patience=5", "train.average_last=10"]).train.average_last == 10
    with pytest.raises(ConfigError, match="no early stopping"):
        load_config(overrides=["train.epochs=5", "train.patience=2", "train.average_last=2"])
    with pytest.raises(ConfigError, match="train.average_last"):
        load_config(overrides=["train.average_last=-1"])


def _write_run(folder, probs, ids, speakers, true, tested):
    classes = ["a", "b"]
    folder.mkdir(parents=True, exist_ok=True)
    write_val_posteriors(folder / VAL_POSTERIORS, probs, ids, classes)
    pd.DataFrame({"utt_id": ids, "speaker": speakers, "true": true, "predicted": tested}).to_csv(
        folder / "val_predictions.csv", index=False)


def test_each_validation_speaker_is_scored_at_the_epoch_chosen_on_the_others(tmp_path):
    # speakers 1 and 2 hold one clip of each class; epoch 0 says "a" everywhere, epoch 1 is right on
    # speaker 1 only, epoch 2 on speaker 2 only: each speaker's epoch, chosen on the other, is wrong on it
    one_hot = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    said = [["a", "a", "a", "a"], ["a", "b", "b", "a"], ["b", "a", "a", "b"]]
    probs = np.array([[one_hot[c] for c in epoch] for epoch in said])
    ids = ["0101", "0102", "0201", "0202"]  # ids that look like numbers stay strings (EmoDB-, RAVDESS-like names)
    _write_run(tmp_path / "run", probs, ids, ["1", "1", "2", "2"], ["a", "b", "a", "b"], ["a", "b", "a", "b"])
    assert epoch_choice_uars(tmp_path / "run") == {"chosen on other speakers": 0.0, "last epoch": 0.5, "tested": 1.0}
    read, stored_ids, classes = read_val_posteriors(tmp_path / "run" / VAL_POSTERIORS)
    assert read.shape == (3, 4, 2) and stored_ids == ids and classes == ["a", "b"]


def test_epoch_choice_needs_the_files_and_two_validation_speakers(tmp_path):
    assert epoch_choice_uars(tmp_path) is None
    probs = np.tile(np.array([[[1.0, 0.0], [0.0, 1.0]]]), (2, 1, 1))
    _write_run(tmp_path / "one", probs, ["c1", "c2"], ["1", "1"], ["a", "b"], ["a", "b"])
    assert epoch_choice_uars(tmp_path / "one") is None


@pytest.fixture(scope="module")
def best_and_averaged(prepared_ravdess, fast_config, tmp_path_factory):
    averaged = copy.deepcopy(fast_config)
    averaged.train.average_last = 2
    runs = {}
    for name, config in (("best", fast_config), ("averaged", averaged)):
        out = tmp_path_factory.mktemp(name)
        runs[name] = out, fit(prepared_ravdess.features, split_for(prepared_ravdess.features, config, 0), config, out,
                              progress=False)
    return runs


def test_averaging_changes_nothing_in_training_and_tests_the_mean_of_the_last_epochs(best_and_averaged):
    (best_dir, best), (avg_dir, avg) = best_and_averaged["best"], best_and_averaged["averaged"]
    pd.testing.assert_frame_equal(pd.read_csv(best_dir / "history.csv").drop(columns="seconds"),
                                  pd.read_csv(avg_dir / "history.csv").drop(columns="seconds"))
    assert avg["checkpoint"] == "averaged_last2.pt" and (avg_dir / "averaged_last2.pt").is_file()
    assert avg["tested"] == "mean weights of epochs 2-3"
    assert best["tested"].startswith("best validation epoch") and best["checkpoint"].startswith("best_uar_")
    assert avg["best_val_uar"] == best["best_val_uar"]  # the best single epoch is still recorded


def test_a_run_keeps_every_epochs_validation_posteriors_and_its_tested_weights_predictions(best_and_averaged):
    for out, metrics in best_and_averaged.values():
        probs, ids, classes = read_val_posteriors(out / VAL_POSTERIORS)
        assert probs.shape == (3, metrics["sizes"]["val"], len(metrics["labels"])) and classes == metrics["labels"]
        val = pd.read_csv(out / "val_predictions.csv")
        assert list(val["utt_id"]) == ids
        assert unweighted_average_recall(val["true"], val["predicted"]) == pytest.approx(metrics["val"]["uar"])
    out, metrics = best_and_averaged["best"]
    probs, _, classes = read_val_posteriors(out / VAL_POSTERIORS)
    at_best = [classes[i] for i in probs[metrics["best_epoch"] - 1].argmax(1)]
    assert at_best == list(pd.read_csv(out / "val_predictions.csv")["predicted"])


def test_a_resumed_averaging_run_ends_like_an_uninterrupted_one(prepared_ravdess, fast_config, tmp_path,
                                                              best_and_averaged):
    out_full, full = best_and_averaged["averaged"]
    config = copy.deepcopy(fast_config)
    config.train.average_last = 2
    assignment = split_for(prepared_ravdess.features, config, 0)
    fit(prepared_ravdess.features, assignment, config, tmp_path, progress=False, stop_after_epochs=2)
    resumed = fit(prepared_ravdess.features, assignment, config, tmp_path, resume=True, progress=False)
    assert resumed["test"]["confusion_matrix"] == full["test"]["confusion_matrix"]
    pd.testing.assert_frame_equal(pd.read_csv(out_full / "predictions.csv"), pd.read_csv(tmp_path / "predictions.csv"))
    np.testing.assert_array_equal(read_val_posteriors(out_full / VAL_POSTERIORS)[0],
                                  read_val_posteriors(tmp_path / VAL_POSTERIORS)[0])
    assert json.loads((tmp_path / "provenance.json").read_text())["resumed"] is True


def test_the_tested_checkpoint_is_the_one_metrics_names_else_the_best_one(tmp_path):
    from serlib.core.runs import tested_checkpoint, write_json

    assert tested_checkpoint(tmp_path) is None  # checkpoints are not committed: a fresh clone has none
    (tmp_path / "best_uar_0.5000.pt").write_bytes(b"")
    (tmp_path / "best_uar_0.7000.pt").write_bytes(b"")  # kept with train.keep_checkpoints
    assert tested_checkpoint(tmp_path).name == "best_uar_0.7000.pt"
    write_json(tmp_path / "metrics.json", {"checkpoint": "averaged_last10.pt"})
    assert tested_checkpoint(tmp_path).name == "best_uar_0.7000.pt"  # named but absent: the best one
    (tmp_path / "averaged_last10.pt").write_bytes(b"")
    assert tested_checkpoint(tmp_path).name == "averaged_last10.pt"  # what an average_last run tested
