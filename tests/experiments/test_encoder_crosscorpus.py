"""Cross-corpus tests of the encoder head: standardisation choices and caching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serlib.experiments.encoder_crosscorpus import TRANSDUCTIVE, normalised, run_pair_row, shared_labels, standardise


def test_standardise_z_scores_each_group_with_its_own_statistics():
    X = np.array([[1.0, 10.0], [3.0, 10.0], [100.0, 0.0], [300.0, 0.0]])
    Z = standardise(X, ["a", "a", "b", "b"])
    assert np.allclose(Z[:, 0], [-1, 1, -1, 1]) and np.allclose(Z[:, 1], 0)


def test_only_the_untouched_features_are_not_transductive():
    m = pd.DataFrame({"speaker": ["s1", "s1", "s2", "s2"]})
    X = np.array([[0.0], [2.0], [10.0], [14.0]])
    assert normalised(X, m, "none") is X
    assert np.allclose(normalised(X, m, "speaker").ravel(), [-1, 1, -1, 1])
    assert TRANSDUCTIVE == {"none": False, "corpus": True, "speaker": True}
    with pytest.raises(ValueError, match="normalisation must be one of"):
        normalised(X, m, "global")


def toy_corpus(corpus: str, shift: float, rng: np.random.Generator, labels=("angry", "sad", "happy")):
    rows, feats = [], []
    for s in range(6):
        for k, lab in enumerate(labels):
            for i in range(4):
                rows.append({"utt_id": f"{corpus}{s}{k}{i}", "speaker": f"{corpus}-S{s}", "label": lab,
                             "gender": "MF"[s % 2], "corpus": corpus})
                v = rng.standard_normal((2, 8)) + shift
                v[1, k] += 4.0
                feats.append(v)
    return pd.DataFrame(rows), np.array(feats), {"sha256": "x", "mode": "own", "fingerprint": corpus}


def test_a_row_trains_on_one_corpus_tests_on_all_and_is_reused_for_the_same_request(tmp_path, monkeypatch):
    import serlib.experiments.encoder_crosscorpus as xc
    from serlib.config import load_config

    monkeypatch.setattr(xc, "load_config", lambda path=None: load_config(overrides=["data.protocol=speaker-split"]))
    rng = np.random.default_rng(0)
    data = {"a": toy_corpus("a", 0.0, rng), "b": toy_corpus("b", 3.0, rng, labels=("angry", "sad", "happy", "fear"))}
    classes = shared_labels([data["a"][0], data["b"][0]])
    assert classes == ["happy", "sad", "angry"]
    row = run_pair_row("g", ["a", "b"], "a", classes, "corpus", data=data, results=tmp_path)
    assert set(row["test"]) == {"a", "b"} and row["transductive"] is True and row["layer"] in {"1", "mean"}
    assert row["test"]["b"]["n"] == 6 * 3 * 4 and row["test"]["a"]["uar"] > 0.9
    again = run_pair_row("g", ["a", "b"], "a", classes, "corpus", data=data, results=tmp_path)
    assert again == row


def test_the_page_reads_saved_rows_only_and_leaves_missing_rows_empty(tmp_path, monkeypatch):
    import serlib.experiments.encoder_crosscorpus as xc
    from serlib.config import load_config
    from serlib.experiments.encoder_crosscorpus import off_diagonal_mean, read_matrix

    monkeypatch.setattr(xc, "load_config", lambda path=None: load_config(overrides=["data.protocol=speaker-split"]))
    rng = np.random.default_rng(1)
    data = {"a": toy_corpus("a", 0.0, rng), "b": toy_corpus("b", 1.0, rng)}
    classes = shared_labels([data["a"][0], data["b"][0]])
    assert read_matrix("g", ["a", "b"], "none", tmp_path)[2] == {}
    row = run_pair_row("g", ["a", "b"], "a", classes, "none", data=data, results=tmp_path)
    got_classes, matrix, rows = read_matrix("g", ["a", "b"], "none", tmp_path)
    assert got_classes == classes and set(rows) == {"a"}
    assert matrix.loc["a", "b"] == row["test"]["b"]["uar"] and np.isnan(matrix.loc["b", "a"])
    assert off_diagonal_mean(matrix) == row["test"]["b"]["uar"]


def test_a_matrix_summary_is_the_mean_of_its_diagonal_and_of_the_other_cells_in_percent():
    from serlib.experiments.encoder_crosscorpus import matrix_summary

    matrix = pd.DataFrame([[0.8, 0.3, np.nan], [0.2, 0.6, 0.4], [0.25, 0.35, 0.7]], index=list("abc"), columns=list("abc"))
    assert matrix_summary(matrix) == {"mean diagonal UAR %": 70.0, "mean off-diagonal UAR %": 30.0}
