"""Tiny fake corpora in each corpus's official layout, for tests and demos.

:func:`write_synthetic_corpus` writes correctly named audio files in the
folder layout of the real distribution (plus CREMA-D's
``VideoDemographics.csv`` and IEMOCAP's ``EmoEvaluation`` label files), at the
corpus's native sample rate, so that :func:`serlib.data.corpora.read_corpus` and
everything downstream can be exercised where the real audio is not available.

The audio is speech-like and *learnable*: a harmonic voice whose pitch,
pitch glide, spectral tilt, syllable rate and level depend on the emotion (and
only slightly on the speaker), with a short silent lead-in and tail and light
noise (see :func:`emotion_tone`).

Command line::

    python -m serlib.data.synthetic CORPUS OUT_DIR [--per-class N] [--seconds S]
    python -m serlib.data.synthetic all OUT_DIR      # every corpus into OUT_DIR/<corpus>
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from serlib.data.corpora import AUDIO_EXTENSIONS, CANONICAL_LABELS, CORPORA, canonical_corpus_name

NATIVE_SAMPLE_RATES: dict[str, int] = {
    "ravdess": 48000, "cremad": 16000, "savee": 44100, "iemocap": 16000,
    "tess": 24414, "emodb": 16000, "urdu": 44100,
}
DEFAULT_SPEAKERS: dict[str, int] = {
    "ravdess": 8, "cremad": 8, "savee": 4, "iemocap": 10, "tess": 2, "emodb": 10, "urdu": 6,
}

_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF"}
_MAC_RESOURCE_FORK = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "


@dataclass(frozen=True)
class _Utt:
    """One file to write: path relative to the root without extension, label, speaker."""

    stem: str
    label: str
    speaker: str


@dataclass
class _Layout:
    utterances: list[_Utt] = field(default_factory=list)
    side_files: dict[str, str | bytes] = field(default_factory=dict)  # relative path -> content
    subdir: str = ""  # the corpus root inside the folder written to (IEMOCAP)


# ---------------------------------------------------------------- the signal


def emotion_tone(
    label: str,
    sample_rate: int,
    seconds: float,
    rng: np.random.Generator,
    speaker_shift: float = 0.0,
) -> np.ndarray:
    """A short speech-like signal whose character depends on ``label``.

    Parameters
    ----------
    label : str
        One of :data:`serlib.data.corpora.CANONICAL_LABELS`.
    sample_rate : int
        Output sample rate in Hz.
    seconds : float
        Total duration, including a silent lead-in and tail of
        ``min(0.1, 0.15 * seconds)`` seconds each.
    rng : numpy.random.Generator
        Source of the small random variations (phases, pitch jitter, noise).
    speaker_shift : float, default 0.0
        Relative pitch offset of the speaker (keep within about +-0.05 so
        that the emotion, not the speaker, dominates the pitch).

    Returns
    -------
    numpy.ndarray
        float32 mono signal with peak below 0.5.

    Notes
    -----
    With ``k`` the label's index in ``CANONICAL_LABELS``: fundamental
    ``110 * 1.12**k`` Hz, a falling/flat/rising glide by ``k % 3``, spectral
    tilt and level by ``k % 4``, and an amplitude modulation ("syllables") at
    ``2.5 + 0.8 k`` Hz; plus Gaussian noise at about -50 dBFS.
    """
    k = CANONICAL_LABELS.index(label)
    n = max(1, int(round(seconds * sample_rate)))
    t = np.arange(n) / sample_rate
    pad = min(0.1, 0.15 * seconds)
    voiced_len = max(seconds - 2 * pad, 1e-3)
    progress = np.clip((t - pad) / voiced_len, 0.0, 1.0)

    f0 = 110.0 * 1.12**k * (1.0 + speaker_shift) * (1.0 + rng.uniform(-0.015, 0.015))
    glide = 0.2 * (k % 3 - 1)
    phase = 2 * np.pi * np.cumsum(f0 * (1.0 + glide * (progress - 0.5))) / sample_rate
    tilt = 0.5 + 0.35 * (k % 4)
    voice = np.zeros(n)
    for h in range(1, 9):
        if h * f0 * 1.2 >= 0.45 * sample_rate:
            break
        voice += h**-tilt * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    voice /= max(float(np.max(np.abs(voice))), 1e-9)

    syllables = 0.35 + 0.65 * (0.5 - 0.5 * np.cos(2 * np.pi * (2.5 + 0.8 * k) * (t - pad)))
    ramp = np.clip((t - pad) / 0.01, 0, 1) * np.clip((seconds - pad - t) / 0.01, 0, 1)
    level = 0.15 + 0.06 * (k % 4)
    signal = level * syllables * ramp * voice + rng.normal(0.0, 0.003, n)
    return signal.astype(np.float32)


def _speaker_shift(index: int) -> float:
    """Deterministic, well-spread pitch offsets in [-0.05, 0.05] for speaker number ``index``."""
    return 0.05 * (2 * ((index * 0.6180339887) % 1.0) - 1)


# ---------------------------------------------------------------- layouts


def _check(corpus: str, what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"synthetic {corpus}: {what} must be in {low}..{high}, got {value}")


def _ravdess(n_speakers: int, per_class: int) -> _Layout:
    _check("ravdess", "n_speakers", n_speakers, 1, 24)
    _check("ravdess", "per_class", per_class, 1, 4)  # neutral has 2 statements x 2 repetitions
    layout = _Layout()
    for actor, emotion, i in itertools.product(range(1, n_speakers + 1), range(1, 9), range(per_class)):
        if emotion == 1:  # neutral has no strong intensity
            intensity, statement, repetition = 1, i % 2 + 1, i // 2 + 1
        else:
            intensity, statement, repetition = i % 2 + 1, (i // 2) % 2 + 1, i // 4 + 1
        name = f"03-01-{emotion:02d}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}"
        layout.utterances.append(_Utt(f"Actor_{actor:02d}/{name}", CANONICAL_LABELS[emotion - 1], f"{actor:02d}"))
    return layout


_CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")


def _cremad(n_speakers: int, per_class: int) -> _Layout:
    _check("cremad", "n_speakers", n_speakers, 1, 91)
    _check("cremad", "per_class", per_class, 1, len(_CREMAD_SENTENCES))
    layout = _Layout()
    demographics = ["ActorID,Age,Sex,Race,Ethnicity"]
    for a in range(n_speakers):
        actor = str(1001 + a)
        demographics.append(f"{actor},{25 + a % 40},{'Male' if a % 2 == 0 else 'Female'},Caucasian,Not Hispanic")
        for (code, label), sentence in itertools.product(_CREMAD_EMOTIONS.items(), _CREMAD_SENTENCES[:per_class]):
            level = "HI" if sentence == "IEO" and code != "NEU" else "XX"
            layout.utterances.append(_Utt(f"AudioWAV/{actor}_{sentence}_{code}_{level}", label, actor))
    layout.side_files["VideoDemographics.csv"] = "\n".join(demographics) + "\n"
    return layout


_SAVEE_EMOTIONS = {
    "a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise",
}
_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")


def _savee(n_speakers: int, per_class: int) -> _Layout:
    _check("savee", "n_speakers", n_speakers, 1, 4)
    _check("savee", "per_class", per_class, 1, 15)
    return _Layout([
        _Utt(f"AudioData/{spk}/{code}{i + 1:02d}", label, spk)
        for spk, (code, label), i in itertools.product(
            _SAVEE_SPEAKERS[:n_speakers], _SAVEE_EMOTIONS.items(), range(per_class)
        )
    ])


_IEMOCAP_CLASSES = (("neu", "neutral"), ("hap", "happy"), ("ang", "angry"), ("sad", "sad"))
_IEMOCAP_OUT_OF_PROTOCOL = {"F": ("fru", "angry"), "M": ("xxx", "neutral")}  # one each per session


def _iemocap(n_speakers: int, per_class: int) -> _Layout:
    _check("iemocap", "n_speakers", n_speakers, 2, 10)
    if n_speakers % 2:
        raise ValueError(f"synthetic iemocap: n_speakers must be even (2 per session), got {n_speakers}")
    layout = _Layout(subdir="IEMOCAP_full_release")
    for session in range(1, n_speakers // 2 + 1):
        dialogs = (f"Ses{session:02d}F_impro01", f"Ses{session:02d}M_script01_1")
        turns: dict[str, list[tuple[str, str]]] = {d: [] for d in dialogs}  # dialog -> [(utt, raw label)]
        numbers: Counter[tuple[str, str]] = Counter()  # (dialog, gender) -> utterances so far
        for gender in ("F", "M"):
            plan = [("exc" if raw == "hap" and i % 2 else raw, label)
                    for (raw, label), i in itertools.product(_IEMOCAP_CLASSES, range(per_class))]
            plan.append(_IEMOCAP_OUT_OF_PROTOCOL[gender])
            for j, (raw, label) in enumerate(plan):
                dialog = dialogs[j % 2]
                utt = f"{dialog}_{gender}{numbers[dialog, gender]:03d}"
                numbers[dialog, gender] += 1
                turns[dialog].append((utt, raw))
                wav = f"Session{session}/sentences/wav/{dialog}/{utt}"
                layout.utterances.append(_Utt(wav, label, f"Ses{session:02d}{gender}"))
        for dialog, utts in turns.items():
            evaluation = f"Session{session}/dialog/EmoEvaluation"
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for i, (utt, raw) in enumerate(utts):
                lines += [f"[{3.0 * i + 0.5:.4f} - {3.0 * i + 2.5:.4f}]\t{utt}\t{raw}\t[2.5000, 3.0000, 3.5000]",
                          "C-E1:\tNeutral;\t()", "A-E1:\tval 3; act 3; dom  3;\t()", ""]
            layout.side_files[f"{evaluation}/{dialog}.txt"] = "\n".join(lines) + "\n"
            layout.side_files[f"{evaluation}/._{dialog}.txt"] = _MAC_RESOURCE_FORK
            layout.side_files[f"{evaluation}/Categorical/{dialog}_e1_cat.txt"] = "".join(
                f"{utt} :Neutral; ()\n" for utt, _ in utts)
    return layout


_TESS_FOLDERS = {  # as in the real release, capitalisation quirks included
    "OAF": {"angry": "angry", "disgust": "disgust", "fear": "Fear", "happy": "happy",
            "neutral": "neutral", "surprise": "Pleasant_surprise", "sad": "Sad"},
    "YAF": {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
            "neutral": "neutral", "surprise": "pleasant_surprised", "sad": "sad"},
}
_TESS_WORDS = ("back", "bar", "base", "bath", "bean", "beg", "bite", "boat", "bone", "book",
               "bought", "burn", "cab", "calm", "came", "cause", "chain", "chair", "chalk", "chat")


def _tess(n_speakers: int, per_class: int) -> _Layout:
    _check("tess", "n_speakers", n_speakers, 1, 2)
    _check("tess", "per_class", per_class, 1, len(_TESS_WORDS))
    layout = _Layout()
    for spk in ("OAF", "YAF")[:n_speakers]:
        for label, folder in _TESS_FOLDERS[spk].items():
            token = "ps" if label == "surprise" else label
            layout.utterances += [
                _Utt(f"{spk}_{folder}/{spk}_{word}_{token}", label, spk) for word in _TESS_WORDS[:per_class]
            ]
    return layout


_EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
_EMODB_SPEAKERS = ("03", "08", "10", "09", "11", "13", "12", "14", "15", "16")  # alternating M/F
_EMODB_TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")


def _emodb(n_speakers: int, per_class: int) -> _Layout:
    _check("emodb", "n_speakers", n_speakers, 1, len(_EMODB_SPEAKERS))
    _check("emodb", "per_class", per_class, 1, 26 * len(_EMODB_TEXTS))
    return _Layout([
        _Utt(f"wav/{spk}{_EMODB_TEXTS[i % 10]}{letter}{'abcdefghijklmnopqrstuvwxyz'[i // 10]}", label, spk)
        for spk, (letter, label), i in itertools.product(
            _EMODB_SPEAKERS[:n_speakers], _EMODB_EMOTIONS.items(), range(per_class)
        )
    ])


_URDU_FOLDERS = (("Angry", "A", "angry"), ("Happy", "H", "happy"), ("Neutral", "N", "neutral"), ("Sad", "S", "sad"))


def _urdu(n_speakers: int, per_class: int) -> _Layout:
    _check("urdu", "n_speakers", n_speakers, 1, 38)
    layout = _Layout()
    speakers = [f"S{'MF'[i % 2]}{i // 2 + 1}" for i in range(n_speakers)]  # SM1, SF1, SM2, ...
    file_numbers = dict.fromkeys(speakers, 0)
    for folder, letter, label in _URDU_FOLDERS:
        for count, (spk, _) in enumerate(itertools.product(speakers, range(per_class)), start=1):
            file_numbers[spk] += 1
            layout.utterances.append(_Utt(f"{folder}/{spk}_F{file_numbers[spk]}_{letter}{count:03d}", label, spk))
    return layout


_LAYOUTS = {"ravdess": _ravdess, "cremad": _cremad, "savee": _savee, "iemocap": _iemocap,
            "tess": _tess, "emodb": _emodb, "urdu": _urdu}


# ---------------------------------------------------------------- writing


def _normalise_ext(ext: str) -> str:
    ext = ext if ext.startswith(".") else f".{ext}"
    if ext.lower() not in AUDIO_EXTENSIONS:
        raise ValueError(f"extension {ext!r} not supported; use one of {', '.join(AUDIO_EXTENSIONS)}")
    return ext


def write_synthetic_corpus(
    corpus: str,
    root: str | Path,
    *,
    n_speakers: int | None = None,
    per_class: int = 2,
    seconds: float = 0.6,
    sample_rate: int | None = None,
    ext: str = ".wav",
    seed: int = 0,
) -> Path:
    """Write a tiny fake corpus in the official layout of ``corpus``.

    Parameters
    ----------
    corpus : str
        One of :data:`serlib.data.corpora.CORPORA`.
    root : str or pathlib.Path
        Folder to write into (created if needed).
    n_speakers : int, optional
        Number of speakers; defaults to :data:`DEFAULT_SPEAKERS` (enough for
        speaker-independent splits: RAVDESS 8 actors alternating gender,
        CREMA-D 8, SAVEE 4, IEMOCAP 10 = 5 sessions x 2, TESS 2, EmoDB all
        10 real speaker ids, URDU 6 alternating gender).
    per_class : int, default 2
        Utterances per speaker and emotion class.
    seconds : float, default 0.6
        Duration of every clip.
    sample_rate : int, optional
        Defaults to the corpus's native rate (:data:`NATIVE_SAMPLE_RATES`).
    ext : str, default ".wav"
        Audio extension, one of :data:`serlib.data.corpora.AUDIO_EXTENSIONS`
        (16-bit PCM; Vorbis for ``.ogg``).
    seed : int, default 0
        Seed of the signal variations (the layout itself is deterministic).

    Returns
    -------
    pathlib.Path
        The root to pass to :func:`serlib.data.corpora.read_corpus`: ``root``
        itself, or ``root / "IEMOCAP_full_release"`` for IEMOCAP.

    Notes
    -----
    Besides the audio this writes CREMA-D's ``VideoDemographics.csv`` and
    IEMOCAP's ``EmoEvaluation/<dialog>.txt`` (``exc`` for every second
    happy utterance, and per session one ``fru`` and one ``xxx`` utterance
    outside the 4-class protocol), together with the release's clutter that
    readers must ignore (``._`` resource forks, ``Categorical/`` files).
    """
    key = canonical_corpus_name(corpus)
    ext = _normalise_ext(ext)
    layout = _LAYOUTS[key](DEFAULT_SPEAKERS[key] if n_speakers is None else n_speakers, per_class)
    rate = NATIVE_SAMPLE_RATES[key] if sample_rate is None else int(sample_rate)
    out = Path(root).expanduser().absolute() / layout.subdir
    rng = np.random.default_rng([seed, CORPORA.index(key)])
    speaker_index: dict[str, int] = {}
    subtype = "VORBIS" if ext.lower() == ".ogg" else "PCM_16"
    for utt in layout.utterances:
        path = out / f"{utt.stem}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        shift = _speaker_shift(speaker_index.setdefault(utt.speaker, len(speaker_index)))
        wave = emotion_tone(utt.label, rate, seconds, rng, speaker_shift=shift)
        sf.write(str(path), wave, rate, subtype=subtype, format=_FORMATS[ext.lower()])
    for relative, content in layout.side_files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python -m serlib.data.synthetic --help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m serlib.data.synthetic",
        description="Write tiny synthetic corpora in the official layouts.",
    )
    parser.add_argument("corpus", choices=[*CORPORA, "all"], help="corpus to write, or 'all' (into OUT_DIR/<corpus>)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--per-class", type=int, default=2, help="utterances per speaker and class (default 2)")
    parser.add_argument("--seconds", type=float, default=0.6, help="clip duration (default 0.6)")
    parser.add_argument("--n-speakers", type=int, default=None, help="speakers (default: per corpus)")
    parser.add_argument("--ext", default=".wav", help="audio extension (default .wav)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    targets = list(CORPORA) if args.corpus == "all" else [args.corpus]
    for name in targets:
        folder = args.out_dir / name if args.corpus == "all" else args.out_dir
        root = write_synthetic_corpus(
            name, folder, n_speakers=args.n_speakers, per_class=args.per_class,
            seconds=args.seconds, ext=args.ext, seed=args.seed,
        )
        print(f"{name}: {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
