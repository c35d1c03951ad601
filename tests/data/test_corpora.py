"""Specifications of serlib.data.corpora (corpus folder -> manifest) and serlib.data.synthetic.

Every corpus is exercised on a synthetic copy in its official layout; RAVDESS,
EmoDB and URDU are also read from the real audio in ../shared/data (tests
marked ``realdata``, skipped with a reason when that folder is absent).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from serlib.data.audio import AudioError, load_audio
from serlib.data.corpora import (
    CANONICAL_LABELS,
    CORPORA,
    MANIFEST_COLUMNS,
    CorpusLayoutError,
    CorpusScan,
    corpus_root,
    read_corpus,
)
from serlib.data.synthetic import NATIVE_SAMPLE_RATES, emotion_tone, main, write_synthetic_corpus

SECONDS = 0.25  # clip length of the shared synthetic corpora (audio is never read by the readers)
TINY = {"per_class": 1, "seconds": 0.05}  # for corpora a test modifies

EXTRA_COLUMNS = {
    "ravdess": ["intensity", "statement", "repetition", "vocal_channel"],
    "cremad": ["sentence", "level"],
    "savee": ["sentence_index"],
    "iemocap": ["session", "dialog", "raw_label", "improvised"],
    "tess": ["word"],
    "emodb": ["text", "version"],
    "urdu": ["file_number"],
}


@dataclass(frozen=True)
class Expected:
    """What the default synthetic corpus (per_class=2) must read back as."""

    n_files: int
    labels: set[str]
    genders: dict[str, str]  # speaker -> gender
    utt_ids: tuple[str, ...]  # some utterances that must be present
    n_unrecognised: int = 0


SEVEN = {"neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"}
EXPECTED = {
    "ravdess": Expected(
        8 * 8 * 2, SEVEN | {"calm"}, {f"{a:02d}": "MF"[(a + 1) % 2] for a in range(1, 9)},
        ("03-01-01-01-01-01-01", "03-01-01-01-02-01-03", "03-01-05-02-01-01-08"),
    ),
    "cremad": Expected(
        8 * 6 * 2, SEVEN - {"surprise"}, {str(1001 + a): "MF"[a % 2] for a in range(8)},
        ("1001_IEO_ANG_HI", "1004_IEO_NEU_XX", "1008_TIE_SAD_XX"),
    ),
    "savee": Expected(
        4 * 7 * 2, SEVEN, dict.fromkeys(["DC", "JE", "JK", "KL"], "M"), ("JE_n02", "KL_su01", "DC_sa02"),
    ),
    "iemocap": Expected(
        5 * 2 * 4 * 2, {"neutral", "happy", "angry", "sad"},
        {f"Ses{s:02d}{g}": g for s in range(1, 6) for g in "FM"},
        ("Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses01M_script01_1_F000", "Ses05M_script01_1_M003"),
        n_unrecognised=5 * 2,  # one 'fru' and one 'xxx' per session
    ),
    "tess": Expected(2 * 7 * 2, SEVEN, {"OAF": "F", "YAF": "F"}, ("OAF_back_angry", "OAF_back_ps", "YAF_bar_fear")),
    "emodb": Expected(
        10 * 7 * 2, SEVEN - {"surprise"} | {"boredom"},
        {"03": "M", "10": "M", "11": "M", "12": "M", "15": "M", "08": "F", "09": "F", "13": "F", "14": "F", "16": "F"},
        ("03a01Wa", "16a02Na", "08a01La"),
    ),
    "urdu": Expected(
        6 * 4 * 2, {"neutral", "happy", "sad", "angry"},
        {"SM1": "M", "SF1": "F", "SM2": "M", "SF2": "F", "SM3": "M", "SF3": "F"},
        ("SM1_F1_A001", "SF1_F1_A003", "SM1_F3_H001", "SF3_F8_S012"),
    ),
}

LAYOUT_WORDS = {  # what a CorpusLayoutError must name for each corpus
    "ravdess": "Actor_01..Actor_24",
    "cremad": "AudioWAV/",
    "savee": "AudioData/",
    "iemocap": "Session1..Session5",
    "tess": "<OAF|YAF>_<emotion>/",
    "emodb": "SSTTTEv",
    "urdu": "Angry/ Happy/ Neutral/ Sad/",
}


@pytest.fixture(scope="module")
def synthetic_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every corpus written once with the default speakers and per_class=2."""
    base = tmp_path_factory.mktemp("synthetic")
    return {c: write_synthetic_corpus(c, base / c, seconds=SECONDS) for c in CORPORA}


