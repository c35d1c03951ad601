"""Which run a cross-corpus training uses: a corpus's own Tier-1 run is never trained a second time."""

from pathlib import Path

from serlib.core.runs import class_tag
from serlib.experiments.crosscorpus import run_name, shared_classes

FOUR = ["neutral", "happy", "sad", "angry"]


def own_run(results: Path, *files: str) -> Path:
    run = results / "urdu" / "speaker-cv" / "tier1" / "fold-1" / "seed-0"
    run.mkdir(parents=True)
    for name in ("metrics.json", *files):
        (run / name).write_text("{}")
    return run


def test_shared_classes_keep_the_canonical_order():
    assert shared_classes([{"angry", "sad", "happy", "neutral", "fear"}, set(FOUR)]) == FOUR
    assert class_tag(FOUR) == "tier1-x-neu-hap-sad-ang"


def test_a_subset_of_a_corpus_classes_trains_its_own_cross_corpus_run(tmp_path):
    own_run(tmp_path, "best_uar_0.5.pt")
    assert run_name(tmp_path, "urdu", "speaker-cv", 0, FOUR[:3], FOUR) == "tier1-x-neu-hap-sad"


def test_all_of_a_corpus_classes_reuse_its_own_tier1_run_when_it_can_be_scored(tmp_path):
    own_run(tmp_path, "best_uar_0.5.pt")
    assert run_name(tmp_path, "urdu", "speaker-cv", 0, FOUR, FOUR) == "tier1"


def test_an_own_run_without_a_checkpoint_is_reused_only_for_the_scores_it_already_holds(tmp_path):
    run = own_run(tmp_path)  # a fresh clone: checkpoints are not committed
    assert run_name(tmp_path, "urdu", "speaker-cv", 0, FOUR, FOUR) == class_tag(FOUR)
    (run / "cross-emodb.json").write_text("{}")
    assert run_name(tmp_path, "urdu", "speaker-cv", 0, FOUR, FOUR) == "tier1"


def test_the_same_classes_in_another_order_are_not_the_same_training(tmp_path):
    own_run(tmp_path, "best_uar_0.5.pt")
    assert run_name(tmp_path, "urdu", "speaker-cv", 0, FOUR[::-1], FOUR) == class_tag(FOUR[::-1])
    assert run_name(tmp_path, "urdu", "speaker-cv", 1, FOUR, FOUR) == class_tag(FOUR)  # no run of seed 1
