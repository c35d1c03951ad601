"""Summaries over folds x seeds count only complete seeds."""

from __future__ import annotations

import pandas as pd
import pytest

from serlib.experiments.protocol import summarize_runs


def runs_table(rows):
    base = {"corpus": "ravdess", "protocol": "emobox", "model": "tier1", "n_train": 100, "n_val": 20, "n_test": 40,
            "best_val_uar": 0.5, "test_accuracy": 0.5, "wall_seconds": 60.0}
    return pd.DataFrame([{**base, "fold": f, "seed": s, "test_uar": u} for f, s, u in rows])


def test_a_seed_with_missing_folds_is_left_out_of_the_mean():
    runs = runs_table([(1, 0, 0.40), (2, 0, 0.60), (1, 1, 0.90)])  # seed 1 has only fold 1 so far
    row = summarize_runs(runs).iloc[0]
    assert (row.folds, row.seeds, row.runs) == (2, 1, 2)
    assert row.test_uar == pytest.approx(0.50)


def test_mean_and_sample_std_over_folds_and_seeds():
    runs = runs_table([(1, 0, 0.4), (2, 0, 0.6), (1, 1, 0.5), (2, 1, 0.7)])
    row = summarize_runs(runs).iloc[0]
    assert row.test_uar == pytest.approx(0.55)
    assert row.test_uar_std == pytest.approx(pd.Series([0.4, 0.6, 0.5, 0.7]).std())
    assert row.compute_minutes == pytest.approx(4.0)


def test_copy_caveats_appear_only_for_the_known_defective_copies():
    from serlib.report.pages import copy_caveat

    assert "truncated" in copy_caveat("ravdess", "4cbe72657a19eee2")
    assert "NOT comparable" in copy_caveat("emodb", "5f17c5b9d0b75245")
    assert copy_caveat("ravdess", "0000000000000000") == ""
    assert copy_caveat("cremad", "4cbe72657a19eee2") == ""


def test_saved_benchmarks_carry_their_provenance_and_show_one_row_per_measure(tmp_path):
    from serlib.report.pages import benchmark_table
    from serlib.core.runs import save_benchmark

    save_benchmark(tmp_path / "benchmarks" / "train_throughput.json",
                   {"ravdess": {"seconds_per_epoch": 8.1, "inference_clips_per_s": 900.0}, "cremad": {"train_clips": 4248}})
    save_benchmark(tmp_path / "benchmarks" / "prepare_throughput.json", {"cold_seconds": 27.8})
    table = benchmark_table(tmp_path)
    assert len(table) == 4
    row = table[(table.benchmark == "train_throughput") & (table.measure == "ravdess · seconds_per_epoch")].iloc[0]
    assert row.value == "8.1"  # formatted text: nested measures joined with ·, never a raw dict
    assert table["git commit"].str.len().gt(0).all() and table["torch threads"].notna().all()
    assert benchmark_table(tmp_path / "nothing").empty


def test_a_multi_corpus_head_needs_other_corpora_and_a_single_corpus_head_refuses_them(prepared_ravdess):
    from serlib.config import load_config
    from serlib.experiments.protocol import plan_protocol
    from serlib.systems.registry import recipe_overlays

    plain = load_config("configs/ravdess.yaml", *recipe_overlays("whisper-mlp-multi"),
                        overrides=["data.extra_train=[]", "data.protocol=speaker-split"])
    with pytest.raises(ValueError, match="data.extra_train is empty"):
        plan_protocol(plain, prepared_ravdess, models=["whisper-mlp-multi"])
    several = load_config("configs/ravdess.yaml", overrides=["data.extra_train=[emodb]",
                                                             "data.protocol=speaker-split"])
    with pytest.raises(ValueError, match="would ignore it"):
        plan_protocol(several, prepared_ravdess, models=["whisper-mlp"])
    with pytest.raises(ValueError, match="recipe"):  # a -multi head under a config loaded without its recipe
        plan_protocol(several, prepared_ravdess, models=["whisper-mlp-multi"])
