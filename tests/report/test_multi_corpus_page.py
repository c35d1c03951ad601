"""The multi-corpus page, specified on hand-made run folders: held-out corpora with their transductive twin, the
single-corpus matrix beside them, paired in-corpus differences, the selection record and a verdict read off runs."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from serlib.report import multi_corpus as mc
from serlib.report.comparisons import paired_difference
from serlib.systems.whisper_multi import OWN_STATISTICS_FILE
from test_pages import write_protocol, write_run

HELD_OUT = {1: ["a", "b", "c", "d", "e", "f"]}
CORPORA = ["ravdess", "emodb"]


@pytest.fixture
def held_out(tmp_path):
    for k, corpus in enumerate(CORPORA):
        write_protocol(tmp_path, {"whisper-mlp-multi": (0.7, [0, 1, 2]), "whisper-logreg-multi": (0.6, [0]),
                                  "whisper-logreg-loco-multi": (0.8, [0])},
                       corpus=corpus, protocol="loco", folds=HELD_OUT, seed=k)
        for seed in (0, 1, 2):  # the transductive twin: here every prediction right
            folder = tmp_path / corpus / "loco" / "whisper-mlp-multi" / "fold-1" / f"seed-{seed}"
            own = pd.read_csv(folder / "predictions.csv").assign(predicted=lambda f: f["true"])
            own.to_csv(folder / OWN_STATISTICS_FILE, index=False)
        for model, record in (("whisper-logreg-loco-multi", {"corpus_search_uar": {
                "layer-3/C=0.001": {"mean": 0.61, "x": 0.6, "y": 0.62}, "layer-4/C=1": {"mean": 0.55}}}),
                              ("whisper-logreg-multi", {"layer": "5"})):
            provenance = tmp_path / corpus / "loco" / model / "fold-1" / "seed-0" / "provenance.json"
            provenance.write_text(json.dumps({**json.loads(provenance.read_text()), **record}))
    matrix = pd.DataFrame([[90.0, 40.0], [50.0, 95.0]], index=CORPORA, columns=CORPORA)
    return mc.held_out_results(tmp_path, CORPORA, n_resamples=100), matrix


def test_a_held_out_corpus_shows_every_head_its_transductive_twin_and_the_single_corpus_heads(held_out):
    held, matrix = held_out
    table = mc.loco_table(held, matrix=matrix).set_index("held-out corpus")
    assert list(table.index) == ["RAVDESS", "EmoDB"] and len(table.columns) + 1 <= 9
    assert table.loc["RAVDESS", "test speakers"] == 6
    for column in ("logistic regression", "MLP", "logistic regression, chosen on held-out corpora (post hoc)"):
        assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", table.loc["EmoDB", column])
    assert table.loc["EmoDB", "MLP, own statistics (transductive)"].startswith("100.0")
    assert table.loc["EmoDB", "one corpus: mean / best"] == "40.0 / 40.0"  # the other corpus's cell only


def test_the_single_corpus_matrix_gains_a_row_for_the_other_corpora_together(held_out):
    held, matrix = held_out
    table = mc.matrix_with_loco(held, CORPORA, matrix)
    row = "the other five (chosen on held-out corpora; post hoc)"
    assert list(table.index) == ["RAVDESS", "EmoDB", row]
    assert table.loc["RAVDESS", "EmoDB"] == 40.0
    assert table.loc[row, "EmoDB"] == round(held["emodb"].uar("whisper-logreg-loco-multi"), 1)


def test_the_choice_made_on_held_out_corpora_is_shown_beside_the_one_made_on_speakers(held_out):
    held, _ = held_out
    table = mc.corpus_choice_table(held).set_index("held-out corpus")
    assert table.loc["EmoDB", "chosen on held-out corpora: layer / C"] == "3 / 0.001"  # the best mean
    assert table.loc["EmoDB", "mean UAR over the corpora held out in turn"] == 61.0
    assert table.loc["EmoDB", "chosen on validation speakers: layer"] == "5"


def test_the_verdict_gives_every_head_marks_the_post_hoc_one_and_says_which_number_is_transductive(held_out):
    held, matrix = held_out
    text = mc.verdict(held, {}, matrix)
    means = mc.loco_means(held)
    assert f"logistic-regression head scores {means['whisper-logreg-multi']:.1f} % UAR" in text
    assert f"MLP head {means['whisper-mlp-multi']:.1f} %" in text and "mean over 2 held-out corpora" in text
    assert f"gives {means['whisper-logreg-loco-multi']:.1f} % (post hoc" in text
    assert "(transductive) lifts the MLP head to 100.0 %" in text
    assert "45.0 % for a head trained on one other corpus" in text  # (40 + 50) / 2
    for word in ("issue", "session", "target", "previous version"):
        assert word not in text.lower()


def test_in_corpus_differences_pair_the_heads_on_matched_seeds(tmp_path):
    write_protocol(tmp_path, {"whisper-mlp": (0.6, [0, 1, 2]), "whisper-mlp-multi": (0.8, [0, 1]),
                              "whisper-logreg": (0.5, [0])})
    table = mc.in_corpus_table(mc.in_corpus_results(tmp_path, {"emodb": "speaker-cv"}, n_resamples=100))
    assert list(table["head"]) == ["layer-weighted MLP"]  # the other heads have no multi-corpus runs here
    row = table.iloc[0]
    assert row["several − one [CI] (seeds)"].endswith("(2 matched (seed 2 unmatched, left out))")
    assert row["test speakers"] == 6 and len(table.columns) <= 9


@pytest.fixture
def two_stage(tmp_path):
    """EmoDB with the MLP alone, on several corpora and on several then its own speakers; the two-stage runs record
    their stages' validation UAR (seed 0 kept the second stage, seed 1 did not)."""
    write_protocol(tmp_path, {"whisper-mlp": (0.6, [0, 1]), "whisper-mlp-multi": (0.5, [0, 1]),
                              "whisper-mlp-twostage-multi": (0.9, [0, 1])})
    for folder in (tmp_path / "emodb" / "speaker-cv" / "whisper-mlp-twostage-multi").glob("fold-*/seed-*"):
        kept = folder.name == "seed-0"
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["second_stage"] = {"first_val_uar": 0.5, "second_val_uar": 0.7 if kept else 0.4, "kept": kept}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return mc.in_corpus_results(tmp_path, {"emodb": "speaker-cv"}, n_resamples=100)


