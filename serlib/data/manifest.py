"""A corpus of one's own: a CSV/TSV manifest of path, label (and speaker, split), or a folder LABEL/.../*.wav.

The manifest is a CSV or TSV file (by its extension; ``.txt`` is read as either,
by its header line) with a header naming at least ``path`` and ``label``:

* ``path``: relative to the manifest's folder, or absolute;
* ``label``: common names and abbreviations map to the canonical classes
  (:data:`LABEL_SYNONYMS`: ``anger``/``angry``/``ang`` -> ``angry``...); any other
  label is kept as given (lower-cased);
* ``speaker`` (optional): makes the protocol speaker-independent;
* ``split`` (optional): ``train``/``val``/``test`` (``dev``/``valid``/``validation``
  count as ``val``), used as given;
* any other column is kept as metadata.

A **folder** given instead of a file is read as ``LABEL/.../file`` (the first
folder level is the label; audio is recognised by content, at any depth); it
has no speakers.

Rows that cannot be used are **quarantined** with a reason naming the row (a
missing file, an empty label, a duplicate path); a manifest that cannot be used
at all is **refused** with one line (:class:`ManifestError`): not a readable
table, a missing column, no usable row, a class with fewer clips than folds,
only one speaker.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from serlib.data.corpora import MANIFEST_COLUMNS, CorpusScan, ordered_labels

LABEL_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("anger", "angry", "ang", "mad"), "angry"),
    **dict.fromkeys(("happiness", "happy", "joy", "hap", "joyful"), "happy"),
    **dict.fromkeys(("sadness", "sad"), "sad"),
    **dict.fromkeys(("neutral", "neu"), "neutral"),
    **dict.fromkeys(("fear", "fearful", "fea", "afraid"), "fear"),
    **dict.fromkeys(("disgust", "dis", "disgusted"), "disgust"),
    **dict.fromkeys(("surprise", "surprised", "sur"), "surprise"),
    "calm": "calm",
    **dict.fromkeys(("boredom", "bored"), "boredom"),
}
"""Common emotion names and abbreviations -> the canonical class (:data:`serlib.data.corpora.CANONICAL_LABELS`)."""

SPLIT_NAMES: dict[str, str] = {"train": "train", "training": "train", "val": "val", "valid": "val",
                               "validation": "val", "dev": "val", "test": "test", "eval": "test"}
"""Values of a ``split`` column -> train / val / test."""

MANIFEST_SUFFIXES = (".csv", ".tsv", ".txt")


class ManifestError(ValueError):
    """A manifest that cannot be used at all (one line says why)."""


def canonical_label(raw: object) -> str:
    """A label as serlib names it: a known synonym's canonical class, else the label lower-cased and trimmed."""
    text = str(raw).strip().lower()
    return LABEL_SYNONYMS.get(text, text)


def manifest_name(path: str | Path) -> str:
    """The corpus name of a manifest: its file (or folder) name, lower-case, other characters as ``-``."""
    stem = Path(path).stem if Path(path).suffix.lower() in MANIFEST_SUFFIXES else Path(path).name
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return name or "manifest"


def _read_table(path: Path) -> pd.DataFrame:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"manifest {path}: cannot read it as UTF-8 text ({type(err).__name__})") from None
    header = text.splitlines()[0] if text.strip() else ""
    if not header:
        raise ManifestError(f"manifest {path}: it is empty (a header line with path and label is needed)")
    sep = "\t" if path.suffix.lower() == ".tsv" or ("\t" in header and "," not in header) else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                            quoting=csv.QUOTE_MINIMAL)
    except (pd.errors.ParserError, ValueError) as err:
        raise ManifestError(f"manifest {path}: not a readable {'TSV' if sep == chr(9) else 'CSV'} table "
                            f"({' '.join(str(err).split())[:200]})") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise ManifestError(f"manifest {path}: no {' or '.join(repr(c) for c in missing)} column (its header: "
                            f"{', '.join(table.columns) or 'empty'}; path and label are required, speaker and split "
                            "optional)")
    return table


