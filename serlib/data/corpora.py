"""Corpus folder -> manifest table, one reader per corpus.

Every reader scans *file names only* (audio is never opened, so a scan of a
full corpus takes well under a second) and produces the same table, the
*manifest*, with the columns :data:`MANIFEST_COLUMNS` followed by a few
corpus-specific extras:

========  ===============================================================
corpus    extra columns
========  ===============================================================
ravdess   ``intensity`` (normal/strong), ``statement`` (1/2),
          ``repetition`` (1/2), ``vocal_channel`` (speech/song)
cremad    ``sentence`` (e.g. ``WSI``), ``level`` (LO/MD/HI/XX)
savee     ``sentence_index`` (int)
iemocap   ``session`` (int), ``dialog``, ``raw_label``, ``improvised`` (bool)
tess      ``word``
emodb     ``text`` (e.g. ``a01``), ``version`` (e.g. ``a``)
urdu      ``file_number`` (int)
========  ===============================================================

Nothing is dropped silently: audio files whose names do not parse, labels
outside a corpus's protocol (IEMOCAP ``fru``, ``xxx``...), RAVDESS song files
when songs are not wanted, duplicate utterances, and entries that cannot be
read at all (a FIFO or other non-regular file named like a clip, a dangling
symbolic link or a link loop, a folder the user may not list) are listed with
a reason in :attr:`CorpusScan.unrecognised`, and the rest of the corpus is
read.  Folder links are followed once (a link back to a folder already
scanned is reported, not followed again).  A root that does not look like the corpus at
all raises :class:`CorpusLayoutError` with one message saying what was
expected where and what was found.

``utt_id`` is the file stem, exactly the stem of the ``path`` column of the
EmoBox fold files (the SAVEE folder layout gets the flattened name), so that
:mod:`serlib.data.splits` can map benchmark folds onto manifests: RAVDESS
``03-01-07-02-02-02-11``, CREMA-D ``1052_WSI_ANG_XX``, SAVEE ``JE_n23``,
IEMOCAP ``Ses01F_impro04_F000``, TESS ``OAF_back_angry``, EmoDB ``03a01Fa``,
URDU ``SM1_F10_A010``.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from serlib.core.files import display_path, undecodable_reason, unreadable_reason

CANONICAL_LABELS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fear",
    "disgust",
    "surprise",
    "boredom",
)
def ordered_labels(labels: Iterable[str]) -> list[str]:
    """Labels in :data:`CANONICAL_LABELS` order, then any other label (a corpus of one's own) alphabetically."""
    present = set(labels)
    return [lab for lab in CANONICAL_LABELS if lab in present] + sorted(present - set(CANONICAL_LABELS))


CORPORA: tuple[str, ...] = ("ravdess", "cremad", "savee", "iemocap", "tess", "emodb", "urdu")
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".aiff", ".aif")
MANIFEST_COLUMNS: list[str] = ["utt_id", "path", "corpus", "speaker", "gender", "label"]

class _DisplayNames(dict):
    """Corpus key -> the name readers know; a corpus of one's own (a manifest) is shown by its own name."""

    def __missing__(self, key: str) -> str:
        return key


DISPLAY_NAMES: dict[str, str] = _DisplayNames({
    "ravdess": "RAVDESS",
    "cremad": "CREMA-D",
    "savee": "SAVEE",
    "iemocap": "IEMOCAP",
    "tess": "TESS",
    "emodb": "EmoDB",
    "urdu": "URDU",
})

_SEARCH_DEPTH = 2  # how far below the given root a reader looks for the corpus's own root
_LISTED_ENTRIES = 8  # entries shown in a layout error


class CorpusLayoutError(ValueError):
    """A folder does not look like the corpus it was given as.

    The message names the corpus, the folder, the expected layout and what
    the folder actually holds.
    """


