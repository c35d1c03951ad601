"""Training: the schedule cannot collapse, runs write complete folders, resume is exact."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from serlib.features.prepared import split_for
from serlib.features.frames import Normalizer
from serlib.systems.tier1.trainer import fit, lr_factor, make_scheduler

# ---------------------------------------------------------------- the learning-rate schedule


@pytest.mark.parametrize("steps_per_epoch", [23, 68, 344])  # SAVEE-, RAVDESS-, CREMA-D-sized epochs
def test_learning_rate_stays_above_the_floor_until_the_last_steps(steps_per_epoch):
    epochs, floor = 30, 0.05
    total = epochs * steps_per_epoch
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = make_scheduler(opt, total, steps_per_epoch, floor)
    lrs = []
    for _ in range(total):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    lrs = np.array(lrs)
    assert lrs.min() >= floor * 1e-3 * (1 - 1e-9)
    # the previous system's collapse: 2.45e-08 at epoch 9 of 30. Here epoch 9 is still near the peak.
    assert lrs[9 * steps_per_epoch - 1] > 0.7e-3
    # after warm-up the cosine stays well above its floor for most of the run and reaches it only at the end
    assert (lrs[steps_per_epoch : int(0.8 * total)] > 2 * floor * 1e-3).all()
    assert lrs[-1] == pytest.approx(floor * 1e-3, rel=1e-6)


def test_more_steps_than_the_horizon_stay_at_the_floor_instead_of_restarting_or_collapsing():
    assert lr_factor(10_000, 1000, 10, 0.05) == pytest.approx(0.05)
    assert all(lr_factor(s, 1000, 10, 0.05) >= 0.05 for s in range(0, 2000, 7))


def test_warm_up_rises_linearly():
    assert lr_factor(0, 100, 10, 0.05) == pytest.approx(0.1)
    assert lr_factor(4, 100, 10, 0.05) == pytest.approx(0.5)
    assert lr_factor(10, 100, 10, 0.05) == pytest.approx(1.0)


# ---------------------------------------------------------------- a whole (tiny) run

RUN_FILES = ["config.yaml", "provenance.json", "history.csv", "metrics.json", "predictions.csv", "last.pt",
             "val_predictions.csv", "val_posteriors.npz",
             "confusion_matrix.png", "per_class_metrics.png", "training_curves.png"]


@pytest.fixture(scope="module")
def finished_run(prepared_ravdess, fast_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    metrics = fit(prepared_ravdess.features, assignment, fast_config, out, progress=False)
    return out, metrics, assignment


def test_a_run_writes_every_artifact_of_the_run_folder(finished_run):
    out, metrics, _ = finished_run
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    assert len(list(out.glob("best_uar_0.*.pt"))) == 1
    prov = json.loads((out / "provenance.json").read_text())
    for key in ("git_commit", "data_fingerprint", "seed", "wall_seconds", "torch_threads", "denoise"):
        assert key in prov
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["epoch", "lr", "train_loss", "val_loss", "val_uar", "val_accuracy", "improved", "seconds"]
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == metrics["sizes"]["test"]
    assert {"utt_id", "speaker", "true", "predicted"} <= set(preds.columns)
    probs = preds[[c for c in preds.columns if c.startswith("p_")]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-3)
    assert 0 <= metrics["test"]["uar"] <= 1 and metrics["test_uar_ci95"][0] <= metrics["test_uar_ci95"][1]


def test_test_speakers_are_never_seen_in_training(finished_run):
    _, metrics, _ = finished_run
    assert not set(metrics["speakers"]["test"]) & set(metrics["speakers"]["train"])
    assert not set(metrics["speakers"]["test"]) & set(metrics["speakers"]["val"])


def test_normalisation_statistics_come_from_training_clips_only(finished_run, prepared_ravdess):
    out, metrics, assignment = finished_run
    ckpt = torch.load(next(out.glob("best_uar_*.pt")), weights_only=False)
    usable = prepared_ravdess.features.usable
    train_ids = usable.loc[assignment.values == "train", "utt_id"]
    expected = Normalizer.fit(prepared_ravdess.features.features[u] for u in train_ids)
    np.testing.assert_allclose(ckpt["normalizer"]["mean"], expected.mean, rtol=1e-5)
    assert ckpt["labels"] == metrics["labels"] and "git_commit" in ckpt


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(prepared_ravdess, fast_config, tmp_path, finished_run):
    out_full, full, _ = finished_run
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    killed = fit(prepared_ravdess.features, assignment, fast_config, tmp_path, progress=False, stop_after_epochs=2)
    assert killed["stopped_after_epoch"] == 2 and not (tmp_path / "metrics.json").exists()
    resumed = fit(prepared_ravdess.features, assignment, fast_config, tmp_path, resume=True, progress=False)
    assert resumed["test"]["confusion_matrix"] == full["test"]["confusion_matrix"]
    assert resumed["best_val_uar"] == full["best_val_uar"]
    a = pd.read_csv(out_full / "history.csv").drop(columns=["seconds"])
    b = pd.read_csv(tmp_path / "history.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)
    pa = pd.read_csv(out_full / "predictions.csv")
    pb = pd.read_csv(tmp_path / "predictions.csv")
    pd.testing.assert_frame_equal(pa, pb)
    assert json.loads((tmp_path / "provenance.json").read_text())["resumed"] is True


def _fit_with(prepared, fast_config, out, **train_options):
    """A tiny run with some ``train.*`` options changed; returns its metrics and its best checkpoint."""
    config = copy.deepcopy(fast_config)
    for key, value in train_options.items():
        setattr(config.train, key, value)
    metrics = fit(prepared.features, split_for(prepared.features, config, 0), config, out, progress=False)
    return metrics, next(out.glob("best_uar_*.pt"))


def test_a_speaker_normalised_run_standardises_every_speaker_and_refuses_single_file_scoring(
        prepared_ravdess, fast_config, tmp_path):
    from serlib.core.checkpoints import CheckpointError
    from serlib.systems.tier1.predictor import Predictor

    metrics, ckpt = _fit_with(prepared_ravdess, fast_config, tmp_path, speaker_norm=True)
    assert 0 <= metrics["test"]["uar"] <= 1 and metrics["transductive"] is True
    # the global normaliser is fitted after each training speaker was standardised: it is (almost) the identity
    norm = torch.load(ckpt, weights_only=False)["normalizer"]
    np.testing.assert_allclose(norm["mean"], 0, atol=1e-3)
    np.testing.assert_allclose(norm["std"], 1, atol=1e-3)
    with pytest.raises(CheckpointError, match="per-speaker standardised"):
        Predictor.load(ckpt)


def test_a_sentence_normalised_run_scores_single_files_exactly_as_it_tested_them(
        prepared_ravdess, fast_config, tmp_path):
    from serlib.systems.tier1.predictor import Predictor
    from serlib.systems.tier1.trainer import predict_proba

    metrics, ckpt = _fit_with(prepared_ravdess, fast_config, tmp_path, sentence_norm=True)
    assert metrics["transductive"] is False
    # every training clip was centred before the global normaliser was fitted: its mean is (almost) zero
    np.testing.assert_allclose(torch.load(ckpt, weights_only=False)["normalizer"]["mean"], 0, atol=1e-4)
    predictor = Predictor.load(ckpt)
    preds = pd.read_csv(tmp_path / "predictions.csv")
    raw = [prepared_ravdess.features.features[u] for u in preds["utt_id"]]
    tested = preds[[f"p_{lab}" for lab in predictor.labels]].to_numpy()
    np.testing.assert_allclose(predictor.predict_arrays(raw), tested, atol=1e-4)
    uncentred = predict_proba(predictor.model, raw, predictor.normalizer)
    assert not np.allclose(uncentred, tested, atol=1e-4)  # so the centring above is what made them agree


def test_speaker_and_sentence_normalisation_cannot_be_combined():
    from serlib.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="choose one"):
        load_config(overrides=["train.speaker_norm=true", "train.sentence_norm=true"])
