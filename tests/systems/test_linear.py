"""Linear heads on fixed features: C chosen on validation speakers, run folders like Tier-1's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serlib.systems.linear import (
    BaselineError,
    fit_linear_head,
    functional_model_name,
    is_functional_model,
    parse_functional_model,
    speaker_standardize,
)
from serlib.core.runs import list_runs, read_json, run_dir

CLASSES = ["neutral", "happy", "sad", "angry"]


def toy(n_speakers: int = 9, per_speaker: int = 24, dims: int = 12, speaker_offset: float = 0.0, seed: int = 0):
    """Functionals with a class signal (and optionally a large per-speaker shift); speakers 0-4 train, 5-6 val, 7-8 test."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 1.0, (len(CLASSES), dims))
    offsets = rng.normal(0, speaker_offset, (n_speakers, dims)) if speaker_offset else np.zeros((n_speakers, dims))
    rows, X = [], []
    for s in range(n_speakers):
        for i in range(per_speaker):
            k = i % len(CLASSES)
            rows.append({"utt_id": f"s{s}_{i:02d}", "speaker": f"s{s}", "label": CLASSES[k], "corpus": "toy"})
            X.append(means[k] + offsets[s] + rng.normal(0, 1.0, dims))
    manifest = pd.DataFrame(rows)
    part = {s: "train" if s < 5 else "val" if s < 7 else "test" for s in range(n_speakers)}
    assignment = pd.Series([part[int(r.speaker[1:])] for r in manifest.itertuples()], index=manifest.index)
    return np.array(X), manifest, assignment


def test_a_functional_baseline_writes_a_run_folder_the_report_reads_like_any_other(fast_config, tmp_path):
    X, manifest, assignment = toy()
    out = run_dir(tmp_path, "toy", "speaker-split", "egemaps-svm", 0, 0)
    metrics = fit_linear_head(X, manifest, assignment, fast_config, out, data_fingerprint="fp")
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "provenance.json", "metrics.json", "predictions.csv",
                                              "confusion_matrix.png", "per_class_metrics.png"}
    assert metrics["model"] == "egemaps-svm" and metrics["sizes"] == {"train": 120, "val": 48, "test": 48}
    assert metrics["speakers"]["test"] == ["s7", "s8"] and metrics["test"]["uar"] > 0.5
    preds = pd.read_csv(out / "predictions.csv")
    assert list(preds.columns[:4]) == ["utt_id", "speaker", "true", "predicted"]
    assert set(preds["speaker"]) == {"s7", "s8"} and len(preds) == 48
    runs = list_runs(tmp_path)
    assert runs.loc[0, "model"] == "egemaps-svm" and runs.loc[0, "test_uar"] == pytest.approx(metrics["test"]["uar"])
    assert runs.loc[0, "fingerprint"] == "fp"


def test_C_is_chosen_on_validation_speakers_and_test_clips_cannot_change_it(fast_config, tmp_path):
    X, manifest, assignment = toy(seed=1)
    first = fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "a", classifier="logreg")
    noisy = X.copy()
    test = (assignment == "test").to_numpy()
    noisy[test] = np.random.default_rng(9).normal(0, 5, noisy[test].shape)  # wreck the test clips only
    second = fit_linear_head(noisy, manifest, assignment, fast_config, tmp_path / "b", classifier="logreg")
    assert first["val_search"] == second["val_search"] and first["chosen_C"] == second["chosen_C"]
    assert second["test"]["uar"] < first["test"]["uar"]
    assert len(first["val_search"]) == 6 and first["best_val_uar"] == max(first["val_search"].values())
    assert first["refit"] == "train"
    assert first["c_grid"] == [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]


def test_logistic_regression_writes_probabilities_and_the_svm_writes_decision_scores(fast_config, tmp_path):
    X, manifest, assignment = toy(seed=2)
    fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "lr", classifier="logreg",
                            feature_set="compare")
    lr = pd.read_csv(tmp_path / "lr" / "predictions.csv")
    probs = lr[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-3)
    assert (np.array(CLASSES)[probs.argmax(1)] == lr["predicted"]).all()
    fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "svm", classifier="svm")
    svm = pd.read_csv(tmp_path / "svm" / "predictions.csv")
    scores = svm[[f"score_{c}" for c in CLASSES]].to_numpy()
    assert (np.array(CLASSES)[scores.argmax(1)] == svm["predicted"]).all()
    assert read_json(tmp_path / "lr" / "metrics.json")["model"] == "compare-logreg"


def test_per_speaker_standardisation_is_labelled_transductive_everywhere(fast_config, tmp_path):
    X, manifest, assignment = toy(seed=3)
    m = fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "z", speaker_norm=True)
    prov = read_json(tmp_path / "z" / "provenance.json")
    assert m["model"] == "egemaps-svm-spkz" and m["speaker_norm"] and m["transductive"]
    assert prov["speaker_norm"] is True and prov["transductive"] is True
    plain = fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "p")
    assert plain["transductive"] is False and plain["model"] == "egemaps-svm"