@pytest.fixture(scope="module")
def scans(synthetic_roots: dict[str, Path]) -> dict[str, CorpusScan]:
    return {c: read_corpus(c, root) for c, root in synthetic_roots.items()}


def copy_audio(src: str | Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def reasons_for(scan, path: Path) -> list[str]:
    return scan.unrecognised.loc[scan.unrecognised["path"] == str(path), "reason"].tolist()


# ---------------------------------------------------------------- every corpus


@pytest.mark.parametrize("corpus", CORPORA)
def test_synthetic_corpus_reads_back_with_its_counts_labels_speakers_genders_and_utt_ids(corpus, scans):
    expected, scan = EXPECTED[corpus], scans[corpus]
    m = scan.manifest
    assert scan.n_files == len(m) == expected.n_files
    assert set(m["label"]) == expected.labels
    genders = m.groupby("speaker")["gender"].agg(lambda g: set(g)).to_dict()
    assert genders == {speaker: {gender} for speaker, gender in expected.genders.items()}
    assert set(expected.utt_ids) <= set(m["utt_id"])
    assert len(scan.unrecognised) == expected.n_unrecognised
    # classes are balanced per speaker in the synthetic corpora
    assert m.groupby(["speaker", "label"]).size().nunique() == 1


@pytest.mark.parametrize("corpus", CORPORA)
def test_manifest_has_the_common_columns_then_the_corpus_extras_sorted_by_unique_utt_id(corpus, scans):
    m = scans[corpus].manifest
    assert list(m.columns) == MANIFEST_COLUMNS + EXTRA_COLUMNS[corpus]
    assert m["utt_id"].is_unique and m["utt_id"].is_monotonic_increasing
    assert list(m.index) == list(range(len(m)))
    assert (m["corpus"] == corpus).all()
    assert set(m["label"]) <= set(CANONICAL_LABELS)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in m["path"])
    assert all(isinstance(s, str) for s in m["speaker"])
    assert list(scans[corpus].unrecognised.columns) == ["path", "reason"]


