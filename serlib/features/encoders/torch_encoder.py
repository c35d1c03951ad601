"""A small torch Whisper-base encoder that loads CTranslate2's ``model.bin``, exposing every layer.

CTranslate2 only returns the last encoder layer; emotion work often prefers
intermediate ones (SUPERB, EmoBox use a learned weighted sum of all layers). This
is the public openai/whisper encoder architecture:

- ``conv1``: Conv1d(80 -> 512, k=3, pad 1) + GELU; ``conv2``: Conv1d(512 -> 512,
  k=3, stride 2, pad 1) + GELU (50 frames/s);
- plus the sinusoidal positional table (1500 x 512, read from the file);
- 6 pre-LayerNorm transformer blocks: 8-head self-attention (no key bias), MLP
  512 -> 2048 -> 512 with exact (erf) GELU;
- a final LayerNorm.

:meth:`WhisperEncoder.forward` returns 7 hidden states, as Hugging Face's
``output_hidden_states`` does: 0 = the convolutional front end + positions,
1..5 = the outputs of blocks 1..5, 6 = the output of block 6 after the final
LayerNorm (exactly what CTranslate2's ``encode`` returns).

The weights are read from ``model.bin`` with numpy only (no pickle). Its layout
(CTranslate2 ``python/ctranslate2/specs/model_spec.py``, ``_serialize``, binary
version 6)::

    u32 version, str spec name, u32 spec revision, u32 n_variables,
    n_variables x (str name, u8 rank, rank x u32 dim, u8 dtype, u32 n_bytes, bytes),
    u32 n_aliases, n_aliases x (str alias, str target)

where ``str`` is ``u16 length (incl. NUL)`` + UTF-8 + NUL and dtype indexes
``(float32, int8, int16, int32, float16, bfloat16)``. The Whisper-base file stores
float16 weights; int8 / int16 weights (other conversions) are dequantised with
their ``<name>_scale`` variable.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from serlib.features.encoders.base import WhisperBackend
from serlib.features.encoders.weights import WhisperUnavailable, locate_whisper

_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
SUPPORTED_BINARY_VERSIONS = (5, 6)


# ----------------------------------------------------------------------------- reading model.bin


class _Reader:
    def __init__(self, buf: np.ndarray, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise WhisperUnavailable(f"{self.path} is truncated (ends inside the header at byte {self.pos})")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<H")
        raw = self.buf[self.pos : self.pos + n - 1].tobytes()
        self.pos += n
        return raw.decode("utf-8")


def _to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def read_ct2_variables(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """Read the variables of a CTranslate2 ``model.bin`` whose name starts with ``prefix``.

    Parameters
    ----------
    path
        The ``model.bin`` file.
    prefix
        Keep only these variables (``""``: all of them).

    Returns
    -------
    dict
        name -> float32 array (int8/int16 weights dequantised with their
        ``_scale``, which is then dropped; aliases resolved); integer scalars such
        as ``encoder/num_heads`` stay integer.

    Raises
    ------
    WhisperUnavailable
        The file is not a CTranslate2 model of a supported binary version.
    """
    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r")  # only the variables kept are read from disk
    r = _Reader(data, path)
    version = r.take("<I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise WhisperUnavailable(f"{path}: CTranslate2 binary version {version} not supported (expected {SUPPORTED_BINARY_VERSIONS})")
    spec = r.string()
    r.take("<I")  # the spec revision: read past, the layout does not depend on it
    raw: dict[str, tuple[np.ndarray, str]] = {}
    for _ in range(r.take("<I")):
        name = r.string()
        shape = tuple(r.take("<I") for _ in range(r.take("<B")))
        dtype = _DTYPES[r.take("<B")]
        n_bytes = r.take("<I")
        if r.pos + n_bytes > len(data):
            raise WhisperUnavailable(f"{path} is truncated (variable {name} runs past the end)")
        if name.startswith(prefix):
            np_dtype = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
            raw[name] = (data[r.pos : r.pos + n_bytes].view(np_dtype).reshape(shape), dtype)
        r.pos += n_bytes
    for _ in range(r.take("<I")):
        alias, target = r.string(), r.string()
        if alias.startswith(prefix) and target in raw:
            raw[alias] = raw[target]
    out: dict[str, np.ndarray] = {}
    for name, (arr, dtype) in raw.items():
        if name.endswith("_scale"):
            continue
        scale = raw.get(f"{name}_scale")
        if dtype in ("int8", "int16") and scale is not None:
            s = _to_float32(*scale)
            out[name] = arr.astype(np.float32) / (s.reshape(-1, *([1] * (arr.ndim - 1))) if s.ndim else s)
        elif dtype in ("int8", "int16", "int32"):
            out[name] = arr.copy()
        else:
            out[name] = _to_float32(arr, dtype)
    if not out:
        raise WhisperUnavailable(f"{path} ({spec}) has no variables starting with {prefix!r}")
    return out


# ----------------------------------------------------------------------------- the network


def whisper_sinusoids(length: int = 1500, channels: int = 512, max_timescale: float = 10000.0) -> np.ndarray:
    """openai/whisper's positional table: ``[sin, cos]`` of geometrically spaced timescales."""
    increment = np.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-increment * np.arange(channels // 2))
    t = np.arange(length)[:, None] * inv[None, :]
    return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype(np.float32)


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.attn_ln = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)  # fused like CTranslate2; the key bias is zero
        self.out = nn.Linear(d_model, d_model)
        self.mlp_ln = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(d_head), as Whisper's d_head^-1/4 on q and k
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """openai/whisper's audio encoder (base size by default), returning every hidden state.

    ``forward(mel)`` takes ``(batch, 80, frames)`` with even ``frames <= 3000``
    and returns ``(n_layers + 1, batch, frames // 2, d_model)``: index 0 is the
    convolutional front end plus positions, ``n_layers`` the final LayerNorm output.
    """

    def __init__(self, n_mels: int = 80, d_model: int = 512, n_heads: int = 8, n_layers: int = 6,
                 d_ff: int = 2048, max_positions: int = 1500) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(d_model, d_model, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.from_numpy(whisper_sinusoids(max_positions, d_model)))
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, d_ff) for _ in range(n_layers))
        self.ln_post = nn.LayerNorm(d_model)

    @property
    def n_hidden_states(self) -> int:
        return len(self.blocks) + 1

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        if x.shape[1] > self.positions.shape[0]:
            raise ValueError(f"{mel.shape[-1]} mel frames exceed the encoder's {2 * self.positions.shape[0]}")
        x = x + self.positions[: x.shape[1]]
        states = [x]
        for i, block in enumerate(self.blocks):
            x = block(x)
            states.append(self.ln_post(x) if i == len(self.blocks) - 1 else x)
        return torch.stack(states)