@dataclass(eq=False)
class CorpusScan:
    """Result of :func:`read_corpus`.

    Attributes
    ----------
    manifest : pandas.DataFrame
        One row per usable utterance: :data:`MANIFEST_COLUMNS` then the
        corpus's extra columns, sorted by ``utt_id``, index reset.
    unrecognised : pandas.DataFrame
        Columns ``path`` and ``reason``: every audio file in the corpus
        that is *not* in the manifest, and why.
    corpus : str
        Corpus key (one of :data:`CORPORA`).
    root : pathlib.Path
        The root the scan was started from (absolute).
    """

    manifest: pd.DataFrame
    unrecognised: pd.DataFrame
    corpus: str = ""
    root: Path = field(default_factory=Path)

    @property
    def n_files(self) -> int:
        """Number of utterances in the manifest."""
        return len(self.manifest)

    @property
    def n_unrecognised(self) -> int:
        """Number of audio files left out of the manifest."""
        return len(self.unrecognised)

    @property
    def speakers(self) -> list[str]:
        """Sorted distinct speaker ids."""
        return sorted(self.manifest["speaker"].unique())

    @property
    def labels(self) -> list[str]:
        """Distinct labels present (:func:`ordered_labels`)."""
        return ordered_labels(set(self.manifest["label"]))

    def summary(self) -> str:
        """One line: corpus, files, speakers, per-label counts, unrecognised."""
        counts = self.manifest["label"].value_counts()
        per_label = ", ".join(f"{lab} {counts[lab]}" for lab in self.labels)
        return (
            f"{DISPLAY_NAMES.get(self.corpus, self.corpus)}: {self.n_files} files, "
            f"{len(self.speakers)} speakers ({per_label}); {self.n_unrecognised} unrecognised"
        )


