"""The late fusion with a pooled weight: one weight per seed, chosen on other folds' validation speakers only."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import serlib.features.prepared
from serlib.config import load_config
from serlib.systems.fusion import WEIGHTS, FusionError, fuse
from serlib.systems.fusion_pooled import fit_pooled_fusion, per_fold_runs, pooled_weight, usable_curves
from serlib.systems.registry import get_model, run_order
from serlib.core.runs import PROJECT_ROOT

CLASSES = ["angry", "happy", "sad"]


def curve(best: float, top: float = 0.9, rest: float = 0.5) -> dict[str, float]:
    return {str(w): (top if w == best else rest) for w in WEIGHTS}


def test_the_pooled_weight_is_the_best_mean_of_the_curves():
    weight, mean = pooled_weight([curve(0.3, top=0.9), curve(0.7, top=0.8), curve(0.3, top=0.6)])
    assert weight == 0.3
    assert mean["0.3"] == pytest.approx((0.9 + 0.5 + 0.6) / 3)


def test_a_tie_in_the_mean_goes_to_the_larger_weight():
    weight, _ = pooled_weight([curve(0.2), curve(0.8)])
    assert weight == 0.8


def test_nothing_to_pool_is_an_error():
    with pytest.raises(FusionError, match="no validation curve"):
        pooled_weight([])


def test_a_fold_that_validates_on_a_test_speaker_is_left_out():
    runs = {1: {"speakers": {"val": ["03"]}, "val_search": curve(0.1)},
            2: {"speakers": {"val": ["08", "09"]}, "val_search": curve(0.5)},
            3: {"speakers": {"val": [11]}, "val_search": curve(0.9)}}
    assert set(usable_curves(runs, {"09", "10"})) == {1, 3}
    assert set(usable_curves(runs, {"11"})) == {1, 2}  # speaker ids compare as text


def test_a_missing_per_fold_run_is_one_line_naming_the_command(tmp_path):
    out = tmp_path / "emodb" / "speaker-cv" / "whisper-fusion-pooled" / "fold-1" / "seed-2"
    (out.parents[2] / "whisper-fusion" / "fold-1" / "seed-2").mkdir(parents=True)
    (out.parents[2] / "whisper-fusion" / "fold-1" / "seed-2" / "metrics.json").write_text("{}")
    with pytest.raises(FusionError, match=r"no run for fold\(s\) 2, 3 of seed 2: run serlib train --config "
                                          r"configs/emodb.yaml --model whisper-fusion --seeds 2 first"):
        per_fold_runs(out, 3)


def test_the_pooled_fusion_runs_after_the_per_fold_fusion_and_its_components():
    assert get_model("whisper-fusion-pooled").kind == "fusion" and get_model("whisper-fusion-pooled").seeded
    stages = run_order(["whisper-fusion-pooled", "whisper-fusion", "tier1plus", "compare-svm", "whisper-mlp"])
    assert stages == [["tier1plus", "compare-svm", "whisper-mlp"], ["whisper-fusion"], ["whisper-fusion-pooled"]]
    assert run_order(["whisper-fusion-pooled"]) == [["whisper-fusion-pooled"]]  # alone it reads committed runs


# ----------------------------------------------------------------------------- a fake two-fold protocol


def write_component(folder: Path, ids: list[str], speakers: list[str], true: list[str], probs: np.ndarray,
                    predicted: list[str] | None = None, metrics: dict | None = None) -> None:
    folder.mkdir(parents=True)
    table = pd.DataFrame({"utt_id": ids, "speaker": speakers, "true": true,
                          "predicted": predicted or [CLASSES[i] for i in probs.argmax(1)]})
    for k, c in enumerate(CLASSES):
        table[f"p_{c}"] = probs[:, k].round(5)
    table.to_csv(folder / "predictions.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(metrics or {"labels": CLASSES}))


def two_fold_tree(root: Path, *, refused_by_rounding: bool = False) -> tuple[Path, dict[str, np.ndarray]]:
    """Per-fold fusion runs of folds 1-3 (seed 0) and fold 1's components; returns fold 1's pooled run folder.

    Fold 2 validates on speaker 03, a test speaker of fold 1: its curve (best at 0.9) must not count. The mean of
    folds 1 and 3 is best at 0.2; with fold 2 it would be 0.9.
    """
    rng = np.random.default_rng(0)
    protocol = root / "emodb" / "speaker-cv"
    ids, speakers = [f"a{i:02d}" for i in range(12)], ["03"] * 6 + ["08"] * 6
    true = [CLASSES[i % 3] for i in range(12)]
    probs = {m: rng.dirichlet(np.ones(3), size=12) for m in ("whisper-mlp", "tier1plus")}
    for model, p in probs.items():
        write_component(protocol / model / "fold-1" / "seed-0", ids, speakers, true, p)
    own = fuse(probs["whisper-mlp"], probs["tier1plus"], 0.5)
    recorded = [CLASSES[i] for i in (own.argmax(1) + refused_by_rounding) % 3]
    base = {"labels": CLASSES, "sizes": {"train": 40, "val": 12, "test": 12}}
    folds = {1: (["09"], curve(0.5, top=0.7)), 2: (["03"], curve(0.9, top=0.99)), 3: (["10"], curve(0.2, top=0.8))}
    for fold, (val, search) in folds.items():
        metrics = {**base, "speakers": {"train": ["11"], "val": val, "test": ["03", "08"] if fold == 1 else ["12"]},
                   "encoder_weight": 0.5, "val_search": search}
        write_component(protocol / "whisper-fusion" / f"fold-{fold}" / "seed-0", ids, speakers, true, own,
                        predicted=recorded if fold == 1 else None, metrics=metrics)
    return protocol / "whisper-fusion-pooled" / "fold-1" / "seed-0", probs


def fake_prepared(ids: list[str]) -> tuple[SimpleNamespace, pd.Series]:
    usable = pd.DataFrame({"utt_id": ids + ["t0", "v0"]})
    features = SimpleNamespace(usable=usable, fingerprint="0123456789abcdef")
    return SimpleNamespace(features=features), pd.Series(["test"] * len(ids) + ["train", "val"], index=usable.index)


def test_the_pooled_run_fuses_the_recorded_posteriors_at_the_weight_of_the_other_folds(tmp_path, monkeypatch):
    monkeypatch.setattr(serlib.features.prepared, "fold_count", lambda features, config: 3)
    out, probs = two_fold_tree(tmp_path)
    prepared, assignment = fake_prepared([f"a{i:02d}" for i in range(12)])
    config = load_config(PROJECT_ROOT / "configs" / "emodb.yaml")

    metrics = fit_pooled_fusion(prepared, assignment, config, out)

    assert metrics["model"] == "whisper-fusion-pooled"
    assert metrics["pooled_folds"] == [1, 3]  # fold 2 validates on speaker 03, a test speaker here
    assert metrics["encoder_weight"] == 0.2 and metrics["best_val_uar"] == pytest.approx((0.5 + 0.8) / 2)
    assert metrics["components"]["whisper-fusion"]["rounding_agreement"] == 1.0
    predictions = pd.read_csv(out / "predictions.csv", dtype={"utt_id": str})
    expected = fuse(probs["whisper-mlp"].round(5), probs["tier1plus"].round(5), 0.2)
    assert list(predictions["predicted"]) == [CLASSES[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(predictions.filter(like="p_").to_numpy(), expected, atol=1e-5)
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["data_fingerprint"] == "0123456789abcdef" and provenance["seed"] == config.seed


def test_posteriors_that_no_longer_reproduce_the_per_fold_fusion_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(serlib.features.prepared, "fold_count", lambda features, config: 3)
    out, _ = two_fold_tree(tmp_path, refused_by_rounding=True)
    prepared, assignment = fake_prepared([f"a{i:02d}" for i in range(12)])
    with pytest.raises(FusionError, match=r"no longer reproduce whisper-fusion's predictions \(0.0% agree\)"):
        fit_pooled_fusion(prepared, assignment, load_config(PROJECT_ROOT / "configs" / "emodb.yaml"), out)
    assert not (out / "metrics.json").exists()


def test_components_tested_on_other_clips_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(serlib.features.prepared, "fold_count", lambda features, config: 3)
    out, _ = two_fold_tree(tmp_path)
    prepared, assignment = fake_prepared([f"b{i:02d}" for i in range(12)])
    with pytest.raises(FusionError, match="were not tested on this fold's test clips"):
        fit_pooled_fusion(prepared, assignment, load_config(PROJECT_ROOT / "configs" / "emodb.yaml"), out)
