"""A corpus of one's own: a manifest (or a LABEL/ folder) read, labels mapped, bad rows quarantined, bad
manifests refused in one line, and the protocol chosen from what the manifest names."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from serlib.data.manifest import (ManifestError, canonical_label, check_protocol, default_protocol,
                                  describe_mapping, manifest_name, read_manifest)
from serlib.data.splits import get_split, n_folds
from serlib.data.synthetic import emotion_tone

WRITTEN = {"ang": "angry", "Joy": "happy", "sadness": "sad", "neu": "neutral"}


def clip(path, label, seconds=0.8, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, emotion_tone(canonical_label(label), 16000, seconds, np.random.default_rng(seed)), 16000)
    return path


def write_manifest(folder, rows, header="path,label,speaker", name="mine.csv"):
    text = header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    (folder / name).write_text(text)
    return folder / name


@pytest.fixture
def corpus(tmp_path):
    rows = []
    for k in range(24):
        label = list(WRITTEN)[k % 4]
        clip(tmp_path / "audio" / f"c{k:02d}.wav", label, seed=k)
        rows.append((f"audio/c{k:02d}.wav", label, f"spk{k % 6}"))
    return tmp_path, rows


def test_relative_paths_and_synonym_labels_read_as_canonical_classes(corpus):
    folder, rows = corpus
    scan, mapping = read_manifest(write_manifest(folder, rows))
    assert scan.corpus == "mine" and len(scan.manifest) == 24 and scan.unrecognised.empty
    assert scan.labels == ["neutral", "happy", "sad", "angry"]
    assert mapping == WRITTEN
    assert all(p.startswith(str(folder / "audio")) for p in scan.manifest["path"])
    assert describe_mapping(mapping).startswith("labels: Joy -> happy, ang -> angry, neu -> neutral, sadness -> sad")
    assert canonical_label(" Surprised ") == "surprise" and canonical_label("sigh") == "sigh"  # others kept


def test_bad_rows_are_quarantined_with_the_row_they_came_from(corpus):
    folder, rows = corpus
    bad = rows + [("audio/gone.wav", "sad", "spk1"), ("audio/c00.wav", "sad", "spk1"), ("audio/c01.wav", "", "spk1")]
    scan, _ = read_manifest(write_manifest(folder, bad))
    assert len(scan.manifest) == 24
    assert scan.unrecognised.values.tolist() == [["row 26: audio/gone.wav", "missing file"],
                                                 ["row 27: audio/c00.wav", "duplicate path (first on row 2)"],
                                                 ["row 28: audio/c01.wav", "empty label"]]


@pytest.mark.parametrize("header, rows, message", [
    ("file,label", [("audio/c00.wav", "sad")], "no 'path' column"),
    ("path,speaker", [("audio/c00.wav", "s")], "no 'label' column"),
    ("path,label", [("audio/gone.wav", "sad")], "no usable row (1 quarantined: missing file)"),
], ids=["no-path-column", "no-label-column", "nothing-usable"])
def test_a_manifest_that_cannot_be_used_is_refused_in_one_line(corpus, header, rows, message):
    folder, _ = corpus
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        read_manifest(write_manifest(folder, rows, header=header))
    assert "\n" not in str(err.value)


def test_one_speaker_or_a_class_rarer_than_the_folds_is_refused(corpus):
    folder, rows = corpus
    one, _ = read_manifest(write_manifest(folder, [(p, lab, "only") for p, lab, _ in rows], name="one.csv"))
    with pytest.raises(ManifestError, match="only one speaker"):
        check_protocol(one.manifest, "speaker-cv", 1, "one.csv")
    rare, _ = read_manifest(write_manifest(folder, rows[:23], name="rare.csv"))  # 'neu' has 5 clips, the others 6
    with pytest.raises(ManifestError, match=r"class neutral \(5 clips\) has fewer clips than the 6 folds"):
        check_protocol(rare.manifest, "speaker-cv", 6, "rare.csv")


def test_the_protocol_follows_what_the_manifest_names(corpus):
    folder, rows = corpus
    with_speakers, _ = read_manifest(write_manifest(folder, rows))
    assert default_protocol(with_speakers.manifest) == "speaker-cv"
    assert n_folds(with_speakers.manifest, "speaker-cv") == 6  # leave one speaker out up to 10 speakers
    no_speakers, _ = read_manifest(write_manifest(folder, [(p, lab) for p, lab, _ in rows], header="path,label",
                                                  name="anon.csv"))
    assert default_protocol(no_speakers.manifest) == "stratified-cv"
    fold = get_split(no_speakers.manifest, "stratified-cv", fold=0, folds=3)
    assert fold.value_counts().to_dict()["test"] == 8 and "NOT speaker independent" in fold.attrs["note"]
    given, _ = read_manifest(write_manifest(folder, [(p, lab, s, "test" if s == "spk0" else "train")
                                                     for p, lab, s in rows], header="path,label,speaker,split",
                                            name="given.csv"))
    assert default_protocol(given.manifest) == "split-column"
    split = get_split(given.manifest, "split-column")
    assert set(given.manifest.loc[split == "test", "speaker"]) == {"spk0"} and (split == "val").any()


def test_a_folder_of_label_folders_is_a_manifest(tmp_path):
    for k, label in enumerate(["angry", "Joy", "angry", "sad"]):
        clip(tmp_path / "mine" / label / "day1" / f"{k}.flac", label, seed=k)
    (tmp_path / "mine" / "angry" / "notes.txt").write_text("not audio")
    scan, mapping = read_manifest(tmp_path / "mine")
    assert sorted(scan.manifest["label"]) == ["angry", "angry", "happy", "sad"] and mapping["Joy"] == "happy"
    assert manifest_name(tmp_path / "mine") == "mine" and manifest_name(tmp_path / "My Data.tsv") == "my-data"


def test_serlib_trains_on_a_manifest_into_results_named_after_it(corpus, tmp_path, capsys):
    from serlib.cli import main

    folder, rows = corpus
    manifest = write_manifest(folder, rows, name="My Clips.csv")
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert main(["train", "--manifest", str(manifest), "--model", "baseline-svm", "--results", str(results),
                 "--cache-dir", str(cache), "--quiet", "--folds", "3", "--set", "preprocess.vad=false"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("my-clips: 24 clips, labels: Joy -> happy")
    assert sorted(p.parent.parent.name for p in results.glob("my-clips/speaker-cv/baseline-svm/*/seed-0/metrics.json")
                  ) == ["fold-1", "fold-2", "fold-3"]
    assert main(["train", "--manifest", str(tmp_path / "none.csv"), "--model", "baseline-svm"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_a_checkpoint_trained_on_a_manifest_evaluates_on_its_held_out_fold(corpus, tmp_path, capsys):
    from serlib.cli import main
    from serlib.config import SMOKE_OVERRIDES

    folder, rows = corpus
    manifest = write_manifest(folder, rows)
    fast = [x for o in [*SMOKE_OVERRIDES, "preprocess.vad=false"] for x in ("--set", o)]
    results, cache = tmp_path / "results", tmp_path / "cache"
    assert main(["train", "--manifest", str(manifest), "--model", "tier1", "--fold", "2", "--results", str(results),
                 "--cache-dir", str(cache), "--quiet", *fast]) == 0
    checkpoint = next(results.glob("mine/speaker-cv/tier1/fold-2/seed-*/best_uar_*.pt"))
    capsys.readouterr()
    assert main(["evaluate", str(checkpoint), "--manifest", str(manifest), "--fold", "2", "--cache-dir", str(cache),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mine fold 2: n=4" in out  # the 4 clips of the fold's one test speaker
