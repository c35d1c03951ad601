"""Runs made from uncommitted code are found, and re-run under the config they recorded, fusions last."""

from __future__ import annotations

import json
from pathlib import Path

from serlib.experiments.reruns import dirty_runs, rerun_specs


def _run_folder(results: Path, corpus: str, model: str, fold: int, commit: str, uar: float = 0.5) -> Path:
    folder = results / corpus / "speaker-cv" / model / f"fold-{fold}" / "seed-0"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"test": {"uar": uar, "accuracy": uar},
                                                     "sizes": {"train": 1, "val": 1, "test": 1}}))
    (folder / "provenance.json").write_text(json.dumps({"git_commit": commit, "data_fingerprint": "f"}))
    (folder / "config.yaml").write_text(f"name: {corpus}\ndata:\n  corpus: {corpus}\n  protocol: speaker-cv\n")
    return folder


def test_only_runs_recording_a_dirty_commit_are_listed(tmp_path):
    _run_folder(tmp_path, "emodb", "compare-svm", 1, "abc")
    _run_folder(tmp_path, "emodb", "compare-svm", 2, "abc+dirty")
    assert dirty_runs(tmp_path)[["model", "fold"]].values.tolist() == [["compare-svm", 2]]


def test_each_rerun_keeps_its_recorded_config_and_a_fusion_comes_after_what_it_reads(tmp_path):
    results = tmp_path / "results"
    _run_folder(results, "cremad", "whisper-fusion-pooled", 1, "abc+dirty")
    _run_folder(results, "cremad", "whisper-mlp", 1, "abc+dirty")
    _run_folder(results, "ravdess", "tier1-plus-logmel", 2, "abc+dirty")
    specs = rerun_specs(dirty_runs(results), config_dir=tmp_path / "configs", results=results)
    order = [s.name or s.model for s in specs]
    assert order.index("whisper-mlp") < order.index("whisper-fusion-pooled")
    ablation = specs[order.index("tier1-plus-logmel")]
    assert (ablation.model, ablation.name, ablation.fold, ablation.retrain) == ("tier1", "tier1-plus-logmel", 1, True)
    assert all(Path(s.config_path).read_text().startswith(f"name: {s.corpus}") for s in specs)


def test_reruns_can_be_narrowed_to_a_corpus_and_a_pattern(tmp_path):
    from serlib.experiments.reruns import select_runs

    for model, fold in (("tier1-plus-stats", 1), ("tier1-plus-stats", 2), ("compare-svm", 1)):
        _run_folder(tmp_path, "ravdess", model, fold, "abc+dirty")
    _run_folder(tmp_path, "emodb", "compare-svm", 1, "abc+dirty")
    runs = dirty_runs(tmp_path)
    assert len(select_runs(runs, ["ravdess"])) == 3
    chosen = select_runs(runs, None, "ravdess/*/tier1-plus-*/fold-2/*")
    assert chosen[["model", "fold"]].values.tolist() == [["tier1-plus-stats", 2]]
