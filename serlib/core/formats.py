"""Writing result records for people or programs: a plain table, CSV or JSON lines.

``table``
    Tab-separated text for reading; control characters in names (a tab, a
    newline) are written as escapes (``\\t``, ``\\n``, ``\\x1b``), so one record is
    always one line.
``csv``
    A header line, then one row per record (the standard library's :mod:`csv`
    writer: a field with a comma, quote or newline is quoted).
``json``
    JSON lines: one object per record (the standard library's :mod:`json`).
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, Sequence, TextIO

FORMATS = ("table", "csv", "json")

_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\t``, ``\\n``, ``\\r``, ``\\xNN``)."""
    if text.isprintable():
        return text
    return "".join(_ESCAPES.get(ch, f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 else ch)
                   for ch in text)


class CsvRecords:
    """CSV with a header of ``fields``; :meth:`write` takes one dict per row."""

    def __init__(self, fields: Sequence[str], stream: TextIO | None = None) -> None:
        self._writer = csv.DictWriter(stream or sys.stdout, fieldnames=list(fields), lineterminator="\n",
                                      extrasaction="ignore")
        self._writer.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        self._writer.writerow(record)


class JsonRecords:
    """One JSON object per line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n")


__all__ = ["FORMATS", "escape_controls", "CsvRecords", "JsonRecords"]
