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
- :mod:`serlib.inference`  predicting files, evaluating checkpoints
- :mod:`serlib.crosscorpus` train on one corpus, test on another
- :mod:`serlib.report`     tables, figures and generated text for the notebooks
- :mod:`serlib.batch`      papermill batches (``make run``), :mod:`serlib.book` the book build
- :mod:`serlib.cli`        ``serlib prepare | train | evaluate | predict``
"""

__version__ = "0.1.0"
