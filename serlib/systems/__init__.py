"""Every system the report compares, one module each, behind one interface and one catalogue.

- :mod:`serlib.systems.base`               the System interface, the file-predictor contract, the run-folder writer
- :mod:`serlib.systems.registry`           the catalogue: one registration line per system
- :mod:`serlib.systems.reuse`              when a run folder may be reused: ``request.json`` against the request
- :mod:`serlib.systems.linear`             linear heads on fixed features, their pickle-free file, one split's run
- :mod:`serlib.systems.mfcc_svm`           ``baseline-svm``: MFCC statistics + RBF SVM
- :mod:`serlib.systems.opensmile_linear`   openSMILE eGeMAPS / ComParE functionals + a linear head
- :mod:`serlib.systems.tier1`              the Tier-1 network (and Tier-1+): network, trainer, predictor, system
- :mod:`serlib.systems.whisper_linear`     linear heads on the frozen Whisper-base encoder
- :mod:`serlib.systems.whisper_mlp`        the layer-weighted MLP head on the encoder
- :mod:`serlib.systems.whisper_attention`  the frame-level attentive-pooling head on the encoder
- :mod:`serlib.systems.whisper_multi`      the encoder heads trained on several corpora (the ``-multi`` systems)
- :mod:`serlib.systems.fusion`             late fusion of the MLP head and Tier-1+ (weight per fold)
- :mod:`serlib.systems.fusion_pooled`      the same fusion with one weight per protocol and seed
"""
