"""Linear heads on frozen encoder features: the layer and C are chosen on validation speakers only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serlib.config import load_config
from serlib.features.encoders.pooled import EmbeddingSet
from serlib.systems.whisper_linear import aligned_features, layer_candidates, layer_matrix, select_layer
from serlib.features.prepared import Prepared, split_for
from serlib.experiments.protocol import run_protocol

from conftest import fast_overrides

INFORMATIVE = 2  # the layer that carries the label in the stand-in features


def stand_in_embeddings(manifest: pd.DataFrame, *, n_layers: int = 4, dims: int = 16, seed: int = 0) -> EmbeddingSet:
    """Pooled features where only layer INFORMATIVE separates the labels (others are noise)."""
    rng = np.random.default_rng(seed)
    labels = sorted(manifest["label"].unique())
    feats = rng.standard_normal((len(manifest), n_layers, dims)).astype(np.float32)
    codes = manifest["label"].map({l: i for i, l in enumerate(labels)}).to_numpy()
    feats[np.arange(len(manifest)), INFORMATIVE, codes % dims] += 6.0
    return EmbeddingSet(manifest=manifest.assign(status="ok"), features=feats,
                        quarantine=pd.DataFrame(columns=["utt_id", "path", "reason", "detail"]),
                        encoder={"backend": "stand-in", "sha256": "0" * 64, "mode": "own"}, key="standin")


def with_stand_in_embeddings(prepared_ravdess) -> Prepared:
    """A copy of the prepared corpus whose encoder features (default encoder config) are the stand-ins."""
    prepared = Prepared(prepared_ravdess.scan, prepared_ravdess.features)
    enc = config_with().encoder
    prepared.__dict__["_embeddings"] = {(enc.backend, enc.mode, enc.compute_type):
                                        stand_in_embeddings(prepared.scan.manifest)}
    return prepared


def config_with(*extra: str):
    return load_config(overrides=fast_overrides() + ["data.corpus=ravdess", "data.protocol=speaker-split", *extra])


def test_layer_options_are_every_layer_and_their_mean_for_auto():
    assert layer_candidates(7, "auto") == [0, 1, 2, 3, 4, 5, 6, "mean"]
    assert layer_candidates(7, "last") == [6] and layer_candidates(1, "auto") == [0]
    assert layer_candidates(7, 3) == [3]
    with pytest.raises(ValueError, match="layers 0..0"):
        layer_candidates(1, 4)
    x = np.arange(24, dtype=float).reshape(2, 3, 4)
    assert np.array_equal(layer_matrix(x, "mean"), x.mean(axis=1)) and np.array_equal(layer_matrix(x, 1), x[:, 1])


def test_features_follow_the_usable_clips_and_missing_clips_are_nan(prepared_ravdess):
    emb = stand_in_embeddings(prepared_ravdess.scan.manifest.iloc[::-1].reset_index(drop=True))
    usable = prepared_ravdess.features.usable
    X = aligned_features(emb, usable)
    row = {u: i for i, u in enumerate(emb.manifest["utt_id"])}
    assert np.array_equal(X[0], emb.features[row[usable["utt_id"].iloc[0]]])
    emb.manifest = emb.manifest.iloc[1:]
    emb.features = emb.features[1:]
    assert np.isnan(aligned_features(emb, usable)).any()


def test_the_informative_layer_is_chosen_without_looking_at_test_clips(prepared_ravdess, fast_config):
    usable = prepared_ravdess.features.usable
    assignment = split_for(prepared_ravdess.features, fast_config, 0)
    X = aligned_features(stand_in_embeddings(prepared_ravdess.scan.manifest), usable)
    classes = sorted(usable["label"].unique())
    layer, scores = select_layer(X, usable, assignment, classes, layer_candidates(4, "auto"))
    assert layer == INFORMATIVE and set(scores) == {"0", "1", "2", "3", "mean"}
    scrambled = X.copy()
    scrambled[(assignment.reindex(usable.index) == "test").to_numpy()] = 0.0
    assert select_layer(scrambled, usable, assignment, classes, layer_candidates(4, "auto")) == (layer, scores)


def test_a_head_runs_as_a_registered_model_and_records_its_encoder_and_layer(prepared_ravdess, tmp_path):
    prepared, config = with_stand_in_embeddings(prepared_ravdess), config_with()
    table = run_protocol(config, prepared, models=("whisper-logreg",), results=tmp_path, progress=False)
    folder = tmp_path / "ravdess" / "speaker-split" / "whisper-logreg" / "fold-1" / "seed-0"
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["layer"] == str(INFORMATIVE) and prov["encoder"]["sha256"] == "0" * 64
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["feature_set"] == f"whisper-base/own/layer-{INFORMATIVE}"
    assert (folder / "head.safetensors").is_file()  # the fitted head, exportable by serlib.serve.shipped
    assert table["test_uar"].iloc[0] > 0.9
    changed = config_with("encoder.mode=pad30")
    from serlib.systems.reuse import StaleRunError

    with pytest.raises(StaleRunError, match="encoder.mode: own -> pad30"):
        run_protocol(changed, prepared, models=("whisper-logreg",), results=tmp_path, progress=False)
    assert set(run_protocol(config_with("train.epochs=7"), prepared, models=("whisper-logreg",), results=tmp_path,
                            progress=False)["status"]) == {"cached"}


def test_a_missing_encoder_is_one_line_from_the_command_line(monkeypatch, tmp_path, capsys, synthetic_ravdess):
    from serlib.systems import whisper_linear as encoder_heads
    from serlib.cli import main
    from serlib.features.encoders.weights import WhisperUnavailable

    def unavailable(*args, **kwargs):
        raise WhisperUnavailable("the Whisper-base encoder is not installed: run make env")

    monkeypatch.setattr(encoder_heads, "encoder_embeddings", unavailable)
    sets = [x for o in fast_overrides() for x in ("--set", o)]
    code = main(["train", "--config", "configs/ravdess.yaml", "--data-root", str(synthetic_ravdess), "--cache-dir",
                 str(tmp_path / "cache"), "--results", str(tmp_path / "results"), "--set", "data.protocol=speaker-split",
                 *sets, "--model", "whisper-logreg", "--workers", "1", "--quiet"])
    assert code == 2
    assert capsys.readouterr().err.strip() == "serlib train: error: the Whisper-base encoder is not installed: run make env"


def noisy_layers(sizes: dict[str, int], mark, *, n_classes: int = 4, n_layers: int = 4, dims: int = 16):
    """Gaussian ``(n, layers, dims)`` inputs per part with labels; ``mark(part, X, y)`` plants the cues."""
    rng = np.random.default_rng(0)
    X, y = {}, {}
    for part, n in sizes.items():
        y[part] = rng.integers(0, n_classes, n)
        X[part] = rng.standard_normal((n, n_layers, dims)).astype(np.float32)
        mark(part, X[part], y[part])
    return X, y


def test_the_mlp_head_learns_to_weight_the_informative_layer():
    from serlib.systems.whisper_mlp import train_mlp

    def mark(part, X, y):
        X[np.arange(len(y)), INFORMATIVE, y] += 3.0

    X, y = noisy_layers({"train": 400, "val": 100}, mark)
    model, history = train_mlp(X, y, 4, seed=0)
    assert max(h["val_uar"] for h in history) > 0.9
    assert int(model.layer_weights().argmax()) == INFORMATIVE


def test_the_mlp_head_keeps_the_last_layer_alone_when_the_mix_learns_cues_that_fail_on_validation_speakers():
    from serlib.systems.whisper_mlp import choose_layers, train_mlp

    def mark(part, X, y):
        cue = y if part == "train" else (y + 1) % 4  # strong, but only the training speakers'
        X[np.arange(len(y))[:, None], :-1, cue[:, None]] += 4.0
        X[np.arange(len(y)), -1, y] += 1.5  # weaker, and true for every speaker

    X, y = noisy_layers({"train": 400, "val": 200}, mark)
    chosen, layers, model, history, search = choose_layers(
        4, "auto", lambda layers: train_mlp({p: x[:, layers] for p, x in X.items()}, y, 4, seed=0))
    assert (chosen, layers) == ("last", [3])
    assert search["last"] > 0.6 > search["all"]


def test_the_mlp_layer_options_follow_encoder_layer():
    from serlib.systems.whisper_mlp import layer_options

    assert layer_options(7, "auto") == {"all": list(range(7)), "last": [6]}
    assert layer_options(7, "mean") == {"all": list(range(7))}
    assert layer_options(7, "last") == layer_options(7, 6) == {"last": [6]}
    assert layer_options(7, 3) == {"layer-3": [3]}
    with pytest.raises(ValueError, match="layers 0..6"):
        layer_options(7, 9)


def test_the_mlp_head_runs_as_a_registered_model_and_saves_its_weights_without_pickle(prepared_ravdess, tmp_path):
    from safetensors.numpy import load_file

    prepared, config = with_stand_in_embeddings(prepared_ravdess), config_with()
    run_protocol(config, prepared, models=("whisper-mlp",), results=tmp_path, progress=False)
    folder = tmp_path / "ravdess" / "speaker-split" / "whisper-mlp" / "fold-1" / "seed-0"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["layer_search"]) == {"all", "last"} and metrics["input_layers"] in metrics["layer_search"]
    assert len(metrics["layer_weights"]) == len(metrics["layers"]) and abs(sum(metrics["layer_weights"]) - 1) < 1e-3
    head = load_file(str(folder / "head.safetensors"))
    assert {"layer_logits", "input_layers", "input_mean", "input_std"} <= set(head)
    assert list(head["input_layers"]) == metrics["layers"] and head["input_mean"].shape[0] == len(metrics["layers"])
    assert json.loads((folder / "request.json").read_text())["version"] == 2
    assert json.loads((folder / "provenance.json").read_text())["encoder"]["sha256"] == "0" * 64


def stand_in_frames(manifest: pd.DataFrame, *, n_layers: int = 3, dims: int = 8, seed: int = 0):
    """Frame features: noise, except a few frames of layer 1 whose dimension ``label`` is raised."""
    from serlib.features.encoders.frames import FrameSet

    rng = np.random.default_rng(seed)
    labels = sorted(manifest["label"].unique())
    codes = manifest["label"].map({l: i for i, l in enumerate(labels)}).to_numpy()
    lengths = rng.integers(6, 14, len(manifest))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = rng.standard_normal((offsets[-1], n_layers, dims)).astype(np.float16)
    for i, code in enumerate(codes):
        cue = offsets[i] + rng.choice(lengths[i], 3, replace=False)  # the cue sits in 3 frames of the clip
        frames[cue, 1, code % dims] += 4.0
    return FrameSet(manifest=manifest.assign(status="ok"), frames=frames, offsets=offsets,
                    quarantine=pd.DataFrame(columns=["utt_id", "path", "reason", "detail"]),
                    encoder={"backend": "stand-in", "sha256": "0" * 64, "mode": "own"}, key="standin-frames")


def test_the_attentive_head_finds_the_frames_and_the_layer_that_carry_the_label():
    from serlib.systems.whisper_attention import FrameBatches, frame_statistics, train_attentive

    rng = np.random.default_rng(1)
    manifest = pd.DataFrame({"utt_id": [f"u{i}" for i in range(360)], "label": rng.choice(list("abcd"), 360)})
    frames = stand_in_frames(manifest)
    code = {c: i for i, c in enumerate("abcd")}
    clips = {"train": np.arange(0, 300), "val": np.arange(300, 360)}
    y = {p: manifest["label"].map(code).to_numpy()[c] for p, c in clips.items()}
    mean, std = frame_statistics(frames, clips["train"])
    model, history = train_attentive(FrameBatches(frames, clips, mean, std), y, 4, seed=0)
    assert max(h["val_uar"] for h in history) > 0.9
    assert int(model.layer_weights().argmax()) == 1


def test_frame_batches_pad_and_mask_each_clip_and_z_score_with_training_statistics():
    from serlib.systems.whisper_attention import FrameBatches, frame_statistics

    manifest = pd.DataFrame({"utt_id": ["a", "b", "c"], "label": ["x", "y", "x"]})
    frames = stand_in_frames(manifest)
    mean, std = frame_statistics(frames, np.array([0, 1]))
    both = frames.frames[: frames.offsets[2]].astype(np.float64)
    np.testing.assert_allclose(mean, both.mean(axis=0), rtol=1e-4, atol=1e-5)
    x, mask = FrameBatches(frames, {"test": np.array([2, -1])}, mean, std, layers=[1])("test", np.array([0, 1]))
    assert x.shape == (2, frames.lengths[2], 1, 8)
    assert mask[0].all() and mask[1].tolist() == [True] + [False] * (x.shape[1] - 1)  # an unreadable clip: one zero frame
    np.testing.assert_allclose(x[0].numpy(), (frames.clip(2)[:, [1]] - mean[[1]]) / std[[1]], rtol=1e-5, atol=1e-5)
    assert float(x[1].abs().sum()) == 0.0


def test_the_attentive_head_runs_as_a_registered_model(prepared_ravdess, tmp_path):
    from safetensors.numpy import load_file

    from serlib.systems.whisper_attention import STRIDE

    prepared, config = Prepared(prepared_ravdess.scan, prepared_ravdess.features), config_with()
    prepared.__dict__["_frames"] = {(config.encoder.mode, STRIDE): stand_in_frames(prepared.scan.manifest)}
    run_protocol(config, prepared, models=("whisper-attn",), results=tmp_path, progress=False)
    folder = tmp_path / "ravdess" / "speaker-split" / "whisper-attn" / "fold-1" / "seed-0"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["layer_search"]) == {"all", "last"} and metrics["head"]["pooling"] == "attentive-stats"
    assert metrics["test"]["uar"] > 0.5  # the stand-in cue is easy
    head = load_file(str(folder / "head.safetensors"))
    assert {"layer_logits", "pool.score.0.weight", "input_layers", "input_mean", "input_std"} <= set(head)
    assert json.loads((folder / "provenance.json").read_text())["encoder"]["frame_cache"] == "standin-frames"


def test_the_attentive_head_refuses_the_ct2_backend_before_any_work(prepared_ravdess):
    from serlib.systems.whisper_attention import encoder_frames

    config = config_with()
    config.encoder.backend = "ct2"
    with pytest.raises(ValueError, match="only encoder.backend torch"):
        encoder_frames(Prepared(prepared_ravdess.scan, prepared_ravdess.features), config)


def test_with_their_own_statistics_files_score_the_same_whatever_their_source_shifts_and_scales():
    """The transductive option of ``predict --own-statistics``: a recording set's own standardisation takes out an
    offset and a gain common to all its files (another microphone, another level), which training statistics cannot."""
    import torch

    from serlib.systems.linear import LinearHead
    from serlib.systems.whisper_linear import EncoderHeadPredictor
    from serlib.systems.whisper_mlp import EncoderMLPPredictor, build_mlp_head

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in build_mlp_head(2, 1024, 3).state_dict().items()}
    mlp = EncoderMLPPredictor(["a", "b", "c"], {**state, "input_mean": np.zeros((2, 1024), np.float32),
                                                 "input_std": np.ones((2, 1024), np.float32)}, [5, 6], {})
    head = EncoderHeadPredictor(LinearHead(["a", "b", "c"], np.zeros(1024), np.zeros(1024), np.ones(1024),
                                           rng.standard_normal((3, 1024)), np.zeros(3)), {}, "6")
    for predictor, shape in ((mlp, (30, 2, 1024)), (head, (30, 1024))):
        files = rng.standard_normal(shape).astype(np.float32)
        other_source = files * 3.0 + 5.0
        same = predictor.adapted_to(files).predict_arrays(files)
        shifted = predictor.adapted_to(other_source).predict_arrays(other_source)
        assert predictor.adapts and np.abs(same - shifted).max() < 1e-4
        assert np.abs(predictor.predict_arrays(other_source) - same).max() > 0.05  # training statistics cannot