class _Unrecognised(Exception):
    """Raised by a per-file parser: the file is reported with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_Row = dict[str, Any]
_Rejected = tuple[str, str]  # (path, reason)
_Reader = Callable[[list[Path], bool], tuple[list[_Row], list[_Rejected]]]


# ---------------------------------------------------------------- shared helpers


def _is_hidden(name: str) -> bool:
    """macOS resource forks (``._x``), ``.DS_Store``, ``__MACOSX`` and other dot files."""
    return name.startswith(".") or name == "__MACOSX"


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not _is_hidden(path.name)


@dataclass
class _Listing:
    """Audio files found below some folders, and the entries that could not be listed or read."""

    files: list[Path] = field(default_factory=list)
    problems: list[_Rejected] = field(default_factory=list)

    def __add__(self, other: "_Listing") -> "_Listing":
        return _Listing(self.files + other.files, self.problems + other.problems)


def _list_dir(folder: str) -> list[os.DirEntry[str]]:
    """The entries of ``folder`` (raises OSError when it cannot be listed)."""
    with os.scandir(folder) as it:
        return list(it)


def _audio_files(*folders: Path) -> _Listing:
    """Audio files anywhere below ``folders`` (hidden files and folders skipped), sorted.

    Folders that cannot be listed (permissions, I/O errors) and links back to
    a folder already scanned are returned as problems with a reason instead of
    losing their files silently.
    """
    listing = _Listing()
    seen: set[tuple[int, int]] = set()
    stack = [str(folder) for folder in reversed(folders)]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            entries = _list_dir(folder)
        except OSError as err:
            listing.problems.append((folder, f"folder cannot be read ({err.strerror or err}): its files are left out"))
            continue
        if (st.st_dev, st.st_ino) in seen:
            listing.problems.append((folder, "link to a folder that is already scanned: not followed again"))
            continue
        seen.add((st.st_dev, st.st_ino))
        subfolders = []
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:  # a link loop, for instance: reported below if named like a clip
                is_dir = False
            if is_dir:
                subfolders.append(entry.path)
            elif _is_audio(Path(entry.name)):
                listing.files.append(Path(entry.path))
        stack.extend(sorted(subfolders, reverse=True))
    listing.files.sort()
    return listing


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not _is_hidden(p.name))
    except OSError:
        return []


def _describe(folder: Path) -> str:
    """What ``folder`` holds, for error messages: ``3 entries: a/, b.txt, c.wav``."""
    if not folder.exists():
        return "the folder does not exist"
    if not folder.is_dir():
        return "a file, not a folder"
    try:
        _list_dir(str(folder))
    except OSError as err:
        return f"a folder that cannot be read ({err.strerror or err})"
    entries = _children(folder)
    if not entries:
        return "an empty folder"
    shown = [p.name + ("/" if p.is_dir() else "") for p in entries[:_LISTED_ENTRIES]]
    more = ", ..." if len(entries) > _LISTED_ENTRIES else ""
    noun = "entry" if len(entries) == 1 else "entries"
    return f"{len(entries)} {noun}: {', '.join(shown)}{more}"


def _child_matches(folder: Path, pattern: re.Pattern[str], kind: str) -> bool:
    """Whether ``folder`` has a child whose name matches ``pattern``.

    ``kind`` is ``"dir"``, ``"audio"`` (an audio file) or ``"any"``.
    """
    try:
        children = folder.iterdir()
        for child in children:
            if _is_hidden(child.name) or not pattern.match(child.name):
                continue
            if kind == "any" or (kind == "dir" and child.is_dir()) or (kind == "audio" and _is_audio(child)):
                return True
    except OSError:
        return False
    return False


def _find_bases(root: Path, looks_right: Callable[[Path], bool]) -> list[Path]:
    """Folders at the shallowest depth (0 .. ``_SEARCH_DEPTH``) below ``root`` that look right.

    This lets a reader accept the corpus root itself or a parent of it (the
    EmoBox layout ``ravdess/audio/Audio_Speech_Actors_01-24/``, a zip's extra
    top folder...).  All matches at that depth are returned, so that e.g. a
    RAVDESS parent holding both the speech and the song archive yields both.
    """
    level = [root] if root.is_dir() else []
    for _depth in range(_SEARCH_DEPTH + 1):
        hits = [d for d in level if looks_right(d)]
        if hits:
            return hits
        level = [c for d in level for c in _children(d) if c.is_dir()]
    return []


def _parse_all(listing: _Listing, parse: Callable[[Path], _Row]) -> tuple[list[_Row], list[_Rejected]]:
    """Apply ``parse`` to each readable file; files it rejects, unreadable ones and listing problems come back with a reason."""
    rows: list[_Row] = []
    rejected: list[_Rejected] = list(listing.problems)
    for path in listing.files:
        unreadable = unreadable_reason(path) or undecodable_reason(path)
        if unreadable:
            rejected.append((str(path), unreadable))
            continue
        try:
            row = parse(path)
        except _Unrecognised as exc:
            rejected.append((str(path), exc.reason))
            continue
        row["path"] = str(path)
        rows.append(row)
    return rows, rejected


def _match(pattern: re.Pattern[str], path: Path, expected: str) -> re.Match[str]:
    m = pattern.match(path.stem)
    if m is None:
        raise _Unrecognised(f"name does not match {expected}")
    return m


def _lookup(table: dict[str, str], code: str, what: str) -> str:
    try:
        return table[code]
    except KeyError:
        raise _Unrecognised(f"unknown {what} code {code!r}") from None


def _row(utt_id: str, speaker: str, gender: str | None, label: str, **extras: Any) -> _Row:
    return {"utt_id": utt_id, "speaker": speaker, "gender": gender, "label": label, **extras}


# ---------------------------------------------------------------- RAVDESS

_RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fear", "07": "disgust", "08": "surprise",
}
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_RAVDESS_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$", re.IGNORECASE)


def _read_ravdess(bases: list[Path], include_song: bool) -> tuple[list[_Row], list[_Rejected]]:
    def parse(path: Path) -> _Row:
        m = _match(_RAVDESS_NAME, path, "MM-VV-EE-II-SS-RR-AA")
        modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
        if modality != "03":
            raise _Unrecognised(f"modality {modality} is not audio-only (03)")
        if channel not in ("01", "02"):
            raise _Unrecognised(f"unknown vocal channel code {channel!r}")
        if channel == "02" and not include_song:
            raise _Unrecognised("song (include_song=False)")
        if intensity not in ("01", "02") or statement not in ("01", "02") or repetition not in ("01", "02"):
            raise _Unrecognised("intensity, statement and repetition must be 01 or 02")
        folder = _RAVDESS_ACTOR_DIR.match(path.parent.name)
        if folder and folder.group(1) != actor:
            raise _Unrecognised(f"actor {actor} in the name but the file is in {path.parent.name}/")
        return _row(
            path.stem, actor, "M" if int(actor) % 2 else "F",
            _lookup(_RAVDESS_EMOTIONS, emotion, "emotion"),
            intensity="normal" if intensity == "01" else "strong",
            statement=int(statement),
            repetition=int(repetition),
            vocal_channel="speech" if channel == "01" else "song",
        )

    return _parse_all(_audio_files(*bases), parse)


# ---------------------------------------------------------------- CREMA-D

_CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMAD_LEVELS = ("LO", "MD", "HI", "XX")
_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_CREMAD_DEMOGRAPHICS = "VideoDemographics.csv"


def _cremad_genders(folders: Iterable[Path]) -> dict[str, str]:
    """ActorID -> "M"/"F" from the first ``VideoDemographics.csv`` found in ``folders``.

    Raises
    ------
    CorpusLayoutError
        The file exists but cannot be read as the CREMA-D demographics table.
    """
    for folder in folders:
        for candidate in _children(folder):
            if candidate.name.lower() != _CREMAD_DEMOGRAPHICS.lower() or unreadable_reason(candidate):
                continue
            try:
                with candidate.open(newline="", encoding="utf-8-sig") as fh:
                    return {
                        str(rec.get("ActorID") or "").strip(): {"male": "M", "female": "F"}[rec["Sex"].strip().lower()]
                        for rec in csv.DictReader(fh)
                        if str(rec.get("Sex") or "").strip().lower() in ("male", "female")
                    }
            except (OSError, UnicodeDecodeError, csv.Error) as err:
                raise CorpusLayoutError(
                    f"{candidate}: cannot read the CREMA-D demographics table ({type(err).__name__}: {err}); "
                    "fix or remove the file (genders are then unknown)"
                ) from None
    return {}


def _read_cremad(bases: list[Path], include_song: bool) -> tuple[list[_Row], list[_Rejected]]:
    genders = _cremad_genders([bases[0], bases[0].parent])

    def parse(path: Path) -> _Row:
        actor, sentence, emotion, level = _match(_CREMAD_NAME, path, "AAAA_SSS_EEE_LL").groups()
        if level not in _CREMAD_LEVELS:
            raise _Unrecognised(f"unknown level code {level!r}")
        return _row(
            path.stem, actor, genders.get(actor), _lookup(_CREMAD_EMOTIONS, emotion, "emotion"),
            sentence=sentence, level=level,
        )

    return _parse_all(_audio_files(*bases), parse)


# ---------------------------------------------------------------- SAVEE

_SAVEE_EMOTIONS = {
    "a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise",
}
_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
_SAVEE_CODE = r"(sa|su|a|d|f|h|n)(\d\d)"
_SAVEE_FOLDER_NAME = re.compile(rf"^{_SAVEE_CODE}$")
_SAVEE_FLAT_NAME = re.compile(rf"^([A-Z]{{2}})_{_SAVEE_CODE}$")
_SAVEE_SPEAKER_DIR = re.compile(r"^[A-Z]{2}$")


def _read_savee(bases: list[Path], include_song: bool) -> tuple[list[_Row], list[_Rejected]]:
    def parse(path: Path) -> _Row:
        flat = _SAVEE_FLAT_NAME.match(path.stem)
        if flat:
            speaker, code, number = flat.groups()
        else:
            in_folder = _SAVEE_FOLDER_NAME.match(path.stem)
            if not (in_folder and _SAVEE_SPEAKER_DIR.match(path.parent.name)):
                raise _Unrecognised("name does not match <SPK>/<code><NN> or <SPK>_<code><NN>")
            speaker, (code, number) = path.parent.name, in_folder.groups()
        return _row(f"{speaker}_{code}{number}", speaker, "M", _SAVEE_EMOTIONS[code], sentence_index=int(number))

    return _parse_all(_audio_files(*bases), parse)


# ---------------------------------------------------------------- IEMOCAP

_IEMOCAP_EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
_IEMOCAP_LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses\w+)\s+(\S+)\s+\[")
_IEMOCAP_UTT = re.compile(r"^Ses(\d\d)[FM]_(\w+)_([FM])\d{3}$")
_IEMOCAP_SESSION_DIR = re.compile(r"^Session\d+$")


def _iemocap_labels(base: Path) -> tuple[dict[str, str], list[_Rejected]]:
    """utterance id -> raw label, from every ``Session*/dialog/EmoEvaluation/*.txt``, and the label files that cannot be read."""
    labels: dict[str, str] = {}
    problems: list[_Rejected] = []
    for txt in sorted(base.glob("Session*/dialog/EmoEvaluation/*.txt")):
        if _is_hidden(txt.name):
            continue
        unreadable = unreadable_reason(txt)
        try:
            if unreadable:
                raise OSError(unreadable.removeprefix("unreadable: "))
            with txt.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    m = _IEMOCAP_LABEL_LINE.match(line)
                    if m:
                        labels[m.group(1)] = m.group(2)
        except OSError as err:
            problems.append((str(txt), f"label file cannot be read ({err.strerror or err}): its utterances have no label"))
    return labels, problems


def _read_iemocap(bases: list[Path], include_song: bool) -> tuple[list[_Row], list[_Rejected]]:
    labels: dict[str, str] = {}
    files = _Listing()
    for base in bases:
        found, problems = _iemocap_labels(base)
        labels.update(found)
        files = files + _audio_files(*sorted(base.glob("Session*/sentences/wav"))) + _Listing(problems=problems)

    def parse(path: Path) -> _Row:
        m = _match(_IEMOCAP_UTT, path, "SesNN<F|M>_<dialog>_<F|M>NNN")
        session, _, speaker_gender = m.groups()
        raw = labels.get(path.stem)
        if raw is None:
            raise _Unrecognised("no label line in Session*/dialog/EmoEvaluation/*.txt")
        if raw not in _IEMOCAP_EMOTIONS:
            raise _Unrecognised(f"label {raw!r} outside the 4-class protocol")
        dialog = path.stem.rsplit("_", 1)[0]
        return _row(
            path.stem, f"Ses{session}{speaker_gender}", speaker_gender, _IEMOCAP_EMOTIONS[raw],
            session=int(session), dialog=dialog, raw_label=raw, improvised="impro" in dialog,
        )

    return _parse_all(files, parse)


