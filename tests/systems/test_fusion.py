"""The late fusion of the Whisper-base MLP head and Tier-1+: its weight is chosen on validation speakers only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serlib.config import load_config
from serlib.features.prepared import prepare
from serlib.experiments.protocol import run_protocol
from serlib.systems.fusion import FusionError, choose_weight, component_folder, fuse
from serlib.systems.registry import get_model, recipe_overlays
from serlib.core.runs import PROJECT_ROOT

from conftest import fast_overrides
from test_whisper_heads import config_with, with_stand_in_embeddings


def test_fusion_at_weight_one_is_the_encoder_alone_and_every_row_is_a_distribution():
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(4), size=6), rng.dirichlet(np.ones(4), size=6)
    np.testing.assert_allclose(fuse(a, b, 1.0), a, atol=1e-5)
    np.testing.assert_allclose(fuse(a, b, 0.0), b, atol=1e-5)
    np.testing.assert_allclose(fuse(a, b, 0.5).sum(axis=1), 1.0)
    geometric = np.sqrt(a * b)
    np.testing.assert_allclose(fuse(a, b, 0.5), geometric / geometric.sum(axis=1, keepdims=True), atol=1e-5)


def test_the_weight_is_the_one_with_the_best_validation_uar():
    y = np.array([0, 1, 0, 1])
    encoder = np.array([[0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.4, 0.6]])  # half of class 1 wrong
    network = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])  # all right
    weight, search = choose_weight(encoder, network, y)
    assert search["0.0"] == 1.0 and search["1.0"] == 0.75
    assert search[str(weight)] == 1.0 and weight == max(float(w) for w, u in search.items() if u == 1.0)


def test_ties_go_to_the_encoder_alone():
    y = np.array([0, 1])
    both_right = np.array([[0.9, 0.1], [0.2, 0.8]])
    weight, search = choose_weight(both_right, both_right, y)
    assert weight == 1.0 and set(search.values()) == {1.0}


def test_the_components_are_the_runs_of_the_same_fold_and_seed(tmp_path):
    out = tmp_path / "ravdess" / "emobox" / "whisper-fusion" / "fold-3" / "seed-2"
    assert component_folder(out, "tier1plus") == tmp_path / "ravdess" / "emobox" / "tier1plus" / "fold-3" / "seed-2"


def test_a_missing_component_is_one_line_naming_the_run_to_train_first(prepared_ravdess, tmp_path):
    prepared, config = with_stand_in_embeddings(prepared_ravdess), config_with()
    with pytest.raises(FusionError, match=r"needs the finished whisper-mlp run .* serlib train --config "
                                          r"configs/ravdess.yaml --model whisper-mlp --fold 1 --seeds 0"):
        run_protocol(config, prepared, models=("whisper-fusion",), results=tmp_path, progress=False)


def test_the_fusion_runs_as_a_registered_system_after_its_components(prepared_ravdess, synthetic_ravdess, cache_dir,
                                                                       tmp_path):
    assert get_model("whisper-fusion").seeded and get_model("whisper-fusion").kind == "fusion"
    prepared, config = with_stand_in_embeddings(prepared_ravdess), config_with()
    run_protocol(config, prepared, models=("whisper-mlp",), results=tmp_path, progress=False)
    plus = load_config(PROJECT_ROOT / "configs" / "ravdess.yaml", *recipe_overlays("tier1plus"),
                       overrides=fast_overrides() + ["data.protocol=speaker-split"])
    plus_prepared = prepare(plus, data_root=synthetic_ravdess, cache_dir=cache_dir, workers=1, progress=False)
    run_protocol(plus, plus_prepared, models=("tier1plus",), results=tmp_path, progress=False)
    run_protocol(config, prepared, models=("whisper-fusion",), results=tmp_path, progress=False)

    folder = tmp_path / "ravdess" / "speaker-split" / "whisper-fusion" / "fold-1" / "seed-0"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert len(metrics["val_search"]) == 11
    assert metrics["best_val_uar"] == metrics["val_search"][str(metrics["encoder_weight"])]
    assert set(metrics["components"]) == {"whisper-mlp", "tier1plus"}
    assert all(c["test_agreement"] >= 0.98 and len(c["weights_sha256"]) == 64 for c in metrics["components"].values())
    predictions = pd.read_csv(folder / "predictions.csv")
    mlp = pd.read_csv(tmp_path / "ravdess" / "speaker-split" / "whisper-mlp" / "fold-1" / "seed-0" / "predictions.csv")
    assert list(predictions["utt_id"]) == list(mlp["utt_id"])  # the same test clips as its components
    np.testing.assert_allclose(predictions.filter(like="p_").sum(axis=1), 1.0, atol=1e-3)
    if metrics["encoder_weight"] == 1.0:
        assert list(predictions["predicted"]) == list(mlp["predicted"])

    # with one fold, the pooled weight is this fold's own: the pooled fusion repeats the per-fold one
    run_protocol(config, prepared, models=("whisper-fusion-pooled",), results=tmp_path, progress=False)
    pooled = json.loads((folder.parents[2] / "whisper-fusion-pooled" / "fold-1" / "seed-0" / "metrics.json").read_text())
    assert pooled["encoder_weight"] == metrics["encoder_weight"] and pooled["pooled_folds"] == [1]
    assert pooled["components"]["whisper-fusion"]["rounding_agreement"] >= 0.98
    assert pooled["test"]["uar"] == pytest.approx(metrics["test"]["uar"], abs=0.02)