def test_per_speaker_standardisation_removes_speaker_shifts_that_defeat_the_plain_model(fast_config, tmp_path):
    X, manifest, assignment = toy(speaker_offset=4.0, seed=4)
    plain = fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "p", classifier="logreg")
    spkz = fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "z", classifier="logreg",
                                   speaker_norm=True)
    assert spkz["test"]["uar"] > plain["test"]["uar"] + 0.15


def test_speaker_standardize_gives_every_speaker_zero_mean_and_unit_std_ignoring_missing_rows():
    rng = np.random.default_rng(5)
    X = rng.normal(3, 2, (10, 4))
    X[:, 3] = 7.0  # a constant feature stays finite
    X[9] = np.nan  # a clip without functionals
    spk = ["a"] * 5 + ["b"] * 5
    Z = speaker_standardize(X, spk)
    for rows in (slice(0, 5), slice(5, 9)):
        assert np.allclose(Z[rows, :3].mean(0), 0) and np.allclose(Z[rows, :3].std(0), 1)
    assert np.all(Z[:9, 3] == 0) and np.isnan(Z[9]).all()


def test_clips_without_functionals_leave_training_but_stay_in_the_test_set(fast_config, tmp_path):
    X, manifest, assignment = toy(seed=6)
    X[[0, 1]] = np.nan  # train clips
    X[(assignment == "test").to_numpy().nonzero()[0][:3]] = np.nan  # three test clips
    m = fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "m")
    assert m["sizes"]["train"] == 118 and m["sizes"]["test"] == 48
    assert m["missing_clips"] == {"train": 2, "val": 0, "test": 3}


def test_refit_on_train_and_validation_is_recorded(fast_config, tmp_path):
    X, manifest, assignment = toy(seed=7)
    m = fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "tv", refit="train+val",
                                c_grid=(0.01, 1.0))
    assert m["refit"] == "train+val" and m["c_grid"] == [0.01, 1.0]


def test_model_names_say_feature_set_classifier_and_speaker_norm():
    assert functional_model_name("compare", "logreg", True) == "compare-logreg-spkz"
    assert parse_functional_model("egemaps-svm") == ("egemaps", "svm", False)
    assert parse_functional_model("compare-logreg-spkz") == ("compare", "logreg", True)
    assert not is_functional_model("baseline-svm") and not is_functional_model("tier1")
    with pytest.raises(BaselineError, match="not a functional baseline name"):
        parse_functional_model("egemaps-rbf")


def test_bad_inputs_are_one_clear_error(fast_config, tmp_path):
    X, manifest, assignment = toy()
    with pytest.raises(BaselineError, match="one row per usable clip"):
        fit_linear_head(X[:-1], manifest, assignment, fast_config, tmp_path / "x")
    with pytest.raises(BaselineError, match="unknown classifier"):
        fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "x", classifier="rf")
    with pytest.raises(BaselineError, match="val split has no clips"):
        fit_linear_head(X, manifest, assignment.replace("val", "train"), fast_config, tmp_path / "x")


# --------------------------------------------------------------------------- on a prepared (synthetic) corpus


def test_functional_models_and_the_mfcc_svm_run_on_the_same_split_of_a_prepared_corpus(prepared_ravdess, fast_config,
                                                                                       tmp_path):
    from serlib.features.prepared import split_for
    from serlib.systems import mfcc_svm, opensmile_linear

    pytest.importorskip("opensmile")
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    mfcc = mfcc_svm.fit(prepared_ravdess, assignment, fast_config, tmp_path / "baseline-svm", extra={})
    func = opensmile_linear.fit(prepared_ravdess, assignment, fast_config, tmp_path / "egemaps-logreg", extra={},
                                feature_set="egemaps", classifier="logreg")
    assert mfcc["model"] == "baseline-svm" and func["model"] == "egemaps-logreg"
    a = pd.read_csv(tmp_path / "baseline-svm" / "predictions.csv")
    b = pd.read_csv(tmp_path / "egemaps-logreg" / "predictions.csv")
    assert sorted(a["utt_id"]) == sorted(b["utt_id"])  # same test clips: the paired comparison applies
    prov = read_json(tmp_path / "egemaps-logreg" / "provenance.json")
    assert prov["data_fingerprint"] == prepared_ravdess.features.fingerprint and prov["opensmile"]
    cache = Path(prepared_ravdess.features.path).parents[1]
    assert any(cache.glob("*/functionals-egemaps-*/meta.json"))


def test_compare_functionals_get_a_grid_of_smaller_C_than_egemaps(fast_config, tmp_path):
    X, manifest, assignment = toy(seed=8)
    m = fit_linear_head(X, manifest, assignment, fast_config, tmp_path / "c", feature_set="compare")
    assert m["c_grid"] == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2] and m["model"] == "compare-svm"