# ---------------------------------------------------------------- TESS

_TESS_EMOTIONS = {
    "angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral", "sad": "sad",
    "ps": "surprise", "pleasant_surprise": "surprise", "pleasant_surprised": "surprise",
}
_TESS_EMOTION_RE = "|".join(sorted(map(re.escape, _TESS_EMOTIONS), key=len, reverse=True))
_TESS_NAME = re.compile(rf"^(OAF|YAF)_([A-Za-z]+)_({_TESS_EMOTION_RE})$", re.IGNORECASE)
_TESS_FOLDER = re.compile(rf"^(OAF|YAF)_({_TESS_EMOTION_RE})$", re.IGNORECASE)
_TESS_MARKER = re.compile(r"^(OAF|YAF)_", re.IGNORECASE)


def _read_tess(bases: list[Path], include_song: bool) -> tuple[list[_Row], list[_Rejected]]:
    def parse(path: Path) -> _Row:
        speaker, word, emotion = _match(_TESS_NAME, path, "<OAF|YAF>_<word>_<emotion>").groups()
        speaker, label = speaker.upper(), _TESS_EMOTIONS[emotion.lower()]
        folder = _TESS_FOLDER.match(path.parent.name)
        if folder:
            f_speaker, f_label = folder.group(1).upper(), _TESS_EMOTIONS[folder.group(2).lower()]
            if (f_speaker, f_label) != (speaker, label):
                raise _Unrecognised(
                    f"name says {speaker} {label} but folder {path.parent.name}/ says {f_speaker} {f_label}"
                )
        return _row(path.stem, speaker, "F", label, word=word)

    return _parse_all(_audio_files(*bases), parse)


