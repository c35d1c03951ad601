"""The models shipped in the package work from a fresh clone: no corpus, no training, valid JSON out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from serlib.cli import main
from serlib.serve.shipped import MODELS_DIR, list_models

SHIPPED = sorted(p.stem for p in MODELS_DIR.glob("*.json"))


def test_every_corpus_with_real_results_ships_a_model_and_every_sidecar_is_clean():
    assert {"ravdess", "emodb", "cremad", "savee", "urdu"} <= set(SHIPPED)
    assert "tess" not in SHIPPED  # CC BY-NC-ND: no derivatives
    kinds = {m.name: m.kind for m in list_models()}
    assert kinds["ravdess"] == "fusion" and kinds["ravdess-mlp"] == "encoder-mlp"  # RAVDESS's best system, and its head
    listed = list_models()
    assert len(listed) == len(SHIPPED)
    general = {m.name: m.meta for m in listed}["general"]  # several corpora, never TESS's clips in its weights
    assert general["model"] == "whisper-mlp-multi" and "tess" not in general["training_corpora"]
    assert len(general["training_corpora"]) == 5 and general["labels"] == ["neutral", "happy", "sad", "angry"]
    for name in SHIPPED:
        text = (MODELS_DIR / f"{name}.json").read_text()
        assert '"/work' not in text and '"/root' not in text and '"/home' not in text  # no machine paths
        assert (MODELS_DIR / f"{name}.safetensors").stat().st_size < 3 * 2**20


def test_predict_with_a_shipped_model_prints_one_json_line_per_file(tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    t = np.arange(16000) / 16000
    clip = tmp_path / "tone.wav"
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), 16000)
    try:
        code = main(["predict", "--model", "ravdess", str(clip), "--format", "json"])
    except SystemExit as exit_:  # pragma: no cover - argparse
        code = exit_.code
    out, err = capsys.readouterr()
    if code == 2 and "Whisper" in err:
        pytest.skip(f"the Whisper-base encoder is not installed here: {err.strip()}")
    assert code == 0, err
    row = json.loads(out.strip().splitlines()[0])
    labels = json.loads((MODELS_DIR / "ravdess.json").read_text())["labels"]
    assert row["label"] in labels and abs(sum(row["probabilities"].values()) - 1) < 1e-3