def test_the_two_stage_head_is_paired_with_the_single_corpus_mlp(two_stage):
    table = mc.in_corpus_table(two_stage).set_index("head")
    assert list(table.index) == ["layer-weighted MLP", "layer-weighted MLP, two stages (post hoc)"]
    assert table.loc["layer-weighted MLP, two stages (post hoc)", "one corpus, mean of folds"] == \
        table.loc["layer-weighted MLP", "one corpus, mean of folds"]


def test_the_second_stage_record_counts_the_runs_that_kept_it(two_stage):
    row = mc.second_stage_table(two_stage).iloc[0]
    runs = len(two_stage["emodb"].systems["whisper-mlp-twostage-multi"].used)
    assert row["corpus"] == "EmoDB" and row["runs"] == runs and row["second stage kept"] == runs // 2
    assert row["validation UAR, first stage"] == 50.0 and row["validation UAR, second stage"] == 55.0
    assert row["test: two stages − one [CI] (seeds)"].startswith("+")  # 0.9 against 0.5 correct


def test_the_in_corpus_verdict_pairs_each_multi_corpus_mlp_head_with_the_corpus_alone(two_stage):
    text = mc.verdict({}, two_stage)
    one = paired_difference(two_stage["emodb"], "whisper-mlp-multi", "whisper-mlp")
    two = paired_difference(two_stage["emodb"], "whisper-mlp-twostage-multi", "whisper-mlp")
    assert f"training on the other corpora too changes it by EmoDB {one.cell()}" in text
    assert f"with a second stage on the corpus's own speakers (post hoc) EmoDB {two.cell()}." in text
    assert one.difference < 0 < two.difference


def test_the_in_corpus_figure_draws_one_bar_per_head_and_corpus(two_stage):
    import matplotlib

    matplotlib.use("Agg")
    fig = mc.in_corpus_figure(two_stage)
    bars = [p for p in fig.axes[0].patches]
    assert len(bars) == 3 and bars[2].get_height() == pytest.approx(
        100 * two_stage["emodb"].systems["whisper-mlp-twostage-multi"].bootstrap.uar)


def test_the_selection_record_holds_each_option_and_its_mean(tmp_path):
    rng = np.random.default_rng(0)
    for option, corpus_uar in {"plain": (0.5, 0.7), "balanced": (0.6, 0.9)}.items():
        for corpus, accuracy in zip(CORPORA, corpus_uar):
            write_run(tmp_path / option, corpus, "emobox", "whisper-mlp-multi", 1, 0, ["s1"], accuracy=accuracy,
                      rng=rng)
    table = mc.selection_table(tmp_path).set_index("option")
    assert list(table.index) == ["plain", "balanced"] and list(table.columns) == ["RAVDESS", "EmoDB", "mean"]
    assert table.loc["balanced", "mean"] == pytest.approx(table.loc["balanced", ["RAVDESS", "EmoDB"]].mean(), abs=0.06)


def test_nothing_run_gives_a_sentence_not_an_error(tmp_path):
    held = mc.held_out_results(tmp_path, CORPORA)
    assert held == {}
    inside = mc.in_corpus_results(tmp_path, {"emodb": "speaker-cv"})
    assert mc.verdict(held, inside) == "No run of the multi-corpus heads yet."
    assert mc.in_corpus_table(inside).empty and mc.second_stage_table(inside).empty
    assert mc.loco_table(held).empty and mc.corpus_choice_table(held).empty
    shutil.rmtree(tmp_path)
