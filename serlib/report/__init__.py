"""The report: pages read run folders (never train), compare systems, and the book is built from them.

- :mod:`serlib.report.comparisons`  every system of a protocol side by side, paired tests, across corpora
- :mod:`serlib.report.selection`    how Tier-1+ was chosen: the validation record of its recipe steps
- :mod:`serlib.report.pages`        tables, figures and generated text for the report notebooks
- :mod:`serlib.report.summary`      the summary page: the verdict, the headline figure, tables that fit
- :mod:`serlib.report.multi_corpus` the multi-corpus page: held-out corpora, paired in-corpus differences
- :mod:`serlib.report.book`         builds and checks the Jupyter Book (``make book``)
"""
