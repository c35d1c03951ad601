"""The summary page, specified on hand-made run folders: one convention (pooled UAR, speaker CI), "best" never
post hoc, paired differences on matched seeds, few test speakers marked, tables that fit, a verdict read off runs."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from serlib.report import comparisons, pages as report, summary
from test_pages import write_protocol

FEW = {1: ["s1"], 2: ["s2"]}  # two test speakers in all


@pytest.fixture
def primary(tmp_path):
    write_protocol(tmp_path, {"tier1": (0.55, [0, 1, 2]), "tier1plus": (0.65, [0, 1, 2]), "baseline-svm": (0.5, [0]),
                              "compare-svm": (0.6, [0]), "whisper-mlp": (0.9, [0, 1, 2]),
                              "whisper-fusion": (0.7, [0, 1]), "whisper-fusion-pooled": (0.99, [0, 1])})
    write_protocol(tmp_path, {"tier1": (0.5, [0]), "compare-svm": (0.6, [0]), "whisper-logreg": (0.8, [0])},
                   corpus="tess", folds=FEW, seed=3)
    return report.summary_results(tmp_path, n_resamples=100), tmp_path


def test_a_post_hoc_system_is_marked_and_never_the_best(primary):
    prim, _ = primary
    emodb = prim["emodb"]
    assert emodb.systems["whisper-fusion-pooled"].pooled_uar > emodb.systems["whisper-mlp"].pooled_uar
    assert emodb.best(None) == "whisper-mlp"
    assert comparisons.system_label("whisper-fusion-pooled").endswith("(post hoc)")
    assert summary.representatives(emodb) == {"Tier-1 (reproduced)": "tier1", "Tier-1+": "tier1plus",
                                              "best classical": "compare-svm", "best Whisper-base": "whisper-mlp"}


def test_the_headline_table_fits_and_marks_intervals_on_few_speakers(primary):
    prim, _ = primary
    table = summary.headline_table(prim).set_index("corpus")
    assert len(table.columns) + 1 <= 9
    assert list(table.index) == ["TESS", "EmoDB"]  # the corpus order of every page
    assert table.loc["EmoDB", "test speakers"] == "6" and table.loc["TESS", "test speakers"] == "2 †"
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", table.loc["EmoDB", "Tier-1 (reproduced)"])
    assert table.loc["TESS", "Tier-1 (reproduced)"].endswith(" †")
    assert table.loc["EmoDB", "best Whisper-base"].startswith("Whisper-base + layer-weighted MLP: ")
    assert table.loc["TESS", "Tier-1+"] == "not run"


def test_paired_differences_use_only_the_seeds_both_seeded_systems_have(primary):
    prim, _ = primary
    d = comparisons.paired_difference(prim["emodb"], "whisper-fusion", "whisper-mlp")
    assert d.seeds == "2 matched (seed 2 unmatched, left out)"
    assert comparisons.paired_difference(prim["emodb"], "whisper-mlp", "compare-svm").seeds == \
        "3 (the other system is deterministic)"
    pr = prim["emodb"]
    matched, _, _ = comparisons.matched_seeds(pr.systems["whisper-mlp"], pr.systems["whisper-fusion"])
    assert sorted(matched["seed"].unique()) == [0, 1]


def test_the_difference_tables_hold_one_row_per_system_and_mark_the_reference(primary):
    prim, _ = primary
    table = summary.difference_table(prim, "best classical").set_index("system")
    assert table.loc["ComParE + linear SVM", "EmoDB"] == "reference"
    assert re.fullmatch(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", table.loc["Tier-1", "EmoDB"])
    assert table.loc["Tier-1", "TESS"].endswith("†")
    assert len(table.columns) + 1 <= 9
    against_tier1 = summary.difference_table(prim, "tier1").set_index("system")
    assert (against_tier1.loc["Tier-1"] == "reference").all()


def test_a_comparison_on_fewer_than_five_test_speakers_gets_no_p_value(primary):
    prim, _ = primary
    paired = comparisons.paired_table(prim["tess"]).loc["Tier-1 vs best baseline"]
    assert paired["one-sided p (A > B)"] == "—" and "no p-value" in paired["reading"]
    emodb = comparisons.paired_table(prim["emodb"]).loc["Tier-1 vs best baseline"]
    assert emodb["one-sided p (A > B)"] != "—"


def test_p_values_have_three_significant_figures():
    assert [comparisons.format_p(p) for p in (0.5, 0.0312345, 0.000499750)] == ["0.500", "0.0312", "0.000500"]


def test_the_verdict_is_read_off_the_runs(primary):
    prim, results = primary
    text = summary.verdict(prim, summary.anchor_table(results, n_resamples=50))
    assert 3 <= text.count(". ") + 1 <= 7
    assert "on 2 of 2 corpora" in text and "TESS test on fewer than 5 speakers" in text
    best = prim["emodb"].systems["whisper-mlp"].pooled_uar
    assert f"{100 * best:.1f} % (EmoDB)" in text
    assert summary.verdict({}) == "No corpus has a complete set of runs yet."


def test_emobox_is_compared_only_on_its_own_folds(primary):
    prim, results = primary
    write_protocol(results, {"whisper-mlp": (0.9, [0])}, corpus="ravdess", protocol="emobox", seed=9)
    anchors = summary.anchor_table(results, n_resamples=50).set_index("corpus")
    assert anchors.loc["RAVDESS", "our best (pooled UAR [CI])"].startswith("Whisper-base + layer-weighted MLP: ")
    assert anchors.loc["RAVDESS", "speaker-independent?"] == "yes"
    assert anchors.loc["EmoDB", "speaker-independent?"] == "no"
    assert anchors.loc["EmoDB", "our best (pooled UAR [CI])"] == "not run on these folds"  # speaker-cv runs only
    assert len(anchors.columns) + 1 <= 9


def test_the_previous_system_is_never_called_comparable():
    table = summary.previous_system_table().set_index("corpus")
    assert table.loc["RAVDESS", "published UAR %"] == "72.0 (validation)"
    assert table.loc["RAVDESS", "comparable with ours?"].startswith("not comparable")
    assert table.loc["CREMA-D", "comparable with ours?"].startswith("only roughly")


def test_the_full_grid_has_both_figures_and_a_single_fold_says_so(primary):
    prim, _ = primary
    grid = summary.full_grid(prim)
    assert set(grid["corpus"]) == {"EmoDB", "TESS"} and (grid["test speakers"] > 0).all()
    assert grid.loc[grid["system"].str.endswith("(post hoc)"), "post hoc"].eq("yes").all()
    view = summary.folds_view(grid.assign(**{"std of folds %": None})).set_index("system")
    assert view.loc["Tier-1", "EmoDB"].endswith("(one fold)")


def test_the_friedman_test_ranks_distinct_systems_only(tmp_path):
    systems = {m: (0.4 + 0.05 * i, [0]) for i, m in enumerate(summary.DISTINCT_SYSTEMS)}
    systems["whisper-fusion"] = (0.99, [0])
    for k, corpus in enumerate(("emodb", "urdu", "tess")):
        write_protocol(tmp_path, systems, corpus=corpus, seed=k)
    across = summary.distinct_friedman(report.summary_results(tmp_path, n_resamples=50))
    assert across.result is not None and "late fusion" not in " ".join(across.scores.columns)
    ranks = summary.rank_table(across)
    assert ranks["average rank"].iloc[0] <= ranks["average rank"].iloc[-1]


def test_the_headline_figure_labels_every_corpus_with_its_test_speakers(primary):
    prim, _ = primary
    fig = summary.plot_headline(prim)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["TESS\n2 test speakers †", "EmoDB\n6 test speakers"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "best Whisper-base" in legend and "chance" in legend
    plt.close(fig)


def test_a_gap_between_the_two_conventions_is_explained_where_it_is_large(primary):
    prim, _ = primary
    assert summary.convention_gaps(prim, points=100) == ""
    text = summary.convention_gaps(prim, points=0)
    assert text.startswith("The pooled UAR and the mean of folds differ by up to") and "EmoDB" in text


def test_a_shown_table_prints_each_float_column_with_the_decimals_its_values_have():
    from serlib.report.summary import show

    table = pd.DataFrame({"corpus": ["RAVDESS", "EmoDB"], "UAR": [70.0, 77.7], "runs": [18.0, 30.0],
                          "p": [0.0312, float("nan")], "minutes": ["—", 12.5]})  # the last: floats among text
    html = show(table).to_html()
    assert ">70.0<" in html and ">77.7<" in html and ">18<" in html and ">0.031<" in html and ">—<" in html
    assert ">12.5<" in html
    assert "000000" not in html


def test_the_full_grid_marks_few_speakers_and_a_system_post_hoc_on_one_corpus_only():
    row = {"protocol": "emobox", "pooled UAR %": 81.0, "CI low %": 78.0, "CI high %": 84.0}
    grid = pd.DataFrame([{**row, "corpus": "SAVEE", "system": "Whisper-base + layer-weighted MLP", "post hoc": "yes",
                          "test speakers": 4},
                         {**row, "corpus": "RAVDESS", "system": "Whisper-base + layer-weighted MLP", "post hoc": "no",
                          "test speakers": 24}])
    view = summary.grid_view(grid).set_index("system")
    assert view.loc["Whisper-base + layer-weighted MLP", "SAVEE"] == "81.0 [78.0, 84.0] † (post hoc here)"
    assert view.loc["Whisper-base + layer-weighted MLP", "RAVDESS"] == "81.0 [78.0, 84.0]"
