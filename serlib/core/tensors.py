"""Pickle-free model files: safetensors read as numpy arrays, and the one error every model file raises."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ShippedModelError(ValueError):
    """A shipped model cannot be found, exported or loaded (one line says why)."""


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as numpy arrays (raises :class:`ShippedModelError` when damaged)."""
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        return load_file(str(path))
    except Exception as exc:  # truncated, foreign or missing file
        raise ShippedModelError(f"{path} is missing or damaged ({type(exc).__name__}: {str(exc)[:200]})") from None



def store_dtype(array: np.ndarray, half_min_values: int | None) -> np.ndarray:
    """float16 for floating matrices of at least ``half_min_values`` values (never when None); float32 for other floats."""
    if not np.issubdtype(array.dtype, np.floating):
        return np.ascontiguousarray(array)
    half = half_min_values is not None and array.ndim >= 2 and array.size >= half_min_values
    target = np.float16 if half else np.float32
    if target == np.float16 and np.abs(array).max(initial=0.0) > np.finfo(np.float16).max:
        target = np.float32  # would overflow: keep it exact instead
    return np.ascontiguousarray(array.astype(target))


__all__ = ["ShippedModelError", "read_tensors", "store_dtype"]
