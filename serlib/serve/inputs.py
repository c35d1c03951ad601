"""What ``serlib predict`` reads: files, folders searched recursively, and list files.

* A **file** is taken as given (a bad one becomes one error line when it is read).
* A **folder** is searched recursively (:func:`serlib.data.audio.audio_in_folder`);
  a file in it counts as audio when its first bytes are those of an audio
  container soundfile reads (WAV, FLAC, Ogg, AIFF, MP3), whatever its name.
  Hidden files and folders are skipped; the order is sorted by path, so runs
  are reproducible.
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
from typing import Iterable

from serlib.data.audio import audio_in_folder

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


__all__ = ["read_list", "Inputs", "gather"]
