"""The ground floor: safe files, output formats, hashing, checkpoints, worker processes and run folders.

- :mod:`serlib.core.files`        what counts as readable, atomic writes, disk-full errors, stale temporaries
- :mod:`serlib.core.formats`      records written as a table, CSV or JSON lines
- :mod:`serlib.core.hashing`      the sha256 of a file, read in blocks
- :mod:`serlib.core.checkpoints`  torch checkpoints read with ``weights_only=True``, written atomically
- :mod:`serlib.core.tensors`      pickle-free model files (safetensors) and their error
- :mod:`serlib.core.workers`      worker processes that never outlive their parent
- :mod:`serlib.core.runs`         run-folder paths and names, provenance, JSON, reading results back
"""
