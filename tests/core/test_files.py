"""Bad entries in a corpus folder are reported by name with a reason; the rest of the corpus is prepared.

Issue 9, items 5 and 6: a FIFO named like a clip, a link loop, a dangling link,
a folder whose name is not UTF-8 and a folder that cannot be listed never hang,
never raise, and never lose files silently.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from serlib.data import corpora
from serlib.data.audio import AudioError, audio_info, load_audio
from serlib.cli import main
from serlib.config import load_config
from serlib.data.corpora import read_corpus
from serlib.features.prepared import prepare
from serlib.data.synthetic import write_synthetic_corpus

from conftest import fast_overrides


@pytest.fixture
def emodb(tmp_path: Path) -> Path:
    """A small EmoDB copy; its clips are in ``wav/``."""
    return write_synthetic_corpus("emodb", tmp_path / "emodb", per_class=1, seconds=0.4)


def first_clip(root: Path) -> Path:
    return sorted((root / "wav").glob("*.wav"))[0]


def reasons(scan, name: str) -> list[str]:
    return scan.unrecognised.loc[scan.unrecognised["path"].str.endswith(name), "reason"].tolist()


def sets() -> list[str]:
    return [arg for o in fast_overrides() + ["wave_augment.enabled=false"] for arg in ("--set", o)]


# ------------------------------------------------------------------ audio


@pytest.mark.timeout(20)
def test_loading_a_fifo_named_like_a_clip_is_unreadable_and_never_blocks(tmp_path):
    fifo = tmp_path / "clip.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioError) as err:
        load_audio(fifo)
    assert err.value.reason == "unreadable" and "FIFO" in err.value.detail
    with pytest.raises(AudioError, match="FIFO"):
        audio_info(fifo)


@pytest.mark.parametrize("make, expected", [
    (lambda p: os.symlink(p.name, p), "symbolic link loop"),
    (lambda p: os.symlink("nowhere.wav", p), "dangling symbolic link"),
    (lambda p: p.mkdir(), "a folder, not a regular file"),
    (lambda p: None, "No such file"),
])
def test_anything_but_a_regular_file_is_unreadable_with_a_reason(tmp_path, make, expected):
    path = tmp_path / "clip.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        load_audio(path)
    assert err.value.reason == "unreadable" and expected in err.value.detail


def test_a_clip_below_a_folder_whose_name_is_not_utf8_is_read(emodb, tmp_path):
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    folder.mkdir()
    clip = folder / "03a01Fa.wav"
    shutil.copy(first_clip(emodb), clip)
    assert load_audio(clip).size > 0


# ------------------------------------------------------------------ corpus scan


@pytest.mark.timeout(30)
def test_a_fifo_link_loop_and_dangling_link_are_listed_with_reasons_and_the_rest_is_read(emodb):
    n = len(read_corpus("emodb", emodb).manifest)
    os.mkfifo(emodb / "wav" / "03a01Wb.wav")
    os.symlink("03a02Wb.wav", emodb / "wav" / "03a02Wb.wav")
    os.symlink("gone.wav", emodb / "wav" / "03a03Wb.wav")
    scan = read_corpus("emodb", emodb)
    assert len(scan.manifest) == n
    assert reasons(scan, "03a01Wb.wav") == ["unreadable: a FIFO (named pipe), not a regular file"]
    assert reasons(scan, "03a02Wb.wav") == ["unreadable: symbolic link loop"]
    assert reasons(scan, "03a03Wb.wav") == ["unreadable: dangling symbolic link (to gone.wav)"]


def test_a_file_below_a_folder_whose_name_is_not_utf8_is_listed_by_a_printable_name(emodb):
    n = len(read_corpus("emodb", emodb).manifest)
    odd = Path(os.fsdecode(os.fsencode(emodb) + b"/wav/caf\xfe"))
    odd.mkdir()
    shutil.move(str(first_clip(emodb)), str(odd))
    scan = read_corpus("emodb", emodb)
    assert len(scan.manifest) == n - 1
    row = scan.unrecognised[scan.unrecognised["path"].str.contains("caf")].iloc[0]
    assert "caf\\xfe" in row["path"] and "not valid UTF-8" in row["reason"]
    row["path"].encode("utf-8")  # printable, storable


def test_a_folder_that_cannot_be_listed_is_reported_and_the_rest_is_read(monkeypatch, tmp_path):
    root = write_synthetic_corpus("ravdess", tmp_path / "ravdess", per_class=1, seconds=0.2)
    n = len(read_corpus("ravdess", root).manifest)
    per_actor = len(list((root / "Actor_02").glob("*.wav")))
    listing = corpora._list_dir

    def no_permission(folder: str):
        if Path(folder).name == "Actor_02":
            raise PermissionError(13, "Permission denied", folder)
        return listing(folder)

    monkeypatch.setattr(corpora, "_list_dir", no_permission)
    scan = read_corpus("ravdess", root)
    assert len(scan.manifest) == n - per_actor
    assert reasons(scan, "Actor_02") == ["folder cannot be read (Permission denied): its files are left out"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can list any folder: the mechanism is tested by monkeypatching above")
def test_a_folder_without_read_permission_is_reported(tmp_path):
    root = write_synthetic_corpus("ravdess", tmp_path / "ravdess", per_class=1, seconds=0.2)
    (root / "Actor_02").chmod(0)
    try:
        scan = read_corpus("ravdess", root)
    finally:
        (root / "Actor_02").chmod(0o755)
    assert reasons(scan, "Actor_02") == ["folder cannot be read (Permission denied): its files are left out"]


def test_a_link_back_to_a_scanned_folder_is_reported_not_followed_forever(emodb):
    n = len(read_corpus("emodb", emodb).manifest)
    (emodb / "wav" / "more").mkdir()
    os.symlink("..", emodb / "wav" / "more" / "up")
    scan = read_corpus("emodb", emodb)
    assert len(scan.manifest) == n
    assert reasons(scan, "up") == ["link to a folder that is already scanned: not followed again"]


def test_a_linked_folder_is_read(emodb, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clip = first_clip(emodb)
    shutil.move(str(clip), str(elsewhere / clip.name))
    os.symlink(elsewhere, emodb / "wav" / "linked")
    assert clip.stem in set(read_corpus("emodb", emodb).manifest["utt_id"])


# ------------------------------------------------------------------ prepare, end to end


@pytest.mark.timeout(60)
def test_prepare_lists_every_bad_entry_by_name_and_prepares_the_rest(emodb, tmp_path, capsys):
    wav = emodb / "wav"
    n = len(list(wav.glob("*.wav")))
    odd = Path(os.fsdecode(os.fsencode(wav) + b"/caf\xfe"))
    odd.mkdir()
    shutil.copy(first_clip(emodb), odd / "03a04Wb.wav")
    os.mkfifo(wav / "03a01Wb.wav")
    os.symlink("03a02Wb.wav", wav / "03a02Wb.wav")
    os.symlink("gone.wav", wav / "03a03Wb.wav")
    code = main(["prepare", "emodb", "--data-root", str(emodb), "--cache-dir", str(tmp_path / "cache"),
                 "--workers", "1", "--quiet", "--no-augment", *sets()])
    out = capsys.readouterr().out
    assert code == 0
    assert f"emodb: {n} files, {n} usable" in out
    assert "4 file(s) not used by the reader" in out
    for line in ("03a01Wb.wav", "03a02Wb.wav", "03a03Wb.wav", "caf\\xfe/03a04Wb.wav",
                 "unreadable: symbolic link loop", "unreadable: dangling symbolic link (to gone.wav)"):
        assert line in out
    listed = next((tmp_path / "cache").rglob("unrecognised.csv")).read_text()
    assert "03a01Wb.wav" in listed and "caf\\xfe" in listed


def test_prepare_names_files_the_reader_does_not_recognise(emodb, tmp_path, capsys):
    shutil.copy(first_clip(emodb), emodb / "wav" / "holiday.wav")
    config = load_config(overrides=fast_overrides() + ["data.corpus=emodb"])
    prepared = prepare(config, data_root=emodb, cache_dir=tmp_path / "c", workers=1, progress=False, augment=False)
    assert prepared.scan.unrecognised["path"].str.endswith("holiday.wav").any()
    assert main(["prepare", "emodb", "--data-root", str(emodb), "--cache-dir", str(tmp_path / "c"),
                 "--workers", "1", "--quiet", "--no-augment", *sets()]) == 0
    out = capsys.readouterr().out
    assert "name does not match SSTTTEv (e.g. 03a01Fa): 1\n    wav/holiday.wav\n" in out