def _ct2_to_state_dict(v: dict[str, np.ndarray], n_layers: int) -> dict[str, torch.Tensor]:
    t = lambda name: torch.from_numpy(np.ascontiguousarray(v[f"encoder/{name}"], dtype=np.float32))  # noqa: E731
    sd = {
        "conv1.weight": t("conv1/weight"), "conv1.bias": t("conv1/bias"),
        "conv2.weight": t("conv2/weight"), "conv2.bias": t("conv2/bias"),
        "positions": t("position_encodings/encodings"),
        "ln_post.weight": t("layer_norm/gamma"), "ln_post.bias": t("layer_norm/beta"),
    }
    names = {"attn_ln": "self_attention/layer_norm", "qkv": "self_attention/linear_0", "out": "self_attention/linear_1",
             "mlp_ln": "ffn/layer_norm", "fc1": "ffn/linear_0", "fc2": "ffn/linear_1"}
    for i in range(n_layers):
        for ours, theirs in names.items():
            w, b = ("gamma", "beta") if ours.endswith("_ln") else ("weight", "bias")
            sd[f"blocks.{i}.{ours}.weight"] = t(f"layer_{i}/{theirs}/{w}")
            sd[f"blocks.{i}.{ours}.bias"] = t(f"layer_{i}/{theirs}/{b}")
    return sd


def load_whisper_encoder(model_dir: str | Path) -> WhisperEncoder:
    """Build a :class:`WhisperEncoder` from a faster-whisper folder's ``model.bin`` (eval mode, float32).

    Raises
    ------
    WhisperUnavailable
        The file lacks an encoder variable the architecture needs.
    """
    path = Path(model_dir) / "model.bin"
    v = read_ct2_variables(path, "encoder/")
    n_layers = 1 + max(int(m.group(1)) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k)))
    conv1 = v["encoder/conv1/weight"]
    model = WhisperEncoder(n_mels=conv1.shape[1], d_model=conv1.shape[0], n_heads=int(v["encoder/num_heads"]),
                           n_layers=n_layers, d_ff=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
                           max_positions=v["encoder/position_encodings/encodings"].shape[0])
    try:
        model.load_state_dict(_ct2_to_state_dict(v, n_layers))
    except KeyError as exc:
        raise WhisperUnavailable(f"{path} lacks the encoder variable {exc.args[0]}") from None
    return model.eval().requires_grad_(False)


class TorchWhisper(WhisperBackend):
    """Every hidden state (7 for Whisper-base) of the torch encoder.

    Parameters
    ----------
    threads
        ``torch.set_num_threads`` is called with it when given (a process-wide
        setting); ``None`` leaves torch's setting alone.
    cache_dir
        Cache root used to find/join the weights (see :func:`locate_whisper`).
    """

    name = "torch"

    def __init__(self, threads: int | None = None, cache_dir: str | Path | None = None) -> None:
        weights = locate_whisper(cache_dir)
        if threads:
            torch.set_num_threads(int(threads))
        self.sha256 = weights.sha256
        self.module = load_whisper_encoder(weights.path)
        self.n_layers = self.module.n_hidden_states

    def encode_mel(self, mel: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))[None])
        return out[:, 0].numpy()
