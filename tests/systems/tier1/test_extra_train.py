"""Multi-corpus training: ``data.extra_train`` adds other corpora's clips to every training part, never elsewhere."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from serlib.config import ConfigError, load_config
from serlib.experiments.protocol import plan_protocol, run_protocol
from serlib.features.prepared import prepare, split_for
from serlib.systems.reuse import StaleRunError
from serlib.core.runs import read_json
from serlib.data.synthetic import write_synthetic_corpus
from serlib.systems.tier1.trainer import Trainer

from conftest import fast_overrides

EMODB_CLASSES = {"angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_synthetic_corpus("emodb", root / "emodb", per_class=1, seconds=0.5)
    write_synthetic_corpus("ravdess", root / "ravdess", per_class=1, seconds=0.5)
    return root


def emodb_config(*extra: str):
    return load_config(overrides=fast_overrides() + ["data.corpus=emodb", "data.protocol=speaker-cv", *extra])


@pytest.fixture(scope="module")
def prepared(data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    return prepare(emodb_config("data.extra_train=[RAVDESS]"), data_root=data_root,
                   cache_dir=tmp_path_factory.mktemp("cache"), workers=1, progress=False)


def test_extra_corpora_are_named_canonically_and_the_corpus_itself_is_dropped():
    assert emodb_config("data.extra_train=[CREMA-D, ravdess]").data.extra_train == ["cremad", "ravdess"]
    assert emodb_config("data.extra_train=[EmoDB, ravdess]").data.extra_train == ["ravdess"]
    with pytest.raises(ConfigError, match="data.extra_train"):
        emodb_config("data.extra_train=[nowhere]")
    with pytest.raises(ConfigError, match="twice"):
        emodb_config("data.extra_train=[ravdess, RAVDESS]")


def test_the_extra_corpus_is_featurised_alike_and_joins_the_data_fingerprint(prepared, data_root, tmp_path):
    assert list(prepared.extra) == ["ravdess"]
    extra = prepared.extra["ravdess"]
    assert extra.key != prepared.features.key and extra.features  # its own cache, same settings
    assert prepared.fingerprint == f"{prepared.features.fingerprint}+ravdess:{extra.fingerprint}"
    beside = prepare(emodb_config("data.extra_train=[ravdess]"), data_root=data_root / "emodb",
                     cache_dir=tmp_path, workers=1, progress=False)  # --data-root naming the corpus folder itself
    assert beside.fingerprint == prepared.fingerprint


def test_extra_clips_of_the_runs_classes_join_training_only(prepared):
    config = emodb_config("data.extra_train=[ravdess]")
    assignment = split_for(prepared.features, config, 0)
    trainer = Trainer(prepared.features, assignment, config, "unused", extra_train=prepared.extra)
    trainer.setup()
    ravdess = prepared.extra["ravdess"].usable
    shared = ravdess[ravdess["label"].isin(EMODB_CLASSES)]  # calm and surprise have no EmoDB class
    own_train = int((assignment == "train").sum())
    assert len(trainer.train.ids) == own_train + len(shared)
    assert sum(s.startswith("ravdess/") for s in trainer.train.speakers) == len(shared)
    assert not any(s.startswith("ravdess/") for s in trainer.val.speakers + trainer.test_data.speakers)
    assert set(trainer.classes) == EMODB_CLASSES


def test_features_must_come_for_exactly_the_listed_corpora(prepared):
    config = emodb_config("data.extra_train=[ravdess]")
    with pytest.raises(ValueError, match="data.extra_train lists"):
        Trainer(prepared.features, split_for(prepared.features, config, 0), config, "unused")


def test_only_network_systems_and_the_multi_corpus_heads_may_run_with_extra_training_corpora(prepared):
    with pytest.raises(ValueError, match="network systems and the -multi heads only"):
        plan_protocol(emodb_config("data.extra_train=[ravdess]"), prepared, folds=[0], models=["baseline-svm"])


def test_a_run_records_its_extra_corpus_and_is_not_reused_for_training_without_it(prepared, tmp_path):
    config = emodb_config("data.extra_train=[ravdess]", "train.epochs=1")
    run_protocol(config, prepared, folds=[0], models=["tier1"], results=tmp_path, progress=False)
    folder = next(tmp_path.glob("emodb/speaker-cv/tier1/fold-1/seed-0"))
    provenance = read_json(folder / "provenance.json")
    assert provenance["data_fingerprint"] == prepared.fingerprint
    assert provenance["extra_train"] == {"ravdess": prepared.extra["ravdess"].fingerprint}
    with pytest.raises(StaleRunError):  # the same folder asked for without the extra corpus
        run_protocol(emodb_config("train.epochs=1"), replace(prepared, extra={}), folds=[0], models=["tier1"],
                     results=tmp_path, progress=False)