# ---------------------------------------------------------------- EmoDB

_EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
_EMODB_GENDERS = {s: "M" for s in ("03", "10", "11", "12", "15")} | {s: "F" for s in ("08", "09", "13", "14", "16")}
_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z])$")


def _read_emodb(bases: list[Path], include_song: bool) -> tuple[list[_Row], list[_Rejected]]:
    def parse(path: Path) -> _Row:
        speaker, text, emotion, version = _match(_EMODB_NAME, path, "SSTTTEv (e.g. 03a01Fa)").groups()
        label = _lookup(_EMODB_EMOTIONS, emotion, "emotion")
        return _row(path.stem, speaker, _EMODB_GENDERS.get(speaker), label, text=text, version=version)

    return _parse_all(_audio_files(*bases), parse)


# ---------------------------------------------------------------- URDU

_URDU_FOLDERS = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad"}
_URDU_NAME = re.compile(r"^S([MF])(\d+)_F(\d+)_([AHNS])(\d+)$")
_URDU_FOLDER_DIR = re.compile(r"^(angry|happy|neutral|sad)$", re.IGNORECASE)


def _read_urdu(bases: list[Path], include_song: bool) -> tuple[list[_Row], list[_Rejected]]:
    def parse(path: Path) -> _Row:
        folder_label = _URDU_FOLDERS.get(path.parent.name.lower())
        if folder_label is None:
            raise _Unrecognised("not inside an Angry/Happy/Neutral/Sad folder")
        m = _match(_URDU_NAME, path, "S<M|F><id>_F<nn>_<A|H|N|S><nnn>")
        gender, speaker_number, file_number = m.group(1, 2, 3)
        # The label comes from the folder (the emotion letter in the name agrees in the release).
        return _row(path.stem, f"S{gender}{speaker_number}", gender, folder_label, file_number=int(file_number))

    return _parse_all(_audio_files(*bases), parse)


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class _Spec:
    expected: str  # layout description used in CorpusLayoutError
    looks_right: Callable[[Path], bool]  # does this folder look like the corpus root?
    read: _Reader
    extras: tuple[str, ...]


