"""Loading Demucs weights without running code from a data file.

Demucs' own loaders (``demucs.states.load_model``, the torch hub and Hugging Face
routes) unpickle ``.th`` files with ``weights_only=False`` and import whatever


class a ``.safetensors`` file's metadata names, so a crafted weights file runs
code. This module reads the same files without that power:

- ``.th`` packages are read with ``torch.load(weights_only=True)``, with only
  Demucs' three model classes, :class:`fractions.Fraction` and the plain
  OmegaConf containers of old training arguments allowed as globals;
- ``.safetensors`` files (demucs >= 4.1) are read with safetensors (no pickle),
  and the class their metadata names must be one of the three model classes;
- quantized (diffq) states are refused, as is any other class or function.

A file that asks for anything else raises :class:`DemucsUnavailable` with one
line naming the file and what it asked for; nothing it carries is executed.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serlib.core.checkpoints import unpickling_refusal

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: The Demucs model classes a weights file may name (module path, class name).
MODEL_CLASSES = ("demucs.htdemucs.HTDemucs", "demucs.hdemucs.HDemucs", "demucs.demucs.Demucs")

#: A pretrained model *name* (``htdemucs``, ``mdx_extra_q``): never read as a path.
PRETRAINED_NAME = re.compile(r"[A-Za-z0-9_]+")


class DemucsUnavailable(RuntimeError):
    """Pretrained Demucs weights are not available locally, or a weights file was refused."""


def _model_classes() -> dict[str, type]:
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    return {f"{k.__module__}.{k.__name__}": k for k in (HTDemucs, HDemucs, Demucs)}


def _allowed_globals() -> list[Any]:
    """What a Demucs ``.th`` package may reference besides plain data and tensors."""
    allowed: list[Any] = [*_model_classes().values(), Fraction]
    try:  # old packages store their training arguments as OmegaConf containers (data only)
        import collections
        import typing

        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode

        allowed += [DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, typing.Any,
                    collections.defaultdict, dict, list, int]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return allowed


def read_th_package(path: Path) -> dict[str, Any]:
    """A Demucs ``.th`` package as a dict, read with ``weights_only=True`` (raises DemucsUnavailable)."""
    import torch

    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unsafe global, a truncated or foreign file: never executed
        raise DemucsUnavailable(f"Demucs weights {path} refused: {unpickling_refusal(exc)}") from None
    if not isinstance(package, dict) or not {"klass", "args", "kwargs", "state"} <= set(package):
        raise DemucsUnavailable(f"Demucs weights {path} refused: not a Demucs model package "
                                "(a dict with klass, args, kwargs and state)")
    return package


def _decode_json(value: Any) -> Any:
    """JSON init arguments of a safetensors model, with demucs' encoding of fractions."""
    if isinstance(value, dict):
        if value.get("_type") == "fraction":
            return Fraction(int(value["numerator"]), int(value["denominator"]))
        return {key: _decode_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_json(item) for item in value]
    return value


def read_safetensors_package(path: Path) -> dict[str, Any]:
    """A Demucs ``.safetensors`` model as a package dict; the class is looked up, never imported by name."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
        klass = metadata["klass"]
        args = _decode_json(json.loads(metadata.get("args", "[]")))
        kwargs = _decode_json(json.loads(metadata.get("kwargs", "{}")))
    except Exception as exc:
        raise DemucsUnavailable(f"Demucs weights {path} refused: not a Demucs safetensors model "
                                f"({type(exc).__name__})") from None
    if "structure" in metadata:
        raise DemucsUnavailable(f"Demucs weights {path} refused: quantized (diffq) models are not supported")
    classes = _model_classes()
    if klass not in classes:
        raise DemucsUnavailable(f"Demucs weights {path} refused: it names the class {klass!r}, "
                                f"not one of {', '.join(MODEL_CLASSES)}")
    return {"klass": classes[klass], "args": args, "kwargs": kwargs, "state": tensors}


def build_model(package: dict[str, Any], path: Path) -> "torch.nn.Module":
    """Construct the Demucs model a package describes (only the known classes; unknown kwargs dropped)."""
    import inspect

    klass = package["klass"]
    if klass not in _model_classes().values():
        raise DemucsUnavailable(f"Demucs weights {path} refused: its class {klass!r} is not a Demucs model")
    args, kwargs, state = package["args"], package["kwargs"], package["state"]
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict) or not isinstance(state, dict):
        raise DemucsUnavailable(f"Demucs weights {path} refused: malformed args, kwargs or state")
    if state.get("__quantized"):
        raise DemucsUnavailable(f"Demucs weights {path} refused: quantized (diffq) models are not supported")
    known = inspect.signature(klass).parameters
    kwargs = {key: value for key, value in kwargs.items() if key in known}
    try:
        model = klass(*args, **kwargs)
        model.load_state_dict(state)
    except Exception as exc:
        raise DemucsUnavailable(f"Demucs weights {path} do not fit their model ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    return model.eval()


def load_weights_file(path: str | Path) -> "torch.nn.Module":
    """One Demucs model from a ``.th`` or ``.safetensors`` file, without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise DemucsUnavailable(f"Demucs weights file not found: {path}")
    if path.suffix == ".safetensors":
        return build_model(read_safetensors_package(path), path)
    if path.suffix == ".th":
        return build_model(read_th_package(path), path)
    raise DemucsUnavailable(f"Demucs weights {path}: expected a .th or .safetensors file")


def _signature_file(folder: Path, signature: str) -> Path | None:
    for candidate in [folder / f"{signature}.safetensors", *sorted(folder.glob(f"{signature}-*.th")),
                      folder / f"{signature}.th"]:
        if candidate.is_file():
            return candidate
    return None


def load_bag(bag_yaml: Path, weights_folder: Path) -> "torch.nn.Module":
    """A bag of models: the signatures ``bag_yaml`` lists, each read from ``weights_folder``."""
    import yaml
    from demucs.apply import BagOfModels

    try:
        bag = yaml.safe_load(bag_yaml.read_text())
        signatures = [str(s) for s in bag["models"]]
    except Exception as exc:
        raise DemucsUnavailable(f"{bag_yaml} is not a Demucs bag definition ({type(exc).__name__})") from None
    files = {sig: _signature_file(weights_folder, sig) for sig in signatures}
    missing = [sig for sig, file in files.items() if file is None]
    if missing:
        raise DemucsUnavailable(f"the Demucs bag {bag_yaml.stem!r} needs {', '.join(missing)} "
                                f"(.th or .safetensors) in {weights_folder}")
    models = [load_weights_file(file) for file in files.values() if file is not None]
    return BagOfModels(models, bag.get("weights"), bag.get("segment")).eval()


__all__ = ["DemucsUnavailable", "MODEL_CLASSES", "PRETRAINED_NAME", "build_model", "load_bag",
           "load_weights_file", "read_safetensors_package", "read_th_package"]
