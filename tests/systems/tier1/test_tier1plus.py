"""Tier-1+: the improved recipe's parts, its recipe file, and how it is chosen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import fast_overrides
from serlib.report import selection
from serlib.features.augment import augment_wave, speed_perturb
from serlib.config import ConfigError, load_config
from serlib.features.frames import augment_key
from serlib.systems.tier1.network import Tier1SER
from serlib.systems.registry import check_recipe, get_model, recipe_overlays
from serlib.core.runs import PROJECT_ROOT
from serlib.report.selection import check_table, chosen_step, passing_candidates, selection_table
from serlib.systems.tier1.trainer import crop_windows, predict_proba

RECIPE = PROJECT_ROOT / "configs" / "models" / "tier1plus.yaml"


# ----------------------------------------------------------------------------- the parts


def test_speed_perturbation_changes_the_length_by_the_inverse_factor_and_keeps_the_level():
    sr = 16000
    wave = np.sin(2 * np.pi * 220 * np.arange(sr) / sr).astype(np.float32)
    fast, slow = speed_perturb(wave, sr, 1.1), speed_perturb(wave, sr, 0.9)
    assert abs(len(fast) - sr / 1.1) <= 2 and abs(len(slow) - sr / 0.9) <= 2
    assert np.sqrt(np.mean(fast ** 2)) == pytest.approx(np.sqrt(np.mean(wave ** 2)), rel=0.05)
    assert np.array_equal(speed_perturb(wave, sr, 1.0), wave)


def test_speed_copies_use_one_factor_each_in_order():
    config = load_config(overrides=["wave_augment.kind=speed", "wave_augment.speeds=[0.9, 1.1]"]).wave_augment
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    rng = np.random.default_rng(0)
    lengths = [len(augment_wave(wave, 16000, config, rng, copy=k)) for k in range(2)]
    assert lengths == [len(speed_perturb(wave, 16000, 0.9)), len(speed_perturb(wave, 16000, 1.1))]


def test_more_speed_copies_than_factors_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="wave_augment.copies=3 exceeds"):
        load_config(overrides=["wave_augment.kind=speed", "wave_augment.copies=3"])


def test_the_random_augmentation_cache_key_did_not_change_when_speed_perturbation_arrived():
    # the key Tier-1's cached copies were stored under before `kind` and `speeds` existed
    assert augment_key(load_config()) == "40eaec56ef172697"
    assert augment_key(load_config(overrides=["wave_augment.kind=speed"])) != augment_key(load_config())


def test_attentive_statistics_pooling_doubles_the_embedding_and_ignores_padding():
    torch.manual_seed(0)
    config = load_config(overrides=["model.pooling=attentive-stats"]).model
    model = Tier1SER(12, 5, config).eval()
    assert model.classifier.in_features == 2 * 2 * config.lstm_hidden
    x = torch.randn(2, 40, 12)
    padded = torch.cat([x, 1e3 * torch.randn(2, 9, 12)], dim=1)
    lengths = torch.tensor([40, 23])
    padded[1, 23:] = 1e3 * torch.randn(26, 12)
    with torch.no_grad():
        assert torch.allclose(model(x, lengths), model(padded, lengths), atol=1e-4)


def test_crop_windows_overlap_by_half_and_cover_the_clip():
    assert crop_windows(100, 250) == [(0, 100)]
    assert crop_windows(100, 0) == [(0, 100)]
    windows = crop_windows(600, 250)
    assert windows[0] == (0, 250) and windows[-1] == (350, 600)
    assert all(b - a == 250 for a, b in windows)
    assert all(w2[0] - w1[0] <= 125 for w1, w2 in zip(windows, windows[1:]))


def test_crop_averaging_is_the_mean_posterior_of_the_windows():
    torch.manual_seed(0)
    model = Tier1SER(8, 3, load_config(overrides=["model.conv_channels=[8, 8]", "model.lstm_hidden=8",
                                                  "model.attention_dim=8"]).model).eval()
    identity = lambda a: a  # noqa: E731 - a normaliser that changes nothing
    clip = np.random.default_rng(1).standard_normal((90, 8)).astype(np.float32)
    windows = crop_windows(90, 40)
    each = predict_proba(model, [clip[a:b] for a, b in windows], identity)
    averaged = predict_proba(model, [clip, clip[:30]], identity, window=40)
    assert np.allclose(averaged[0], each.mean(0), atol=1e-5)
    assert np.allclose(averaged[1], predict_proba(model, [clip[:30]], identity)[0], atol=1e-5)


# ----------------------------------------------------------------------------- the recipe


def test_tier1plus_is_registered_with_its_commented_recipe_file():
    spec = get_model("tier1plus")
    assert spec.kind == "network" and spec.seeded and spec.recipe_path == RECIPE
    assert RECIPE.read_text().lstrip().startswith("#")
    config = load_config(PROJECT_ROOT / "configs" / "ravdess.yaml", *recipe_overlays("tier1plus"))
    check_recipe("tier1plus", config)  # loaded with it: accepted
    assert config.model.name == "tier1"  # the same network class, another recipe


def test_a_config_loaded_without_the_recipe_is_refused_before_any_run():
    from serlib.experiments.protocol import plan_protocol

    config = load_config(PROJECT_ROOT / "configs" / "ravdess.yaml")
    with pytest.raises(ValueError, match="trains under its recipe configs/models/tier1plus.yaml"):
        check_recipe("tier1plus", config)
    with pytest.raises(ValueError, match="recipe"):
        plan_protocol(config, prepared=None, models=("tier1plus",), folds=[0])  # type: ignore[arg-type]
    plus = load_config(PROJECT_ROOT / "configs" / "ravdess.yaml", *recipe_overlays("tier1plus"))
    with pytest.raises(ValueError, match="'tier1' trains under no system recipe"):
        check_recipe("tier1", plus)  # nor does a Tier-1 folder ever hold a Tier-1+ run


def test_the_grid_loads_tier1plus_runs_with_the_recipe_and_keeps_their_cache_apart():
    from serlib.experiments.grid import RunSpec

    plus = RunSpec(corpus="ravdess", model="tier1plus", fold=0, seed=0)
    base = RunSpec(corpus="ravdess", model="tier1", fold=0, seed=0)
    check_recipe("tier1plus", plus.config())
    assert plus.config().features.kind != base.config().features.kind
    assert plus.cache_task() != base.cache_task()


def test_serlib_train_trains_tier1plus_under_its_recipe(synthetic_ravdess: Path, tmp_path: Path):
    sets = [a for o in fast_overrides() + ["data.protocol=speaker-split", "wave_augment.copies=1"]
            for a in ("--set", o)]
    cmd = [sys.executable, "-m", "serlib.cli", "train", "--config", str(PROJECT_ROOT / "configs" / "ravdess.yaml"),
           "--data-root", str(synthetic_ravdess),
           "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path / "results"), "--model", "tier1plus",
           "--workers", "1", "--quiet", *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run = tmp_path / "results" / "ravdess" / "speaker-split" / "tier1plus" / "fold-1" / "seed-0"
    saved = load_config(run / "config.yaml")
    assert (saved.features.kind, saved.features.deltas, saved.model.pooling) == ("logmel", True, "attentive-stats")
    assert saved.model.recipe == "tier1plus" and saved.train.epochs == 3  # the user's --set wins over the recipe
    assert json.loads((run / "metrics.json").read_text())["model"] == "tier1plus"


def test_serlib_train_checks_every_recipe_group_for_stale_runs_before_training_any(synthetic_ravdess: Path,
                                                                                     tmp_path: Path):
    results = tmp_path / "results"
    stale = results / "ravdess" / "speaker-split" / "tier1plus" / "fold-1" / "seed-0"
    stale.mkdir(parents=True)
    (stale / "request.json").write_text(json.dumps({"fold": 1, "data_fingerprint": "another-copy", "config": {}}))
    sets = [a for o in fast_overrides() + ["data.protocol=speaker-split", "wave_augment.copies=1"]
            for a in ("--set", o)]
    cmd = [sys.executable, "-m", "serlib.cli", "train", "--config", str(PROJECT_ROOT / "configs" / "ravdess.yaml"),
           "--data-root", str(synthetic_ravdess), "--cache-dir", str(tmp_path / "cache"), "--results", str(results),
           "--model", "tier1", "tier1plus", "--workers", "1", "--quiet", *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "another request" in done.stderr and "Traceback" not in done.stderr
    assert not (results / "ravdess" / "speaker-split" / "tier1").exists()  # Tier-1 (the first group) never trained


# ----------------------------------------------------------------------------- the choice


def _fake_run(results: Path, model: str, fold: int, val_uar: float, seconds: float = 60.0,
              corpus: str = "ravdess", protocol: str = "emobox", seed: int = 0,
              tested_val_uar: float | None = None) -> Path:
    run = results / corpus / protocol / model / f"fold-{fold}" / f"seed-{seed}"
    run.mkdir(parents=True)
    metrics = {"test": {"uar": 0.0, "accuracy": 0.0}, "best_val_uar": val_uar, "best_epoch": 3,
               "sizes": {"train": 1, "val": 1, "test": 1}}
    if tested_val_uar is not None:  # the tested weights are not the best epoch's (an average_last run)
        metrics["val"] = {"uar": tested_val_uar}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "provenance.json").write_text(json.dumps({"wall_seconds": seconds}))
    return run


def test_the_chosen_step_is_the_complete_step_with_the_best_mean_validation_uar(tmp_path: Path):
    for fold, (base, a, b, c) in enumerate([(0.50, 0.60, 0.70, 0.99), (0.52, 0.62, 0.64, None)], start=1):
        _fake_run(tmp_path, "tier1", fold, base)
        _fake_run(tmp_path, "tier1-plus-logmel", fold, a)
        _fake_run(tmp_path, "tier1-plus-stats", fold, b)
        if c is not None:  # the third step misses fold 2: it cannot win on one lucky fold
            _fake_run(tmp_path, "tier1-plus-crops", fold, c)
    table = selection_table(tmp_path, "ravdess", "emobox", folds=[1, 2], steps=("logmel", "stats", "crops"))
    assert table.loc["stats", "mean val UAR %"] == pytest.approx(67.0)
    assert not table.loc["crops", "complete"] and pd.isna(table.loc["crops", "mean val UAR %"])
    assert chosen_step(table) == "stats"
    assert "test" not in " ".join(table.columns)  # the choice never shows test numbers


def test_the_check_on_a_second_corpus_compares_each_candidate_with_tier1plus_on_validation_only(tmp_path: Path):
    for fold, (control, window, crops) in enumerate([(0.70, 0.74, 0.60), (0.80, 0.78, None)], start=1):
        _fake_run(tmp_path, "tier1plus", fold, control, corpus="emodb", protocol="speaker-cv")
        _fake_run(tmp_path, "tier1-tplus-window", fold, window, corpus="emodb", protocol="speaker-cv")
        if crops is not None:  # crops ran on fold 1 only
            _fake_run(tmp_path, "tier1-tplus-crops", fold, crops, corpus="emodb", protocol="speaker-cv")
    _fake_run(tmp_path, "tier1-tplus-window", 1, 0.99)  # another corpus: never read
    table = check_table(tmp_path, "emodb", "speaker-cv", folds=[1, 2], candidates=("window", "crops"))
    assert list(table.index) == ["tier1plus", "window", "crops"]
    assert table.loc["tier1plus", "mean val UAR %"] == pytest.approx(75.0)
    assert table.loc["window", "Δ vs Tier-1+"] == pytest.approx(1.0)
    assert not table.loc["crops", "complete"] and pd.isna(table.loc["crops", "Δ vs Tier-1+"])
    assert "test" not in " ".join(table.columns)


def test_a_candidate_that_gains_with_one_seed_is_judged_again_over_three(tmp_path: Path):
    def run(model: str, fold: int, seed: int, val: float) -> None:
        _fake_run(tmp_path, model, fold, val, corpus="emodb", protocol="speaker-cv", seed=seed)

    for fold in (1, 2):
        for seed, (control, crops) in enumerate([(0.70, 0.76), (0.80, 0.74), (0.81, 0.80)]):
            run("tier1plus", fold, seed, control)
            if seed < 2 or fold == 1:  # crops lacks (fold 2, seed 2)
                run("tier1-tplus-crops", fold, seed, crops)
    one = check_table(tmp_path, "emodb", "speaker-cv", folds=[1, 2], candidates=("crops",))
    assert one.loc["crops", "Δ vs Tier-1+"] == pytest.approx(6.0) and passing_candidates(one) == ["crops"]
    three = check_table(tmp_path, "emodb", "speaker-cv", folds=[1, 2], candidates=("crops",), seeds=(0, 1, 2))
    assert not three.loc["crops", "complete"] and passing_candidates(three) == []  # a missing seed never passes
    run("tier1-tplus-crops", 2, 2, 0.80)
    three = check_table(tmp_path, "emodb", "speaker-cv", folds=[1, 2], candidates=("crops",), seeds=(0, 1, 2))
    assert three.loc["tier1plus", "mean val UAR %"] == pytest.approx(77.0)
    assert three.loc["crops", "Δ vs Tier-1+"] == pytest.approx(-0.33, abs=0.01)
    assert passing_candidates(three) == []


def test_an_averaging_candidate_is_judged_by_the_validation_uar_of_the_weights_it_tests(tmp_path: Path):
    for fold in (1, 2):
        _fake_run(tmp_path, "tier1plus", fold, 0.70, corpus="emodb", protocol="speaker-cv")
        _fake_run(tmp_path, "tier1-tplus-swa", fold, 0.70, corpus="emodb", protocol="speaker-cv", tested_val_uar=0.66)
    table = check_table(tmp_path, "emodb", "speaker-cv", folds=[1, 2], candidates=("swa",))
    assert table.loc["swa", "Δ vs Tier-1+"] == pytest.approx(-4.0)


def test_the_epoch_choice_table_scores_every_way_of_picking_weights_on_the_same_validation_clips(tmp_path: Path):
    from serlib.systems.tier1.epoch_posteriors import VAL_POSTERIORS, write_val_posteriors

    # two validation speakers with one clip of each class; epoch 1 is right on speaker 1 only, epoch 2 on both
    said = [["a", "b", "b", "a"], ["a", "b", "a", "b"]]
    probs = np.array([[[1.0, 0.0] if c == "a" else [0.0, 1.0] for c in epoch] for epoch in said])
    run = _fake_run(tmp_path, "tier1-tplus-swa", 1, 1.0, corpus="emodb", protocol="speaker-cv", tested_val_uar=0.5)
    write_val_posteriors(run / VAL_POSTERIORS, probs, ["c1", "c2", "c3", "c4"], ["a", "b"])
    pd.DataFrame({"utt_id": ["c1", "c2", "c3", "c4"], "speaker": ["1", "1", "2", "2"], "true": ["a", "b", "a", "b"],
                  "predicted": ["a", "a", "a", "a"]}).to_csv(run / "val_predictions.csv", index=False)
    _fake_run(tmp_path, "tier1-tplus-swa", 2, 0.9, corpus="emodb", protocol="speaker-cv")  # no posteriors: left out
    table = selection.epoch_choice_table(tmp_path, "emodb", "speaker-cv", [1, 2])
    assert list(table.columns) == list(selection.EPOCH_CHOICES)
    # speaker 1 at the epoch best on speaker 2 (epoch 2): right; speaker 2 at the first of the tied epochs: wrong
    assert table.loc[(1, 0)].tolist() == [100.0, 50.0, 100.0, 50.0]
    assert table.loc[("mean", "")].tolist() == [100.0, 50.0, 100.0, 50.0]
    assert selection.epoch_choice_table(tmp_path, "emodb", "speaker-cv", [3]).empty