def _has(pattern: str, kind: str, flags: int = 0) -> Callable[[Path], bool]:
    compiled = re.compile(pattern, flags)
    return lambda folder: _child_matches(folder, compiled, kind)


def _any_of(*tests: Callable[[Path], bool]) -> Callable[[Path], bool]:
    return lambda folder: any(t(folder) for t in tests)


_SPECS: dict[str, _Spec] = {
    "ravdess": _Spec(
        "folders Actor_01..Actor_24 with files 03-01-EE-II-SS-RR-AA.wav "
        "(or a parent holding Audio_Speech_Actors_01-24/)",
        _has(_RAVDESS_ACTOR_DIR.pattern, "dir", re.IGNORECASE),
        _read_ravdess,
        ("intensity", "statement", "repetition", "vocal_channel"),
    ),
    "cremad": _Spec(
        "a folder AudioWAV/ with files AAAA_SSS_EEE_LL.wav (e.g. 1001_DFA_ANG_XX.wav), "
        f"optionally {_CREMAD_DEMOGRAPHICS} beside it",
        _has(r"^\d{4}_[A-Z]{3}_[A-Z]{3}_[A-Z]{2}\.", "audio"),
        _read_cremad,
        ("sentence", "level"),
    ),
    "savee": _Spec(
        "AudioData/<DC|JE|JK|KL>/<code><NN>.wav with code a|d|f|h|n|sa|su (e.g. AudioData/DC/a01.wav), "
        "or flattened files <SPK>_<code><NN>.wav (e.g. DC_a01.wav)",
        _any_of(_has(rf"^({'|'.join(_SAVEE_SPEAKERS)})$", "dir"), _has(rf"^[A-Z]{{2}}_{_SAVEE_CODE}\.", "audio")),
        _read_savee,
        ("sentence_index",),
    ),
    "iemocap": _Spec(
        "IEMOCAP_full_release/ (or its parent) with Session1..Session5/sentences/wav/<dialog>/<utt>.wav "
        "and labels in Session*/dialog/EmoEvaluation/<dialog>.txt",
        _has(_IEMOCAP_SESSION_DIR.pattern, "dir"),
        _read_iemocap,
        ("session", "dialog", "raw_label", "improvised"),
    ),
    "tess": _Spec(
        "folders <OAF|YAF>_<emotion>/ with files <OAF|YAF>_<word>_<emotion>.wav "
        "(e.g. OAF_angry/OAF_back_angry.wav)",
        _has(_TESS_MARKER.pattern, "any", re.IGNORECASE),
        _read_tess,
        ("word",),
    ),
    "emodb": _Spec(
        "a folder wav/ (or the root itself) with files SSTTTEv.wav (e.g. wav/03a01Fa.wav)",
        _has(r"^\d\d[a-z]\d\d[A-Z][a-z]\.", "audio"),
        _read_emodb,
        ("text", "version"),
    ),
    "urdu": _Spec(
        "folders Angry/ Happy/ Neutral/ Sad/ with files S<M|F><id>_F<nn>_<A|H|N|S><nnn>.wav "
        "(e.g. Angry/SM1_F10_A010.wav)",
        _has(_URDU_FOLDER_DIR.pattern, "dir", re.IGNORECASE),
        _read_urdu,
        ("file_number",),
    ),
}


