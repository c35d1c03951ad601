"""serlib: speech emotion recognition with honest, speaker-independent protocols.

Subpackages by role (data flows top to bottom; nothing imports upward):

- :mod:`serlib.core`         safe files, formats, hashing, checkpoints, workers, run folders
- :mod:`serlib.data`         audio reading, one reader per corpus, splits and folds, generated corpora
- :mod:`serlib.features`     preprocessing, frame features, functionals, the Whisper-base encoder, caches
- :mod:`serlib.systems`      one interface, one catalogue, one module per system; run reuse
- :mod:`serlib.evaluation`   metrics, speaker-clustered statistics, plots
- :mod:`serlib.experiments`  protocols, the Dask grid, batches, cross-corpus studies
- :mod:`serlib.report`       comparisons and pages for the notebooks, the book build
- :mod:`serlib.serve`        shipped models and prediction on files

and two modules at the top: :mod:`serlib.config` (typed configuration, YAML, overlays,
``--set``) and :mod:`serlib.cli` (``serlib prepare | train | evaluate | predict | models``).
Each subpackage's docstring lists its modules.

Importing :mod:`serlib` or :mod:`serlib.cli` loads nothing heavy, and the modules
``serlib prepare`` needs import torch, scikit-learn and matplotlib only inside the
functions that use them, so the command line starts fast.
"""

__version__ = "0.1.0"
