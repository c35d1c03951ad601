"""Trained models in users' hands: shipped models and prediction on files.

- :mod:`serlib.serve.shipped`  shipped models: export a run to safetensors + JSON sidecar, list, load by name
- :mod:`serlib.serve.predict`  what a user names (a shipped name, a checkpoint, a sidecar) -> a file predictor
- :mod:`serlib.serve.inputs`   what ``serlib predict`` reads: files, folders (audio by content), list files
- :mod:`serlib.serve.segments` long recordings as a timeline: speech segments (Silero VAD), read in blocks
- :mod:`serlib.serve.cards`    model cards: training data, protocol figures, cross-corpus figures, use and limits
"""