def canonical_corpus_name(corpus: str) -> str:
    """The key in :data:`CORPORA` for a corpus name, ignoring case, ``-``, ``_`` and spaces.

    Parameters
    ----------
    corpus : str
        E.g. ``"CREMA-D"``, ``"ravdess"``, ``"EmoDB"``.

    Returns
    -------
    str
        E.g. ``"cremad"``.

    Raises
    ------
    ValueError
        The name is not one of :data:`CORPORA`.
    """
    key = re.sub(r"[-_ ]", "", corpus.strip().lower())
    if key not in _SPECS:
        raise ValueError(f"unknown corpus {corpus!r}; expected one of {', '.join(CORPORA)}")
    return key


def _layout_error(key: str, root: Path, rejected: list[_Rejected] | None = None) -> CorpusLayoutError:
    message = f"{DISPLAY_NAMES[key]} root {display_path(root)}: expected {_SPECS[key].expected}; found: {_describe(root)}"
    if rejected:
        path, reason = rejected[0]
        message += f"; {len(rejected)} audio file(s) below it, none recognised (e.g. {display_path(path)}: {reason})"
    return CorpusLayoutError(message)


def _relative_to(path: str | Path, root: Path) -> str:
    """``path`` under the corpus root, as the quarantine lists show it (absolute only when it is not under it)."""
    try:
        return display_path(Path(path).relative_to(root))
    except ValueError:
        return display_path(path)


def _assemble(key: str, root: Path, rows: list[_Row], rejected: list[_Rejected]) -> CorpusScan:
    """Build the sorted manifest, moving duplicate utt_ids to ``unrecognised``.

    Of several files with the same utt_id the one kept is the first by
    extension (in :data:`AUDIO_EXTENSIONS` order, so ``.wav`` wins), then by path.
    """

    def preference(row: _Row) -> tuple[int, str]:
        return AUDIO_EXTENSIONS.index(Path(row["path"]).suffix.lower()), row["path"]

    first_seen: dict[str, str] = {}
    unique: list[_Row] = []
    for row in sorted(rows, key=preference):
        if row["utt_id"] in first_seen:
            kept = _relative_to(first_seen[row["utt_id"]], root)  # reasons reach the pages: no machine paths
            rejected.append((row["path"], f"duplicate utt_id {row['utt_id']} (kept {kept})"))
            continue
        first_seen[row["utt_id"]] = row["path"]
        unique.append({**row, "corpus": key})
    if not unique:
        raise _layout_error(key, root, rejected)
    columns = MANIFEST_COLUMNS + list(_SPECS[key].extras)
    manifest = pd.DataFrame(unique, columns=columns).sort_values("utt_id", kind="stable").reset_index(drop=True)
    shown = sorted((display_path(path), reason) for path, reason in rejected)
    unrecognised = pd.DataFrame(shown, columns=["path", "reason"])
    return CorpusScan(manifest=manifest, unrecognised=unrecognised, corpus=key, root=root)


