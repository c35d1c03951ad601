"""The contract every registered system keeps, checked on one tiny generated split.

Every system of the catalogue is fitted through the experiment layer (components
before the fusions that read them). Then, for each one:

- its run folder holds the files the report reads;
- the predictor reloaded from the run folder scores the test clips from their audio
  exactly as ``predictions.csv`` recorded them (a transductive system refuses in one line);
- a system that ships survives the export round trip: the shipped model predicts as the run.

The Whisper-base encoder is replaced by a small deterministic stand-in (a fixed random
projection of Whisper's own log-mel), the same for the caches and for the predictors, so
the contract is checked without the 145 MB weights; the real encoder has its own tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serlib.config import load_config
from serlib.core.runs import PROJECT_ROOT, read_json
from serlib.features.encoders.base import WhisperBackend
from serlib.features.prepared import prepare
from serlib.systems.base import CannotPredictFiles
from serlib.systems.registry import REGISTRY, get_model, recipe_overlays, run_order

from conftest import fast_overrides

RUN_FILES = {"config.yaml", "provenance.json", "metrics.json", "predictions.csv", "request.json"}


class StandInWhisper(WhisperBackend):
    """Seven 'layers' of tanh(fixed random projection) of Whisper's log-mel, at the encoder's frame rate."""

    name = "torch"
    n_layers = 7
    sha256 = "5" * 64

    def __init__(self) -> None:
        self.weights = np.random.default_rng(0).standard_normal((7, 80, 512)).astype(np.float32) / 9

    def encode_mel(self, mel: np.ndarray) -> np.ndarray:
        pairs = mel[:, : mel.shape[1] // 2 * 2].reshape(80, -1, 2).mean(-1).T  # (frames // 2, 80)
        return np.tanh(np.einsum("tm,lmd->ltd", pairs, self.weights)).astype(np.float32)


def system_config(name: str):
    """The config a system trains under: its recipe (Tier-1+, the -multi heads), or none.

    The -multi heads add one generated corpus (EmoDB, beside the generated RAVDESS) to training.
    """
    base = PROJECT_ROOT / "configs" / "ravdess.yaml"
    overrides = fast_overrides() + ["data.protocol=speaker-split"]
    if get_model(name).multi_corpus:
        overrides += ["data.extra_train=[emodb]", "encoder.extra_classes=mask", "encoder.corpus_norm=per-corpus",
                      "encoder.corpus_weight=balanced"]
    return load_config(base, *recipe_overlays(name), overrides=overrides)


@pytest.fixture(scope="module")
def fitted(synthetic_ravdess, synthetic_emodb, cache_dir, tmp_path_factory) -> dict[str, Path]:
    """Every registered system fitted on fold 1, seed 0 of the generated RAVDESS; name -> run folder."""
    from serlib.experiments.protocol import run_protocol
    from serlib.features.encoders.frames import compute_frame_embeddings
    from serlib.features.encoders.pooled import compute_embeddings
    from serlib.systems.whisper_attention import STRIDE

    results = tmp_path_factory.mktemp("contract")
    encoder = StandInWhisper()
    prepared = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("serlib.features.encoders.make_encoder", lambda *args, **kwargs: encoder)
        for stage in run_order(sorted(REGISTRY)):
            for name in stage:
                config = system_config(name)
                key = config.model.recipe or "plain"
                if key not in prepared:
                    prepared[key] = prepare(config, data_root=synthetic_ravdess, cache_dir=cache_dir, workers=1,
                                            progress=False)
                    manifest, enc = prepared[key].scan.manifest, config.encoder
                    prepared[key].__dict__["_embeddings"] = {(enc.backend, enc.mode, enc.compute_type): compute_embeddings(
                        manifest, encoder=encoder, cache_dir=results / "encoder-cache")}
                    prepared[key].__dict__["_frames"] = {(enc.mode, STRIDE): compute_frame_embeddings(
                        manifest, encoder=encoder, stride=STRIDE, cache_dir=results / "encoder-cache")}
                run_protocol(config, prepared[key], models=(name,), folds=[0], seeds=[0], results=results,
                             progress=False)
        yield {name: results / "ravdess" / "speaker-split" / name / "fold-1" / "seed-0" for name in REGISTRY}


@pytest.fixture
def stand_in_encoder(monkeypatch):
    monkeypatch.setattr("serlib.features.encoders.make_encoder", lambda *args, **kwargs: StandInWhisper())


def test_the_catalogue_gives_every_system_a_label_a_module_and_sections():
    for system in REGISTRY.values():
        assert system.label and system.label != system.name and system.description
        assert system.kind in ("network", "classical", "encoder", "fusion")
        assert all(after in REGISTRY for after in system.after)
        assert callable(getattr(system.implementation(), "fit"))
        assert callable(getattr(system.implementation(), "predictor"))
        assert (system.ships_as is None) or callable(getattr(system.implementation(), "export"))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_fitted_system_writes_the_run_folder_the_report_reads(fitted, name):
    folder = fitted[name]
    assert RUN_FILES <= {p.name for p in folder.iterdir()}
    metrics, predictions = read_json(folder / "metrics.json"), pd.read_csv(folder / "predictions.csv")
    assert metrics["model"] == name and 0.0 <= metrics["test"]["uar"] <= 1.0
    assert list(predictions.columns[:4]) == ["utt_id", "speaker", "true", "predicted"]
    assert set(predictions["predicted"]) <= set(metrics["labels"])


def test_the_two_stage_head_records_both_stages_and_keeps_the_better_on_validation(fitted):
    metrics = read_json(fitted["whisper-mlp-twostage-multi"] / "metrics.json")
    stages = metrics["second_stage"]
    assert set(stages) >= {"first_val_uar", "second_val_uar", "kept", "own_training_clips"}
    assert stages["kept"] == (stages["second_val_uar"] > stages["first_val_uar"])
    assert round(metrics["best_val_uar"], 4) == max(stages["first_val_uar"], stages["second_val_uar"])


def recorded_outputs(folder: Path, prefix: str, labels: list[str]) -> np.ndarray | None:
    predictions = pd.read_csv(folder / "predictions.csv", dtype={"utt_id": str})
    columns = [f"{prefix}_{label}" for label in labels]
    return predictions[columns].to_numpy() if set(columns) <= set(predictions.columns) else None


def recorded_clips(folder: Path, synthetic_ravdess: Path) -> tuple[list[Path], list[str]]:
    from serlib.data.corpora import read_corpus

    predictions = pd.read_csv(folder / "predictions.csv", dtype={"utt_id": str})
    paths = read_corpus("ravdess", synthetic_ravdess).manifest.set_index("utt_id")["path"]
    return [Path(paths[u]) for u in predictions["utt_id"]], list(predictions["predicted"].astype(str))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_reloaded_predictor_reproduces_the_recorded_predictions(fitted, name, synthetic_ravdess,
                                                                    stand_in_encoder):
    system, folder = get_model(name), fitted[name]
    if system.transductive:
        with pytest.raises(CannotPredictFiles, match="test speakers' own statistics"):
            system.predictor(folder)
        return
    predictor = system.predictor(folder)
    paths, predicted = recorded_clips(folder, synthetic_ravdess)
    got = predictor.predict_files(paths)
    assert list(got["label"]) == predicted
    recorded = recorded_outputs(folder, predictor.outputs, predictor.labels)
    if recorded is not None:  # probabilities or scores, written with 5 decimals
        assert np.abs(got[[f"{predictor.outputs}_{label}" for label in predictor.labels]].to_numpy()
                      - recorded).max() < 1e-3


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if s.ships_as))
def test_a_shipped_system_predicts_as_its_run(fitted, name, synthetic_ravdess, stand_in_encoder, tmp_path):
    from serlib.serve.shipped import export_run, load_shipped

    model = export_run(fitted[name], "contract", out_dir=tmp_path)
    assert model.kind == get_model(name).ships_as
    paths, predicted = recorded_clips(fitted[name], synthetic_ravdess)
    shipped = load_shipped(model.sidecar).predict_files(paths)
    from_run = get_model(name).predictor(fitted[name]).predict_files(paths)
    assert list(shipped["label"]) == predicted
    columns = [c for c in from_run.columns if c.startswith("p_")]
    assert np.abs(shipped[columns].to_numpy() - from_run[columns].to_numpy()).max() < 1e-3


def test_a_system_that_does_not_ship_says_so(fitted):
    assert get_model("baseline-svm").export(fitted["baseline-svm"]) is None
