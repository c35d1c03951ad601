"""Corpora as tables: reading audio, one reader per corpus, speaker-independent folds, generated corpora.

- :mod:`serlib.data.audio`      any soundfile format -> 16 kHz mono, validated
- :mod:`serlib.data.corpora`    corpus folder -> manifest table (one reader per corpus) + quarantine
- :mod:`serlib.data.manifest`   a corpus of one's own: CSV/TSV of path, label[, speaker, split] or LABEL/ folders
- :mod:`serlib.data.splits`     speaker-split, speaker-cv, EmoBox folds, a split column, stratified folds
- :mod:`serlib.data.synthetic`  tiny generated corpora in each official layout (tests, demos)

The YAML files beside them hold published reference numbers and the known defects of corpus copies.
"""
