"""A corpus prepared for training: its manifest scanned, its features cached, and its folds."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from serlib.config import Config
from serlib.data.corpora import CorpusScan, corpus_root, read_corpus
from serlib.data.splits import NOT_SPEAKER_INDEPENDENT, assert_speaker_independent, get_split, n_folds
from serlib.features.frames import FeatureSet, prepare_features

SPLIT_SEED = 0  # splits and validation carving are fixed; seeds vary only the model


@dataclass
class Prepared:
    """A corpus scanned and featurised under one config (and the extra training corpora it names)."""

    scan: CorpusScan
    features: FeatureSet
    extra: dict[str, FeatureSet] = field(default_factory=dict)
    """``data.extra_train``: corpus -> its features under the same preprocessing and feature settings."""

    @property
    def fingerprint(self) -> str:
        """The data a run rests on: the corpus's fingerprint, then each extra training corpus's."""
        return self.features.fingerprint_with(self.extra)

    @property
    def content(self) -> str:
        """The bytes a run rests on: the sha256 of the corpus's content, then each extra training corpus's."""
        return "+".join([self.features.content] + [f"{c}:{fs.content}" for c, fs in self.extra.items()])


def locate_corpus(corpus: str, data_root: str | Path | None = None) -> Path:
    """The corpus folder: ``data_root/<corpus>`` when that exists, else ``data_root`` itself.

    Without ``data_root`` it is ``$SERLIB_DATA/<corpus>`` (:func:`serlib.data.corpora.corpus_root`),
    so both ``--data-root ../shared/data`` and ``--data-root ../shared/data/ravdess`` work.
    """
    if data_root is None:
        return corpus_root(corpus)
    try:
        return corpus_root(corpus, data_root)  # also matches CREMA-D/, RAVDESS/, ...
    except FileNotFoundError:
        return Path(data_root).expanduser().absolute()  # the corpus folder itself


def prepare(config: Config, *, data_root: str | Path | None = None, cache_dir: str | Path | None = None,
            workers: int | None = None, progress: bool = True, augment: bool | None = None) -> Prepared:
    """Scan ``config.data.corpus`` (under ``data_root`` or ``$SERLIB_DATA``) and build/load its feature cache."""
    if config.data.manifest:  # a corpus of one's own
        scan = read_manifest_for(config)
        root = scan.root
    else:
        root = locate_corpus(config.data.corpus, data_root)
        scan = read_corpus(config.data.corpus, root, include_song=config.data.include_song)
    features = prepare_features(scan.manifest, config, cache_dir=cache_dir, workers=workers,
                                augment=augment, progress=progress)
    extra = {}
    for corpus in config.data.extra_train:  # featurised exactly as the corpus itself
        other = replace(config, data=replace(config.data, corpus=corpus, extra_train=[]))
        extra_scan = read_corpus(corpus, _extra_root(corpus, data_root, root), include_song=config.data.include_song)
        extra[corpus] = prepare_features(extra_scan.manifest, other, cache_dir=cache_dir, workers=workers,
                                         augment=augment, progress=progress)
    return Prepared(scan, features, extra)


def read_manifest_for(config: Config) -> CorpusScan:
    """``config.data.manifest`` read (:func:`serlib.data.manifest.read_manifest`) and checked against its protocol."""
    from serlib.data.manifest import check_protocol, read_manifest

    scan, _ = read_manifest(config.data.manifest, name=config.data.corpus)
    check_protocol(scan.manifest, config.data.protocol,
                   n_folds(scan.manifest, config.data.protocol, folds=config.data.folds or None),
                   str(config.data.manifest))
    return scan


def _extra_root(corpus: str, data_root: str | Path | None, main_root: Path) -> Path:
    """An extra training corpus's folder: beside the main corpus, in ``data_root`` or in ``$SERLIB_DATA``."""
    for folder in ([data_root] if data_root is not None else []) + [main_root.parent, None]:
        try:
            return corpus_root(corpus, folder)
        except (FileNotFoundError, ValueError):
            continue
    raise FileNotFoundError(f"data.extra_train: no {corpus} folder beside {main_root} or in $SERLIB_DATA")


def split_for(features: FeatureSet, config: Config, fold: int) -> pd.Series:
    """The assignment of ``fold`` under ``config.data.protocol`` for the usable clips."""
    usable = features.usable
    assignment = get_split(usable, config.data.protocol, fold=fold, seed=SPLIT_SEED, corpus=config.data.corpus,
                           val_fraction=config.data.val_fraction, folds=config.data.folds or None)
    named = bool((usable["speaker"].astype(str) != "?").any())
    if config.data.protocol not in ("emobox", *NOT_SPEAKER_INDEPENDENT) and named:
        # test speakers are never seen; see the split's note for val
        assert_speaker_independent(usable, assignment, test_only="utterance level" in assignment.attrs.get("note", ""))
    return assignment


def fold_count(features: FeatureSet, config: Config) -> int:
    return n_folds(features.usable, config.data.protocol, corpus=config.data.corpus, folds=config.data.folds or None)
