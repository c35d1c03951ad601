"""What ``serlib predict`` reads: files, folders searched recursively, and list files.

* A **file** is taken as given (a bad one becomes one error line when it is read).
* A **folder** is searched recursively; a file in it counts as audio when its
  first bytes are those of an audio container soundfile reads (WAV, FLAC, Ogg,
  AIFF, MP3), whatever its name. Hidden files and folders are skipped; the
  order is sorted by path, so runs are reproducible.
* A **list file** (``--list FILE``) names one path per line; blank lines and
  lines starting with ``#`` are skipped, and a relative path is relative to the
  list file's folder. A folder named in a list is searched like one given on
  the command line.

A name that is neither a file nor a folder is reported, not fatal: it is
returned in :attr:`Inputs.missing` and the command goes on with the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"RIFF"), (0, b"RIFX"), (0, b"RF64"), (0, b"fLaC"), (0, b"OggS"), (0, b"FORM"), (0, b"ID3"),
    (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xf2"), (0, b"caff"), (0, b".snd"),
)
"""(offset, bytes) that open the audio containers libsndfile reads."""


def looks_like_audio(path: str | Path) -> bool:
    """Whether ``path``'s first bytes are those of an audio container (content, not the file name, decides)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return any(head[offset:offset + len(magic)] == magic for offset, magic in _SIGNATURES)


def audio_in_folder(folder: str | Path) -> Iterator[str]:
    """Every audio file below ``folder`` (recursively, hidden entries skipped), sorted by path."""
    found = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(here, f) for f in files if not f.startswith(".")]
    yield from (p for p in sorted(found) if looks_like_audio(p))


def read_list(list_file: str | Path) -> list[str]:
    """The paths a list file names (one per line, ``#`` comments and blank lines skipped), relative to its folder."""
    base = Path(list_file).parent
    paths = []
    for line in Path(list_file).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            paths.append(line if os.path.isabs(line) else str(base / line))
    return paths


@dataclass
class Inputs:
    """The audio files to label, in order, and the names that were neither a file nor a folder."""

    files: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    empty_folders: list[str] = field(default_factory=list)


def gather(names: Iterable[str], list_file: str | Path | None = None) -> Inputs:
    """Expand command-line names and a list file into audio files (see the module docstring)."""
    out = Inputs()
    wanted = list(names) + (read_list(list_file) if list_file else [])
    for name in wanted:
        if os.path.isdir(name):
            found = list(audio_in_folder(name))
            out.files += found
            if not found:
                out.empty_folders.append(name)
        elif os.path.exists(name):
            out.files.append(name)
        else:
            out.missing.append(name)
    return out


__all__ = ["looks_like_audio", "audio_in_folder", "read_list", "Inputs", "gather"]
