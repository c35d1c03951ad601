"""Systems are pluggable: a registered name is all the experiment layer needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serlib.config import load_config
from serlib.experiment import run_protocol
from serlib.registry import REGISTRY, get_model, model_table, register
from serlib.runs import write_json

from conftest import fast_overrides


def test_the_report_systems_are_registered_with_the_sections_they_read():
    assert "encoder" not in get_model("tier1").sections and "train" in get_model("tier1").sections
    assert get_model("baseline-svm").sections == ("data", "preprocess", "features")
    for name in ("egemaps-svm", "compare-logreg", "egemaps-svm-spkz"):
        assert get_model(name).kind == "classical"
    assert "transductive" in get_model("compare-svm-spkz").description
    assert set(model_table()["model"]) == set(REGISTRY)


def test_an_unknown_model_is_one_line_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'tier9'; registered models: .*baseline-svm.*tier1"):
        get_model("tier9")


def test_a_new_system_runs_through_the_protocol_without_editing_the_training_loop(prepared_ravdess, tmp_path):
    calls = []

    @register("majority-test", sections=("data",), kind="classical", description="predicts the first class")
    def fit_majority(prepared, assignment, config, out_dir, *, extra, resume, progress):
        calls.append(extra["fold"])
        metrics = {"test": {"uar": 0.25, "accuracy": 0.25}, "best_val_uar": 0.25}
        write_json(out_dir / "metrics.json", metrics)
        return metrics

    try:
        config = load_config(overrides=fast_overrides() + ["data.corpus=ravdess", "data.protocol=speaker-split"])
        first = run_protocol(config, prepared_ravdess, models=("majority-test",), results=tmp_path, progress=False)
        again = run_protocol(config, prepared_ravdess, models=("majority-test",), results=tmp_path, progress=False)
    finally:
        REGISTRY.pop("majority-test")
    assert calls == [1] and list(first["status"].str[:3]) == ["ran"] and list(again["status"]) == ["cached"]
    assert (tmp_path / "ravdess" / "speaker-split" / "majority-test" / "fold-1" / "seed-0" / "request.json").is_file()


def test_looking_up_a_model_imports_no_heavy_library():
    code = "import sys, serlib.registry as r; r.get_model('compare-svm'); print(sorted(m for m in ('torch', 'sklearn', 'opensmile') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