# ---------------------------------------------------------------- public API


def read_corpus(corpus: str, root: str | Path, *, include_song: bool = False) -> CorpusScan:
    """Scan a corpus folder into a manifest, from file names only.

    Parameters
    ----------
    corpus : str
        One of :data:`CORPORA` (case and ``-``/``_`` are ignored, so
        ``"CREMA-D"`` works).
    root : str or pathlib.Path
        The corpus root in its official layout (the layouts are spelled out
        in the messages of :class:`CorpusLayoutError`); a folder up to two
        levels above it is accepted too (e.g. the one holding
        ``IEMOCAP_full_release/`` or ``audio/Audio_Speech_Actors_01-24/``).
    include_song : bool, default False
        RAVDESS only: keep song files (vocal channel 02).  When False they are
        listed in ``unrecognised`` with reason ``"song (include_song=False)"``.

    Returns
    -------
    CorpusScan
        ``manifest`` (:data:`MANIFEST_COLUMNS` + corpus extras, sorted by
        ``utt_id``) and ``unrecognised`` (``path``, ``reason``).

    Raises
    ------
    ValueError
        Unknown corpus name.
    CorpusLayoutError
        ``root`` does not look like the corpus, or no audio file in it could
        be recognised.
    """
    key = canonical_corpus_name(corpus)
    spec = _SPECS[key]
    root = Path(root).expanduser().absolute()
    bases = _find_bases(root, spec.looks_right)
    if not bases:
        raise _layout_error(key, root)
    rows, rejected = spec.read(bases, include_song)
    return _assemble(key, root, rows, rejected)


def corpus_root(corpus: str, data_root: str | Path | None = None) -> Path:
    """Folder of ``corpus`` inside a data folder: ``<data_root>/<corpus>``.

    Parameters
    ----------
    corpus : str
        One of :data:`CORPORA`.
    data_root : str or pathlib.Path, optional
        Folder holding one sub-folder per corpus (``ravdess/``, ``emodb/``...;
        matched case-insensitively, ``CREMA-D/`` works for ``cremad``).
        Defaults to the environment variable ``SERLIB_DATA``.

    Returns
    -------
    pathlib.Path
        Absolute path of the corpus folder.

    Raises
    ------
    ValueError
        Unknown corpus, or no ``data_root`` given and ``SERLIB_DATA`` unset.
    FileNotFoundError
        The data folder or the corpus folder inside it does not exist.
    """
    key = canonical_corpus_name(corpus)
    if data_root is None:
        env = os.environ.get("SERLIB_DATA", "").strip()
        if not env:
            raise ValueError(
                f"cannot locate {DISPLAY_NAMES[key]}: no data_root given and SERLIB_DATA is not set "
                "(set SERLIB_DATA to the folder holding ravdess/, emodb/, ...)"
            )
        data_root = env
    base = Path(data_root).expanduser().absolute()
    if not base.is_dir():
        raise FileNotFoundError(f"data folder {base} does not exist (looking for {DISPLAY_NAMES[key]})")
    exact = base / key
    if exact.is_dir():
        return exact
    for child in _children(base):
        if child.is_dir() and re.sub(r"[-_ ]", "", child.name.lower()) == key:
            return child
    raise FileNotFoundError(f"{DISPLAY_NAMES[key]} folder {exact} not found; {base} holds {_describe(base)}")
