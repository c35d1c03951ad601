"""Many runs at once: protocols, the Dask grid, the batches behind ``make run`` and cross-corpus studies.

- :mod:`serlib.experiments.protocol`             a protocol's every fold and seed, planned and run; summaries
- :mod:`serlib.experiments.grid`                 the experiment grid on Dask: one task per run
- :mod:`serlib.experiments.crosscorpus`          Tier-1 trained on one corpus, tested on another
- :mod:`serlib.experiments.encoder_crosscorpus`  the Whisper-base linear head across corpora
- :mod:`serlib.experiments.batch`                ``make run / runs / summary / ablations``: the grid, then the pages
- :mod:`serlib.experiments.reruns`               run folders made from uncommitted code, re-run from a clean tree
- :mod:`serlib.experiments.multi_corpus`         ``make multi-corpus``: recipe choice, in-corpus grids, corpora held out
"""
