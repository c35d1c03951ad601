"""No model file and no weights file can make serlib unpickle code through the Demucs route.

A checkpoint's embedded config and a shipped model's sidecar may only name a
pretrained Demucs model; the Demucs weights themselves are read without pickle
code (``weights_only=True`` with Demucs' model classes only, or safetensors with
a class looked up among those three).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import serlib.serve.shipped
from serlib.cli import main
from serlib.config import ConfigError, config_from_model_file
from serlib.features.preprocess import DemucsUnavailable, load_pretrained_demucs
from serlib.serve.shipped import export_run


class _Payload:
    """Unpickling this object touches a marker file: proof that code from a data file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_th(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.th"
    torch.save({"klass": _Payload(marker), "args": [], "kwargs": {}, "state": {}}, path)
    return path, marker


@pytest.fixture(scope="module")
def run(tier1_run) -> Path:
    return tier1_run


@pytest.fixture
def clip(synthetic_ravdess) -> Path:
    return sorted(synthetic_ravdess.glob("Actor_05/*.wav"))[0]


def _with_demucs(config: dict, model: str) -> dict:
    return {**config, "preprocess": {**config["preprocess"], "denoise": "demucs", "demucs_model": model}}


def test_a_pickled_payload_in_demucs_weights_is_refused_without_running(evil_th):
    path, marker = evil_th
    with pytest.raises(DemucsUnavailable) as err:
        load_pretrained_demucs(str(path))
    assert not marker.exists()
    assert "posix.system" in str(err.value) and "weights_only=False" not in str(err.value)
    with pytest.raises(DemucsUnavailable):  # a folder holding it is refused the same way
        load_pretrained_demucs(str(path.parent))
    assert not marker.exists()


def test_a_safetensors_file_naming_another_class_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "evil.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"klass": "os.system", "args": '["true"]', "kwargs": "{}"})
    with pytest.raises(DemucsUnavailable, match="names the class 'os.system'"):
        load_pretrained_demucs(str(path))


def test_a_real_demucs_model_round_trips_through_safetensors(tmp_path):
    from demucs.htdemucs import HTDemucs
    from safetensors.torch import save_file

    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], channels=8, depth=2, t_layers=1, segment=2)
    args, kwargs = model._init_args_kwargs
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"klass": "demucs.htdemucs.HTDemucs", "args": json.dumps(list(args)),
                        "kwargs": json.dumps({k: v for k, v in kwargs.items()})})
    loaded = load_pretrained_demucs(str(path))
    assert list(loaded.sources) == ["drums", "bass", "other", "vocals"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


@pytest.mark.parametrize("named", ["evil.th", "./htdemucs", "/tmp/x/model.safetensors", "../weights"])
def test_a_model_file_may_name_a_pretrained_demucs_model_but_never_a_path(fast_config, named):
    values = _with_demucs(fast_config.to_dict(), named)
    with pytest.raises(ConfigError, match="may only name a pretrained Demucs model"):
        config_from_model_file(values, "x.pt")
    assert config_from_model_file(_with_demucs(fast_config.to_dict(), "htdemucs"), "x.pt").preprocess.denoise == "demucs"
    assert config_from_model_file(values, "x.pt", demucs_model="mine.th").preprocess.demucs_model == "mine.th"


def test_predict_and_evaluate_refuse_a_checkpoint_that_names_a_weights_file(run, clip, evil_th, tmp_path, capsys):
    path, marker = evil_th
    state = torch.load(next(run.glob("best_uar_*.pt")), weights_only=True)
    state["config"] = _with_demucs(state["config"], str(path))
    crafted = tmp_path / "crafted.pt"
    torch.save(state, crafted)
    assert main(["predict", str(crafted), str(clip)]) != 0
    assert main(["evaluate", str(crafted), "--all-clips"]) != 0
    err = capsys.readouterr().err
    assert err.count("may only name a pretrained Demucs model") == 2 and "Traceback" not in err
    assert not marker.exists()
    # the user's own --demucs-model goes through the same safe reader: refused, never run
    assert main(["predict", str(crafted), str(clip), "--demucs-model", str(path)]) != 0
    assert "posix.system" in capsys.readouterr().err and not marker.exists()


def test_predict_refuses_a_sidecar_that_names_a_weights_file(run, clip, evil_th, tmp_path, monkeypatch, capsys):
    path, marker = evil_th
    models = tmp_path / "models"
    export_run(run, "tiny", out_dir=models)
    sidecar = models / "tiny.json"
    meta = json.loads(sidecar.read_text())
    meta["config"] = _with_demucs(meta["config"], str(path))
    sidecar.write_text(json.dumps(meta))
    monkeypatch.setattr(serlib.serve.shipped, "MODELS_DIR", models)
    assert main(["predict", "--model", str(sidecar), str(clip)]) != 0
    assert main(["predict", "--model", "tiny", str(clip)]) != 0
    err = capsys.readouterr().err
    assert err.count("may only name a pretrained Demucs model") == 2 and not marker.exists()
    assert np.all([line.startswith("serlib") or line.startswith("error") for line in err.strip().splitlines()])
