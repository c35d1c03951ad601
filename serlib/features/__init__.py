"""From audio to what systems read: preprocessing, frame features, functionals, encoder layers, all cached.

- :mod:`serlib.features.cache`           where the cache lives and the corpus fingerprint that keys it
- :mod:`serlib.features.preprocess`      optional Demucs denoising, Silero VAD trimming, level normalisation
- :mod:`serlib.features.demucs_weights`  Demucs weights read without unpickling code
- :mod:`serlib.features.augment`         cached waveform augmentation, SpecAugment, mixup
- :mod:`serlib.features.frames`          MFCC / log-mel frames, normalisation statistics, the frame cache
- :mod:`serlib.features.functionals`     openSMILE eGeMAPS / ComParE functionals and their cache
- :mod:`serlib.features.encoders`        the frozen Whisper-base encoder (backends, weights, pooled and frame caches)
- :mod:`serlib.features.prepared`        a corpus prepared for training: manifest, cached features, folds
- :mod:`serlib.features.multi_corpus`    several corpora as one table: extra classes, corpus weights, standardisation
"""