def _folder_table(folder: Path) -> pd.DataFrame:
    """``LABEL/.../file`` -> a table of path and label (audio recognised by content, hidden entries skipped)."""
    from serlib.data.audio import audio_in_folder

    rows = []
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rows += [{"path": path, "label": label_dir.name} for path in audio_in_folder(label_dir)]
    if not rows:
        raise ManifestError(f"manifest folder {folder}: no audio in LABEL/... subfolders (a folder per class, "
                            "e.g. angry/clip1.wav, is expected)")
    return pd.DataFrame(rows)


def read_manifest(source: str | Path, *, name: str | None = None) -> tuple[CorpusScan, dict[str, str]]:
    """Read a manifest file or folder into a :class:`serlib.data.corpora.CorpusScan` and the label mapping used.

    Returns
    -------
    (scan, mapping)
        ``scan.manifest`` has :data:`serlib.data.corpora.MANIFEST_COLUMNS`
        (``gender`` is ``?``; ``speaker`` is ``?`` without a speaker column),
        then ``split`` when given, then the manifest's other columns;
        ``scan.unrecognised`` lists the quarantined rows (``row N: path``) with
        their reason. ``mapping`` is each label as written -> as used.

    Raises
    ------
    ManifestError
        When nothing usable is left, or a required column is missing.
    """
    source = Path(source).expanduser()
    if source.is_dir():
        table, base = _folder_table(source), source
    elif source.is_file():
        table, base = _read_table(source), source.parent
    else:
        raise ManifestError(f"manifest {source}: no such file or folder")
    key = name or manifest_name(source)
    extras = [c for c in table.columns if c not in ("path", "label", "speaker", "split", "utt_id", "corpus",
                                                     "gender")]
    rows, rejected, seen, mapping = [], [], {}, {}
    for number, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
        raw_path = str(row.get("path", "")).strip()
        where = f"row {number}: {raw_path or '(empty path)'}"
        if not raw_path:
            rejected.append((where, "empty path"))
            continue
        path = Path(raw_path) if Path(raw_path).is_absolute() else base / raw_path
        label_text = str(row.get("label", "")).strip()
        if not label_text:
            rejected.append((where, "empty label"))
            continue
        resolved = str(path.resolve())
        if resolved in seen:
            rejected.append((where, f"duplicate path (first on row {seen[resolved]})"))
            continue
        if not path.is_file():
            rejected.append((where, "missing file"))
            continue
        seen[resolved] = number
        label = canonical_label(label_text)
        mapping[label_text] = label
        speaker = str(row.get("speaker", "") or "").strip() or "?"
        entry = {"utt_id": f"{number - 1:06d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', path.stem)}",
                 "path": str(path), "corpus": key, "speaker": speaker, "gender": "?", "label": label}
        if "split" in table.columns:
            split = SPLIT_NAMES.get(str(row.get("split", "")).strip().lower())
            if split is None:
                rejected.append((where, f"split {row.get('split')!r} is not train, val or test"))
                continue
            entry["split"] = split
        entry.update({c: row[c] for c in extras})
        rows.append(entry)
    if not rows:
        reasons = ", ".join(sorted({r for _, r in rejected})) or "no rows"
        raise ManifestError(f"manifest {source}: no usable row ({len(rejected)} quarantined: {reasons})")
    columns = MANIFEST_COLUMNS + (["split"] if "split" in table.columns else []) + extras
    manifest = pd.DataFrame(rows, columns=columns).sort_values("utt_id", kind="stable").reset_index(drop=True)
    unrecognised = pd.DataFrame(rejected, columns=["path", "reason"])
    return CorpusScan(manifest=manifest, unrecognised=unrecognised, corpus=key, root=base.absolute()), mapping