@pytest.mark.parametrize("corpus", CORPORA)
def test_a_folder_that_is_not_the_corpus_raises_a_layout_error_naming_the_expected_layout(corpus, tmp_path):
    (tmp_path / "foo").mkdir()
    (tmp_path / "bar.txt").write_text("x")
    with pytest.raises(CorpusLayoutError) as err:
        read_corpus(corpus, tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    assert LAYOUT_WORDS[corpus] in message
    assert "found: 2 entries: bar.txt, foo/" in message


@pytest.mark.parametrize("corpus", CORPORA)
def test_another_corpus_given_as_root_raises_a_layout_error(corpus, synthetic_roots):
    other = CORPORA[(CORPORA.index(corpus) + 1) % len(CORPORA)]
    with pytest.raises(CorpusLayoutError, match="expected"):
        read_corpus(corpus, synthetic_roots[other])


def test_a_missing_root_raises_a_layout_error_saying_it_does_not_exist(tmp_path):
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        read_corpus("ravdess", tmp_path / "nowhere")


def test_a_corpus_folder_without_any_recognised_file_raises_and_says_why(tmp_path):
    copy_audio(write_synthetic_corpus("emodb", tmp_path / "src", **TINY) / "wav" / "03a01Wa.wav",
               tmp_path / "ravdess" / "Actor_01" / "notes.wav")
    with pytest.raises(CorpusLayoutError, match=r"1 audio file\(s\) below it, none recognised"):
        read_corpus("ravdess", tmp_path / "ravdess")


@pytest.mark.parametrize("corpus", CORPORA)
def test_audio_files_with_unparseable_names_are_reported_not_dropped(corpus, tmp_path):
    root = write_synthetic_corpus(corpus, tmp_path / corpus, n_speakers=2, **TINY)
    before = read_corpus(corpus, root)
    sample = Path(before.manifest["path"].iloc[0])
    stray = copy_audio(sample, sample.parent / "take 7 (2).wav")
    after = read_corpus(corpus, root)
    assert after.n_files == before.n_files
    assert after.n_unrecognised == before.n_unrecognised + 1
    assert "does not match" in reasons_for(after, stray)[0]


@pytest.mark.parametrize("corpus", CORPORA)
def test_flac_copies_read_back_like_wav(corpus, tmp_path):
    wav = read_corpus(corpus, write_synthetic_corpus(corpus, tmp_path / "wav", n_speakers=2, **TINY)).manifest
    flac_root = write_synthetic_corpus(corpus, tmp_path / "flac", n_speakers=2, ext=".flac", **TINY)
    flac = read_corpus(corpus, flac_root).manifest
    assert flac["path"].str.endswith(".flac").all()
    pd.testing.assert_frame_equal(wav.drop(columns="path"), flac.drop(columns="path"))


@pytest.mark.parametrize("ext", [".ogg", ".aiff", ".aif", ".WAV", ".Flac"])
def test_any_soundfile_extension_is_accepted_case_insensitively(ext, tmp_path):
    root = write_synthetic_corpus("emodb", tmp_path, n_speakers=1, ext=ext, **TINY)
    scan = read_corpus("emodb", root)
    assert scan.n_files == 7 and scan.manifest["path"].str.endswith(ext).all()


def test_non_audio_files_are_ignored_and_macos_resource_forks_skipped(tmp_path):
    root = write_synthetic_corpus("emodb", tmp_path, n_speakers=1, **TINY)
    (root / "wav" / "._03a01Wa.wav").write_bytes(b"\x00\x05\x16\x07")
    (root / "wav" / ".DS_Store").write_bytes(b"junk")
    (root / "wav" / "README.txt").write_text("not audio")
    scan = read_corpus("emodb", root)
    assert scan.n_files == 7 and scan.n_unrecognised == 0


def test_the_same_utterance_in_two_formats_is_kept_once_and_the_copy_reported(tmp_path):
    root = write_synthetic_corpus("emodb", tmp_path, n_speakers=1, **TINY)
    copy = copy_audio(root / "wav" / "03a01Wa.wav", root / "wav" / "03a01Wa.flac")
    scan = read_corpus("emodb", root)
    assert scan.n_files == 7
    # the kept file is named under the corpus root: the reason reaches the published pages, machine paths never do
    assert reasons_for(scan, copy) == ["duplicate utt_id 03a01Wa (kept wav/03a01Wa.wav)"]


def test_scan_summary_names_corpus_counts_and_unrecognised(scans):
    summary = scans["iemocap"].summary()
    assert summary == "IEMOCAP: 80 files, 10 speakers (neutral 20, happy 20, sad 20, angry 20); 10 unrecognised"


# ---------------------------------------------------------------- RAVDESS


def test_ravdess_extras_decode_the_file_name_and_odd_actors_are_male(scans):
    row = scans["ravdess"].manifest.set_index("utt_id").loc["03-01-05-02-01-01-08"]
    assert (row.speaker, row.gender, row.label) == ("08", "F", "angry")
    assert (row.intensity, row.statement, row.repetition, row.vocal_channel) == ("strong", 1, 1, "speech")
    assert set(scans["ravdess"].manifest.query("label == 'neutral'")["intensity"]) == {"normal"}


def test_ravdess_song_files_are_reported_unless_include_song(tmp_path):
    root = write_synthetic_corpus("ravdess", tmp_path, n_speakers=1, **TINY)
    song = copy_audio(root / "Actor_01" / "03-01-03-01-01-01-01.wav", root / "Actor_01" / "03-02-03-01-01-01-01.wav")
    speech_only = read_corpus("ravdess", root)
    assert speech_only.n_files == 8
    assert reasons_for(speech_only, song) == ["song (include_song=False)"]
    with_song = read_corpus("ravdess", root, include_song=True)
    assert with_song.n_files == 9 and with_song.n_unrecognised == 0
    assert with_song.manifest.set_index("utt_id").loc["03-02-03-01-01-01-01", "vocal_channel"] == "song"


def test_ravdess_accepts_the_emobox_parent_folder(tmp_path):
    direct = write_synthetic_corpus("ravdess", tmp_path / "audio" / "Audio_Speech_Actors_01-24", n_speakers=2, **TINY)
    via_parent = read_corpus("ravdess", tmp_path).manifest
    pd.testing.assert_frame_equal(via_parent, read_corpus("ravdess", direct).manifest)


def test_ravdess_file_in_another_actors_folder_is_reported(tmp_path):
    root = write_synthetic_corpus("ravdess", tmp_path, n_speakers=2, **TINY)
    misplaced = copy_audio(
        root / "Actor_01" / "03-01-03-01-01-01-01.wav", root / "Actor_02" / "03-01-04-01-01-01-01.wav"
    )
    reasons = reasons_for(read_corpus("ravdess", root), misplaced)
    assert reasons == ["actor 01 in the name but the file is in Actor_02/"]


# ---------------------------------------------------------------- CREMA-D


def test_cremad_gender_comes_from_video_demographics_and_is_none_without_it(tmp_path):
    root = write_synthetic_corpus("cremad", tmp_path, n_speakers=2, **TINY)
    genders = read_corpus("cremad", root).manifest.groupby("speaker")["gender"].first().to_dict()
    assert genders == {"1001": "M", "1002": "F"}
    (root / "VideoDemographics.csv").unlink()
    assert read_corpus("cremad", root).manifest["gender"].isna().all()


def test_cremad_sentence_and_level_come_from_the_name(scans):
    row = scans["cremad"].manifest.set_index("utt_id").loc["1001_IEO_ANG_HI"]
    assert (row.speaker, row.label, row.sentence, row.level) == ("1001", "angry", "IEO", "HI")


# ---------------------------------------------------------------- SAVEE


@pytest.mark.parametrize("flat_dir", [".", "AudioData"])
def test_savee_flattened_and_folder_layouts_give_the_same_manifest(flat_dir, tmp_path):
    folders = write_synthetic_corpus("savee", tmp_path / "folders", **TINY)
    for wav in (folders / "AudioData").glob("*/*.wav"):
        copy_audio(wav, tmp_path / "flat" / flat_dir / f"{wav.parent.name}_{wav.name}")
    by_folder = read_corpus("savee", folders).manifest
    flattened = read_corpus("savee", tmp_path / "flat").manifest
    assert "JE_n01" in set(by_folder["utt_id"])
    pd.testing.assert_frame_equal(by_folder.drop(columns="path"), flattened.drop(columns="path"))


# ---------------------------------------------------------------- IEMOCAP


def test_iemocap_exc_is_merged_into_happy_and_fru_xxx_are_reported(scans):
    scan = scans["iemocap"]
    happy = scan.manifest.query("label == 'happy'")["raw_label"].value_counts().to_dict()
    assert happy == {"hap": 10, "exc": 10}
    reasons = scan.unrecognised["reason"].value_counts().to_dict()
    assert reasons == {
        "label 'fru' outside the 4-class protocol": 5,
        "label 'xxx' outside the 4-class protocol": 5,
    }


def test_iemocap_speaker_is_the_actor_who_speaks_not_the_dialog_owner(scans):
    m = scans["iemocap"].manifest.set_index("utt_id")
    assert tuple(m.loc["Ses01F_impro01_M000", ["speaker", "gender"]]) == ("Ses01M", "M")
    assert tuple(m.loc["Ses01M_script01_1_F000", ["speaker", "gender"]]) == ("Ses01F", "F")


def test_iemocap_session_dialog_and_improvised_columns(scans):
    m = scans["iemocap"].manifest.set_index("utt_id")
    columns = ["session", "dialog", "improvised"]
    assert tuple(m.loc["Ses05M_script01_1_M003", columns]) == (5, "Ses05M_script01_1", False)
    assert tuple(m.loc["Ses01F_impro01_F000", columns]) == (1, "Ses01F_impro01", True)
    assert sorted(m["session"].unique()) == [1, 2, 3, 4, 5]


def test_iemocap_wav_without_a_label_line_is_reported(tmp_path):
    root = write_synthetic_corpus("iemocap", tmp_path, n_speakers=2, **TINY)
    wav_dir = root / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
    unlabelled = copy_audio(wav_dir / "Ses01F_impro01_F000.wav", wav_dir / "Ses01F_impro01_F099.wav")
    reasons = reasons_for(read_corpus("iemocap", root), unlabelled)
    assert reasons == ["no label line in Session*/dialog/EmoEvaluation/*.txt"]


def test_iemocap_accepts_the_release_folder_and_its_parent(synthetic_roots, scans):
    assert synthetic_roots["iemocap"].name == "IEMOCAP_full_release"
    parent = read_corpus("iemocap", synthetic_roots["iemocap"].parent)
    pd.testing.assert_frame_equal(parent.manifest, scans["iemocap"].manifest)


# ---------------------------------------------------------------- TESS


def test_tess_pleasant_surprise_folders_and_ps_files_are_surprise_whatever_the_case(synthetic_roots, scans):
    folders = {p.name for p in synthetic_roots["tess"].iterdir()}
    assert {"OAF_Pleasant_surprise", "YAF_pleasant_surprised", "OAF_Fear"} <= folders
    m = scans["tess"].manifest.set_index("utt_id")
    assert tuple(m.loc["YAF_bar_ps", ["speaker", "label", "word"]]) == ("YAF", "surprise", "bar")
    assert m.loc["OAF_back_fear", "label"] == "fear"


def test_tess_capitalised_names_and_emobox_flat_files_are_accepted(tmp_path):
    root = write_synthetic_corpus("tess", tmp_path, **TINY)
    capital = copy_audio(root / "OAF_Fear" / "OAF_back_fear.wav", root / "OAF_Fear" / "OAF_Dog_Fear.wav")
    flat = copy_audio(root / "YAF_sad" / "YAF_back_sad.wav", root / "YAF_chair_sad.wav")
    m = read_corpus("tess", root).manifest.set_index("path")
    assert tuple(m.loc[str(capital), ["utt_id", "label", "word"]]) == ("OAF_Dog_Fear", "fear", "Dog")
    assert tuple(m.loc[str(flat), ["utt_id", "speaker", "label"]]) == ("YAF_chair_sad", "YAF", "sad")


def test_tess_file_whose_name_contradicts_its_folder_is_reported(tmp_path):
    root = write_synthetic_corpus("tess", tmp_path, **TINY)
    odd = copy_audio(root / "OAF_angry" / "OAF_back_angry.wav", root / "OAF_angry" / "OAF_dog_sad.wav")
    assert reasons_for(read_corpus("tess", root), odd) == ["name says OAF sad but folder OAF_angry/ says OAF angry"]


# ---------------------------------------------------------------- EmoDB


def test_emodb_files_directly_in_the_root_are_accepted(tmp_path):
    root = write_synthetic_corpus("emodb", tmp_path / "official", n_speakers=2, **TINY)
    for wav in (root / "wav").iterdir():
        copy_audio(wav, tmp_path / "flat" / wav.name)
    pd.testing.assert_frame_equal(
        read_corpus("emodb", root).manifest.drop(columns="path"),
        read_corpus("emodb", tmp_path / "flat").manifest.drop(columns="path"),
    )


def test_emodb_text_and_version_come_from_the_name(scans):
    row = scans["emodb"].manifest.set_index("utt_id").loc["08a01La"]
    assert (row.speaker, row.gender, row.label, row.text, row.version) == ("08", "F", "boredom", "a01", "a")


# ---------------------------------------------------------------- URDU


def test_urdu_label_comes_from_the_folder_and_gender_from_the_name(scans):
    m = scans["urdu"].manifest.set_index("utt_id")
    assert tuple(m.loc["SF3_F8_S012", ["speaker", "gender", "label", "file_number"]]) == ("SF3", "F", "sad", 8)
    folder_of = m["path"].map(lambda p: Path(p).parent.name.lower())
    assert (folder_of == m["label"]).all()


def test_urdu_file_outside_the_emotion_folders_is_reported(tmp_path):
    root = write_synthetic_corpus("urdu", tmp_path, n_speakers=2, **TINY)
    stray = copy_audio(root / "Angry" / "SM1_F1_A001.wav", root / "SM1_F1_A001.wav")
    scan = read_corpus("urdu", root)
    assert scan.n_files == 8
    assert reasons_for(scan, stray) == ["not inside an Angry/Happy/Neutral/Sad folder"]


# ---------------------------------------------------------------- corpus_root


def test_corpus_root_honours_serlib_data(monkeypatch, tmp_path):
    (tmp_path / "emodb").mkdir()
    monkeypatch.setenv("SERLIB_DATA", str(tmp_path))
    assert corpus_root("emodb") == tmp_path / "emodb"
    assert corpus_root("EmoDB") == tmp_path / "emodb"


def test_corpus_root_prefers_an_explicit_data_root_and_matches_folder_names_loosely(monkeypatch, tmp_path):
    (tmp_path / "mine" / "CREMA-D").mkdir(parents=True)
    monkeypatch.setenv("SERLIB_DATA", str(tmp_path / "elsewhere"))
    assert corpus_root("cremad", tmp_path / "mine") == tmp_path / "mine" / "CREMA-D"


def test_corpus_root_without_serlib_data_or_data_root_says_what_to_set(monkeypatch):
    monkeypatch.delenv("SERLIB_DATA", raising=False)
    with pytest.raises(ValueError, match="SERLIB_DATA is not set"):
        corpus_root("ravdess")


def test_corpus_root_missing_corpus_folder_lists_the_data_folder(tmp_path):
    (tmp_path / "emodb").mkdir()
    with pytest.raises(FileNotFoundError, match=r"RAVDESS folder .*ravdess not found; .* holds 1 entry: emodb/"):
        corpus_root("ravdess", tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        corpus_root("ravdess", tmp_path / "nowhere")


def test_unknown_corpus_names_are_rejected_with_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown corpus 'voxceleb'; expected one of ravdess, cremad"):
        read_corpus("voxceleb", tmp_path)


# ---------------------------------------------------------------- synthetic audio


@pytest.mark.parametrize("corpus", CORPORA)
def test_synthetic_audio_is_16_bit_pcm_at_the_native_rate_with_a_quiet_lead_in(corpus, scans):
    path = scans[corpus].manifest["path"].iloc[0]
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (NATIVE_SAMPLE_RATES[corpus], 1, "PCM_16")
    assert info.frames == round(SECONDS * NATIVE_SAMPLE_RATES[corpus])
    wave, sr = sf.read(path)
    lead_in, middle = wave[: int(0.03 * sr)], wave[int(0.1 * sr): int(0.15 * sr)]
    assert np.sqrt(np.mean(middle**2)) > 5 * np.sqrt(np.mean(lead_in**2))


def test_synthetic_sample_rate_can_be_overridden(tmp_path):
    root = write_synthetic_corpus("savee", tmp_path, n_speakers=1, sample_rate=16000, **TINY)
    assert sf.info(next((root / "AudioData" / "DC").iterdir())).samplerate == 16000


def test_synthetic_emotions_differ_in_pitch_and_generation_is_deterministic():
    def dominant_hz(label: str) -> float:
        wave = emotion_tone(label, 16000, 0.5, np.random.default_rng(0))
        return float(np.argmax(np.abs(np.fft.rfft(wave, 16000))))  # 1 Hz bins

    pitches = [dominant_hz(label) for label in CANONICAL_LABELS]
    assert len(set(np.round(pitches, -1))) == len(CANONICAL_LABELS)
    a = emotion_tone("angry", 16000, 0.3, np.random.default_rng(3))
    assert np.array_equal(a, emotion_tone("angry", 16000, 0.3, np.random.default_rng(3)))


def test_synthetic_cli_all_writes_every_corpus_in_a_readable_layout(tmp_path, capsys):
    assert main(["all", str(tmp_path), "--per-class", "1", "--seconds", "0.05"]) == 0
    assert capsys.readouterr().out.count("\n") == len(CORPORA)
    for corpus in CORPORA:
        assert read_corpus(corpus, tmp_path / corpus).n_files == EXPECTED[corpus].n_files // 2


def test_synthetic_rejects_impossible_requests(tmp_path):
    with pytest.raises(ValueError, match="per_class must be in 1..4"):
        write_synthetic_corpus("ravdess", tmp_path, per_class=5)
    with pytest.raises(ValueError, match="n_speakers must be in 1..4"):
        write_synthetic_corpus("savee", tmp_path, n_speakers=5)
    with pytest.raises(ValueError, match="extension '.mp3' not supported"):
        write_synthetic_corpus("emodb", tmp_path, ext=".mp3")


# ---------------------------------------------------------------- real data


def real_data_root() -> Path:
    """$SERLIB_DATA when set, else ../shared/data beside the repository."""
    env = os.environ.get("SERLIB_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class RealCorpus:
    n_files: int
    n_labels: int
    speakers_by_gender: dict[str, int]
    extension: str = ".flac"
    unrecognised: tuple[str, ...] = ()


REAL = {
    # The full-length copy: all 1440 speech files (the truncated 1434-file copy is gone).
    "ravdess": RealCorpus(1440, 8, {"M": 12, "F": 12}),
    "emodb": RealCorpus(535, 7, {"M": 5, "F": 5}),
    # The URDU paper (and shared/data/README.md) say 38 speakers (27 M, 11 F), but the file names
    # carry only 29 speaker codes: SF1-SF11 and SM1-SM7, SM17-SM27 (SM8-SM16 never occur).
    "urdu": RealCorpus(400, 4, {"M": 18, "F": 11}),
    # 91 actors, sexes from VideoDemographics.csv (48 male, 43 female); Opus-coded copy.
    "cremad": RealCorpus(7442, 6, {"M": 48, "F": 43}, extension=".ogg"),
    "savee": RealCorpus(480, 7, {"M": 4}),
    # The release itself misnames one file (OA_ instead of OAF_): it is reported by name, not guessed.
    "tess": RealCorpus(2799, 7, {"F": 2}, extension=".ogg", unrecognised=("OAF_neutral/OA_bite_neutral.ogg",)),
}


@pytest.mark.realdata
@pytest.mark.parametrize("corpus", sorted(REAL))
def test_real_corpus_has_the_documented_files_speakers_and_labels(corpus):
    root = real_data_root() / corpus
    if not root.is_dir():
        pytest.skip(f"real {corpus} audio not found at {root} (set SERLIB_DATA)")
    scan = read_corpus(corpus, root)
    expected = REAL[corpus]
    assert scan.n_files == expected.n_files
    unrecognised = sorted(Path(p).relative_to(root).as_posix() for p in scan.unrecognised["path"])
    assert unrecognised == list(expected.unrecognised)
    assert len(scan.labels) == expected.n_labels
    speakers = scan.manifest.groupby("speaker")["gender"].agg(lambda g: set(g))
    assert (speakers.map(len) == 1).all()
    assert speakers.map(lambda g: next(iter(g))).value_counts().to_dict() == expected.speakers_by_gender
    assert scan.manifest["path"].str.endswith(expected.extension).all()


@pytest.mark.realdata
def test_real_cremad_silent_clip_is_quarantined_as_silent():
    """1076_MTI_SAD_XX is all zeros in the official release: preparation must quarantine it."""
    clip = real_data_root() / "cremad" / "AudioWAV" / "1076_MTI_SAD_XX.ogg"
    if not clip.is_file():
        pytest.skip(f"real CREMA-D audio not found at {clip.parent} (set SERLIB_DATA)")
    with pytest.raises(AudioError) as err:
        load_audio(clip)
    assert err.value.reason == "silent"


@pytest.mark.realdata
def test_real_urdu_emotion_letters_agree_with_their_folders():
    root = real_data_root() / "urdu"
    if not root.is_dir():
        pytest.skip(f"real urdu audio not found at {root} (set SERLIB_DATA)")
    m = read_corpus("urdu", root).manifest
    letter = m["utt_id"].str.extract(r"_([AHNS])\d+$")[0]
    assert (letter == m["label"].str[0].str.upper()).all()


def test_a_corpus_root_reached_through_a_symbolic_link_reads_as_the_real_one(tmp_path):
    from serlib.features.cache import data_fingerprint

    real = write_synthetic_corpus("tess", tmp_path / "real" / "tess", per_class=1, seconds=0.5)
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    root = tmp_path / "link" / "tess"
    direct, through = read_corpus("tess", real), read_corpus("tess", root)
    assert len(through.manifest) == len(direct.manifest) > 0
    assert all(Path(p).is_relative_to(root) for p in through.manifest["path"])  # paths stay under the link
    assert data_fingerprint(through.manifest) == data_fingerprint(direct.manifest)
