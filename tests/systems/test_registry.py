"""Systems are pluggable: a registered name is all the experiment layer needs."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from serlib.config import load_config
from serlib.experiments.protocol import run_protocol
from serlib.systems.base import System
from serlib.systems.registry import REGISTRY, get_model, model_table, register
from serlib.core.runs import write_json

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


def test_a_new_system_is_one_module_and_one_registration_line(prepared_ravdess, tmp_path, monkeypatch):
    calls = []
    module = types.ModuleType("majority_system")

    def fit(prepared, split, config, run_dir, *, extra, resume, progress):
        calls.append(extra["fold"])
        metrics = {"test": {"uar": 0.25, "accuracy": 0.25}, "best_val_uar": 0.25}
        write_json(run_dir / "metrics.json", metrics)
        return metrics

    module.fit = fit
    monkeypatch.setitem(sys.modules, "majority_system", module)
    register(System("majority-test", "Majority class", "majority_system", "classical", ("data",),
                    description="predicts the first class"))
    try:
        config = load_config(overrides=fast_overrides() + ["data.corpus=ravdess", "data.protocol=speaker-split"])
        first = run_protocol(config, prepared_ravdess, models=("majority-test",), results=tmp_path, progress=False)
        again = run_protocol(config, prepared_ravdess, models=("majority-test",), results=tmp_path, progress=False)
        assert get_model("majority-test").export(tmp_path) is None  # a system that does not ship says so
    finally:
        REGISTRY.pop("majority-test")
    assert calls == [1] and list(first["status"].str[:3]) == ["ran"] and list(again["status"]) == ["cached"]
    assert (tmp_path / "ravdess" / "speaker-split" / "majority-test" / "fold-1" / "seed-0" / "request.json").is_file()


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="registered twice"):
        register(System("tier1", "Tier-1 again", "serlib.systems.tier1.system", "network", None))


def test_looking_up_a_model_imports_no_heavy_library():
    code = "import sys, serlib.systems.registry as r; r.get_model('compare-svm'); print(sorted(m for m in ('torch', 'sklearn', 'opensmile') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
