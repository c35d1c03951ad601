"""The logistic head for unseen corpora chooses its layer and C on held-out training corpora; corpus weights count
only the clips a head trains on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serlib.features.multi_corpus import build_table
from serlib.systems.whisper_multi import select_on_corpora, training_weights

CLASSES = ["neutral", "angry"]


def corpus(name: str, flip: float, seed: int, speakers: int = 6, per_speaker: int = 20):
    """Two layers: layer 0 carries the class with a corpus-specific sign (``flip``), layer 1 the same way
    everywhere but with more noise."""
    rng = np.random.default_rng(seed)
    rows = [{"utt_id": f"{name}{s}-{k}", "label": CLASSES[k % 2], "speaker": f"s{s}"}
            for s in range(speakers) for k in range(per_speaker)]
    usable = pd.DataFrame(rows)
    sign = np.where(usable["label"] == "angry", 1.0, -1.0)[:, None]
    features = np.stack([flip * sign * 2.0 + rng.standard_normal((len(usable), 3)),
                         sign * 1.0 + rng.standard_normal((len(usable), 3)) * 1.5], axis=1).astype(np.float32)
    return usable, features


@pytest.fixture
def held_out_table():
    """A held-out target (every clip test) and three training corpora whose layer 0 disagree on the sign."""
    target, t_features = corpus("t", 1.0, 0)
    extras = {name: (*corpus(name, flip, seed), f"fp-{name}")
              for name, flip, seed in (("a", 1.0, 1), ("b", -1.0, 2), ("c", 1.0, 3))}
    split = pd.Series("test", index=target.index, dtype=object)
    return build_table(target, split, t_features, "t", extras, val_fraction=0.2, seed=0)


def test_the_layer_that_carries_to_other_corpora_wins_over_one_that_does_not(held_out_table):
    layer, c_grid, search = select_on_corpora(held_out_table.features, held_out_table, CLASSES, [0, 1],
                                              c_grid=(0.01, 1.0))
    assert layer == 1 and len(c_grid) == 1
    assert set(search) == {"layer-0/C=0.01", "layer-0/C=1", "layer-1/C=0.01", "layer-1/C=1"}
    assert set(search["layer-1/C=1"]) == {"mean", "a", "b", "c"}  # the held-out target is never scored
    assert search["layer-1/C=1"]["mean"] > search["layer-0/C=1"]["mean"]


def test_the_choice_never_reads_a_test_clip(held_out_table):
    first = select_on_corpora(held_out_table.features, held_out_table, CLASSES, [0, 1], c_grid=(0.1,))
    scrambled = held_out_table.features.copy()
    test = (held_out_table.assignment == "test").to_numpy()
    scrambled[test] = np.random.default_rng(9).standard_normal(scrambled[test].shape) * 100
    assert select_on_corpora(scrambled, held_out_table, CLASSES, [0, 1], c_grid=(0.1,)) == first


def test_one_training_corpus_is_refused_in_one_line():
    target, t_features = corpus("t", 1.0, 0)
    other = {"a": (*corpus("a", 1.0, 1), "fp-a")}
    table = build_table(target, pd.Series("test", index=target.index, dtype=object), t_features, "t", other,
                        val_fraction=0.2, seed=0)
    with pytest.raises(ValueError, match="at least two training corpora, not 1") as err:
        select_on_corpora(table.features, table, CLASSES, [0], c_grid=(1.0,))
    assert "\n" not in str(err.value)


def test_balanced_corpus_weights_count_only_the_clips_of_trained_classes():
    """Corpus a has 40 clips of the two classes and 120 of a class the head drops; b has 40 of the two classes:
    their kept clips weigh the same in total."""
    target, t_features = corpus("t", 1.0, 0, speakers=2)
    a, a_features = corpus("a", 1.0, 1, speakers=2)
    dropped = a.assign(label="fear", utt_id=a["utt_id"] + "x")
    a = pd.concat([a, dropped, dropped.assign(utt_id=a["utt_id"] + "y"), dropped.assign(utt_id=a["utt_id"] + "z")],
                  ignore_index=True)
    a_features = np.concatenate([a_features] * 4)
    b, b_features = corpus("b", 1.0, 2, speakers=2)
    table = build_table(target, pd.Series("test", index=target.index, dtype=object), t_features, "t",
                        {"a": (a, a_features, "fp-a"), "b": (b, b_features, "fp-b")}, val_fraction=0.2, seed=0)
    weights = training_weights(table, CLASSES, "balanced")
    kept = (table.assignment == "train").to_numpy() & table.usable["label"].isin(CLASSES).to_numpy()
    corpora = table.corpus
    assert weights[kept & (corpora == "a")].sum() == pytest.approx(weights[kept & (corpora == "b")].sum())
    assert (weights[~kept] == 1.0).all()


def two_sources(seed: int = 0, n: int = 120):
    """Pooled features ``(n, 1 layer, 4 dims)`` of clips whose class sits on dimension 0 with the sign of their source:
    the first half (the other corpora) flipped, the second half (the corpus's own speakers) and validation not."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    sign = np.where(y == 1, 1.0, -1.0)
    own = np.arange(n) >= n // 2
    x = rng.standard_normal((n, 1, 4)).astype(np.float32) * 0.5
    x[:, 0, 0] += np.where(own, sign, -sign)
    val_y = np.tile([0, 1], 20)
    val = rng.standard_normal((40, 1, 4)).astype(np.float32) * 0.5
    val[:, 0, 0] += np.where(val_y == 1, 1.0, -1.0)
    return {"train": x, "val": val}, {"train": y, "val": val_y}, own


def test_the_own_speakers_stage_is_kept_when_validation_speakers_prefer_it():
    from serlib.systems.whisper_mlp import train_mlp
    from serlib.systems.whisper_multi import own_stage

    X, y, own = two_sources()
    others = {"train": X["train"][~own], "val": X["val"]}
    model, history = train_mlp(others, {"train": y["train"][~own], "val": y["val"]}, 2, 0)
    kept, joined, record = own_stage(model, X, y, own, 2, 0, 2, history)
    assert record["kept"] and record["second_val_uar"] > record["first_val_uar"]
    assert kept is not model and record["own_training_clips"] == int(own.sum())
    assert joined[:len(history)] == history and joined[-1]["stage"] == 2
    assert joined[-1]["epoch"] == len(joined)


def test_a_second_stage_that_only_ties_the_first_is_dropped():
    import torch

    from serlib.systems.whisper_mlp import train_mlp
    from serlib.systems.whisper_multi import own_stage

    X, y, own = two_sources()
    model, history = train_mlp(X, y, 2, 0)
    torch.manual_seed(0)
    _, joined, _ = own_stage(model, X, y, own, 2, 0, 2, history)
    second = max(h["val_uar"] for h in joined if h.get("stage") == 2)
    tie = [{**h, "val_uar": second} for h in history]  # the first stage's best equals the second's exactly
    torch.manual_seed(0)
    kept, _, record = own_stage(model, X, y, own, 2, 0, 2, tie)
    assert kept is model and not record["kept"]
    assert record["second_val_uar"] == record["first_val_uar"] == round(second, 4)
