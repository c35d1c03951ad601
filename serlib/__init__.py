"""serlib: speech emotion recognition with honest, speaker-independent protocols.

Modules, one concern each (data flows top to bottom):

- :mod:`serlib.corpora`    corpus folder -> manifest table (one reader per corpus)
- :mod:`serlib.audio`      read any soundfile format, mono, resample, validate
- :mod:`serlib.splits`     speaker-independent splits, leave-speakers-out, EmoBox folds
- :mod:`serlib.preprocess` denoising backends, Silero VAD trimming, level normalisation
- :mod:`serlib.features`   MFCC / log-mel, normalisation statistics, the on-disk cache
- :mod:`serlib.augment`    cached waveform augmentation, SpecAugment, mixup
- :mod:`serlib.model`      the Tier-1 network
- :mod:`serlib.train`      training loop, schedule, checkpoints, resume
- :mod:`serlib.metrics`    UAR, accuracy, per-class tables, bootstrap CI
- :mod:`serlib.plots`      confusion matrix, per-class bars, training curves
- :mod:`serlib.baseline`   MFCC statistics + RBF SVM baseline
- :mod:`serlib.runs`       run folders, provenance, collecting results
- :mod:`serlib.experiment` corpus + config -> every fold and seed of a protocol
- :mod:`serlib.inference`  predicting files (Tier-1 networks, Whisper heads), evaluating checkpoints
- :mod:`serlib.shipped`    shipped models: export a run to safetensors + JSON, list, load by name
- :mod:`serlib.formats`    writing records as a table, CSV or JSON lines
- :mod:`serlib.crosscorpus` train on one corpus, test on another
- :mod:`serlib.report`     tables, figures and generated text for the notebooks
- :mod:`serlib.batch`      papermill batches (``make run``), :mod:`serlib.book` the book build
- :mod:`serlib.cli`        ``serlib prepare | train | evaluate | predict | models``

Importing :mod:`serlib` or :mod:`serlib.cli` loads nothing heavy, and the modules
``serlib prepare`` needs import torch, scikit-learn and matplotlib only inside the
functions that use them, so the command line starts fast.
"""

__version__ = "0.1.0"