def has_speakers(manifest: pd.DataFrame) -> bool:
    """Whether the manifest names speakers (rows without one read ``?``)."""
    return bool((manifest["speaker"] != "?").any())


def default_protocol(manifest: pd.DataFrame) -> str:
    """``split-column`` with a split column, ``speaker-cv`` with speakers, else ``stratified-cv``."""
    if "split" in manifest.columns:
        return "split-column"
    return "speaker-cv" if has_speakers(manifest) else "stratified-cv"


def check_protocol(manifest: pd.DataFrame, protocol: str, n_folds: int, source: str) -> None:
    """Refuse, in one line, a manifest its protocol cannot use: one speaker, a class rarer than the folds."""
    if protocol in ("speaker-cv", "speaker-split"):
        if not has_speakers(manifest):
            raise ManifestError(f"manifest {source}: protocol {protocol} needs a speaker column; without one use "
                                "--set data.protocol=stratified-cv (not speaker-independent)")
        if manifest["speaker"].nunique() < 2:
            raise ManifestError(f"manifest {source}: only one speaker ({manifest['speaker'].iloc[0]}): a "
                                "speaker-independent protocol needs at least 2 (3 to carve validation speakers)")
    if protocol == "split-column":
        missing = [s for s in ("train", "test") if not (manifest["split"] == s).any()]
        if missing:
            raise ManifestError(f"manifest {source}: the split column has no {' or '.join(missing)} row")
        return
    counts = manifest["label"].value_counts()
    rare = counts[counts < n_folds]
    if len(rare):
        shown = ", ".join(f"{lab} ({n} clip{'s' if n != 1 else ''})" for lab, n in rare.items())
        which = f"class {shown} has" if len(rare) == 1 else f"classes {shown} have"
        raise ManifestError(f"manifest {source}: {which} fewer clips than the {n_folds} folds; add clips, drop the "
                            "class, or set fewer folds (--folds K)")


def describe_mapping(mapping: dict[str, str]) -> str:
    """One line: how the labels as written were mapped (``ang -> angry, Joy -> happy; kept: sigh``)."""
    mapped = sorted(f"{k} -> {v}" for k, v in mapping.items() if k != v)
    kept = sorted({v for k, v in mapping.items() if k == v})
    parts = ([", ".join(mapped)] if mapped else []) + ([f"as given: {', '.join(kept)}"] if kept else [])
    classes = ordered_labels(set(mapping.values()))
    return f"labels: {'; '.join(parts)} ({len(classes)} classes: {', '.join(classes)})"


def manifest_overrides(source: str | Path, folds: int | None = None) -> tuple[list[str], str]:
    """Config overrides that make a manifest the corpus, and one line saying what was read.

    The corpus is named after the manifest (:func:`manifest_name`); the protocol
    is its split column when it has one, else speaker folds when it names
    speakers, else stratified folds of clips; ``folds`` sets the number of folds.
    The line gives the clips, the label mapping and the quarantined rows.
    """
    source = Path(source).expanduser().absolute()
    scan, mapping = read_manifest(source)
    quarantined = (f"; {len(scan.unrecognised)} row(s) quarantined "
                   f"({', '.join(sorted(set(scan.unrecognised['reason'])))}; `serlib prepare --manifest` lists them)"
                   if len(scan.unrecognised) else "")
    line = f"{manifest_name(source)}: {len(scan.manifest)} clips, {describe_mapping(mapping)}{quarantined}"
    overrides = [f"data.manifest={source}", f"data.corpus={manifest_name(source)}",
                 f"data.protocol={default_protocol(scan.manifest)}"] + ([f"data.folds={folds}"] if folds else [])
    return overrides, line


__all__ = ["manifest_overrides", "LABEL_SYNONYMS", "SPLIT_NAMES", "ManifestError", "canonical_label", "manifest_name", "read_manifest",
           "has_speakers", "default_protocol", "check_protocol", "describe_mapping"]
