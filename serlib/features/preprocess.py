"""Waveform preprocessing: optional denoising, Silero VAD trimming, level normalisation.

The pipeline applied to every clip (after :func:`serlib.data.audio.load_audio` has made
it 16 kHz mono and validated it) is::

    denoise (none | demucs) -> VAD trim (+ padding) -> cut to max_seconds -> level normalisation

Denoising backends
------------------
``none``
    Leaves the waveform untouched.
``demucs``
    A *pretrained* Demucs source-separation model, keeping the ``vocals`` stem.
    Weights are never downloaded at run time: they are loaded from a local model
    folder or file (``preprocess.demucs_model: /path/to/folder``), from the
    Hugging Face cache (read offline) or from the torch hub cache
    (``$TORCH_HOME/hub/checkpoints``), where ``python -m demucs`` puts them. When
    they are missing :class:`DemucsUnavailable` is raised at once with
    instructions, instead of a network retry loop. Every weights file is read by
    :mod:`serlib.features.demucs_weights`, which never unpickles code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from serlib.config import PreprocessConfig
from serlib.data.audio import resample
from serlib.features.demucs_weights import PRETRAINED_NAME, DemucsUnavailable, load_bag, load_weights_file

if TYPE_CHECKING:  # pragma: no cover - torch is imported where it is used: keeps `serlib prepare` fast
    import torch

Denoiser = Callable[[np.ndarray], np.ndarray]


@dataclass
class PreprocessInfo:
    """What preprocessing did to one clip (recorded per utterance in the cache)."""

    input_seconds: float
    output_seconds: float
    vad_found_speech: bool
    denoise: str


# ----------------------------------------------------------------------------- Demucs


def _demucs_remote_bag(name: str) -> Path:
    """The bag definition that demucs ships for a pretrained model name."""
    from demucs import pretrained

    remote = Path(pretrained.__file__).parent / "remote"
    bag = remote / f"{name}.yaml"
    if not bag.is_file():
        known = sorted(p.stem for p in remote.glob("*.yaml"))
        raise DemucsUnavailable(f"unknown Demucs model name {name!r}; known: {known}")
    return bag


def load_pretrained_demucs(model: str = "htdemucs") -> torch.nn.Module:
    """Load pretrained Demucs weights from local storage only, without running code from them.

    Parameters
    ----------
    model
        A pretrained model *name* (``htdemucs``, ``mdx_extra``...: letters, digits
        and ``_`` only, never read as a path) whose weights are already in the
        Hugging Face cache or the torch hub cache; or a *path* (anything else,
        e.g. ``./models`` or ``/data/htdemucs.th``): a folder holding
        ``<name>.yaml`` and its ``<sig>.th`` / ``<sig>.safetensors`` files (demucs'
        ``--repo`` layout), or a single weights file.

    Every file is read by :mod:`serlib.features.demucs_weights`: ``weights_only=True``
    for ``.th``, safetensors otherwise, and only Demucs' own model classes.

    Raises
    ------
    DemucsUnavailable
        Immediately (no network access is attempted) when the weights are missing,
        or when a file asks to run code or build anything but a Demucs model.
    """
    if not PRETRAINED_NAME.fullmatch(model):
        path = Path(model).expanduser()
        if path.is_dir():
            bags = sorted(path.glob("*.yaml"))
            if bags:
                return load_bag(bags[0], path)
            singles = sorted([*path.glob("*.th"), *path.glob("*.safetensors")])
            if not singles:
                raise DemucsUnavailable(f"{path} holds no Demucs model (*.yaml bag, *.th or *.safetensors weights)")
            return load_weights_file(singles[0])
        return load_weights_file(path)

    bag_yaml = _demucs_remote_bag(model)
    cached = _huggingface_snapshot(model)
    if cached is not None:
        return load_bag(cached / f"{model}.yaml" if (cached / f"{model}.yaml").is_file() else bag_yaml, cached)
    import torch

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        return load_bag(bag_yaml, checkpoints)
    except DemucsUnavailable as exc:
        if "needs" not in str(exc):
            raise
        raise DemucsUnavailable(
            f"pretrained Demucs '{model}' weights are not available offline "
            f"(not in the Hugging Face cache, and {str(exc).split(' needs ', 1)[1]}). Provide them by running "
            f"`python -m demucs.separate -n {model} some.wav` once on a machine with internet and copying its "
            "cache (~/.cache/huggingface or ~/.cache/torch) here (or set HF_HOME / TORCH_HOME), or set "
            "`preprocess.demucs_model` to a local folder with the model's .yaml "
            "and weights files; or use `preprocess.denoise: none`."
        ) from None


def _huggingface_snapshot(name: str) -> Path | None:
    """The local Hugging Face cache folder of a pretrained Demucs model (demucs >= 4.1), offline; None if absent."""
    try:
        from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name
        from huggingface_hub import snapshot_download

        folder = snapshot_download(f"{DEFAULT_NAMESPACE}/{hf_repo_name(name)}", local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError), hub client missing, or an old demucs
        return None
    return Path(folder)


class DemucsDenoiser:
    """Keep the ``vocals`` stem of a Demucs separation as the denoised speech."""

    def __init__(self, model: torch.nn.Module, sample_rate: int = 16000, device: str = "cpu") -> None:
        self.model = model.eval().to(device)
        self.sample_rate = sample_rate
        self.device = device
        sources = list(getattr(model, "sources", []))
        if "vocals" not in sources:
            raise DemucsUnavailable(f"Demucs model has no 'vocals' source (sources: {sources})")
        self.vocals = sources.index("vocals")
        self.model_rate = int(getattr(model, "samplerate", 44100))
        self.channels = int(getattr(model, "audio_channels", 2))

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        import torch
        from demucs.apply import apply_model

        up = resample(wave, self.sample_rate, self.model_rate)
        mix = torch.from_numpy(np.ascontiguousarray(up)).float()
        mix = mix.expand(self.channels, -1)[None]  # (1, channels, time)
        with torch.no_grad():
            sources = apply_model(self.model, mix, device=self.device, progress=False, split=True)
        vocals = sources[0, self.vocals].mean(0).cpu().numpy()
        out = resample(vocals.astype(np.float32), self.model_rate, self.sample_rate)
        return _match_length(out, wave.shape[0])


def _match_length(wave: np.ndarray, length: int) -> np.ndarray:
    if wave.shape[0] >= length:
        return wave[:length]
    return np.pad(wave, (0, length - wave.shape[0]))


def make_denoiser(config: PreprocessConfig) -> Denoiser | None:
    """Return the configured denoiser, or None for ``denoise: none``."""
    if config.denoise == "none":
        return None
    if config.denoise == "demucs":
        return DemucsDenoiser(load_pretrained_demucs(config.demucs_model), config.sample_rate)
    raise ValueError(f"preprocess.denoise must be 'none' or 'demucs', got {config.denoise!r}")


# ----------------------------------------------------------------------------- VAD

_VAD_MODEL: Any = None


def silero_vad_model() -> Any:
    """The Silero VAD model shipped inside the silero-vad wheel (loaded once per process)."""
    global _VAD_MODEL
    if _VAD_MODEL is None:
        import warnings

        from silero_vad import load_silero_vad

        with warnings.catch_warnings():  # silero-vad's own deprecated importlib/jit calls
            warnings.simplefilter("ignore", DeprecationWarning)
            _VAD_MODEL = load_silero_vad()
    return _VAD_MODEL


def vad_trim(
    wave: np.ndarray, sample_rate: int = 16000, threshold: float = 0.5, pad_ms: int = 100
) -> tuple[np.ndarray, bool]:
    """Trim leading and trailing non-speech with Silero VAD.

    Keeps everything from the first detected speech onset to the last offset,
    widened by ``pad_ms`` on both sides. Pauses inside the utterance are kept.

    Returns
    -------
    (wave, found_speech)
        When no speech is found the whole clip is returned and ``found_speech`` is False.
    """
    import torch
    from silero_vad import get_speech_timestamps

    model = silero_vad_model()
    stamps = get_speech_timestamps(
        torch.from_numpy(wave), model, threshold=threshold, sampling_rate=sample_rate
    )
    if not stamps:
        return wave, False
    pad = int(sample_rate * pad_ms / 1000)
    start = max(0, stamps[0]["start"] - pad)
    end = min(wave.shape[0], stamps[-1]["end"] + pad)
    return wave[start:end], True


# ----------------------------------------------------------------------------- level


def normalize_level(wave: np.ndarray, mode: str = "rms", target_dbfs: float = -23.0) -> np.ndarray:
    """Scale to a target RMS (or peak) level in dBFS, never clipping."""
    if mode == "none":
        return wave
    if mode == "rms":
        level = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    elif mode == "peak":
        level = float(np.max(np.abs(wave)))
    else:
        raise ValueError(f"preprocess.normalize must be rms, peak or none, got {mode!r}")
    if level <= 0:
        return wave
    gain = 10 ** (target_dbfs / 20) / level
    peak = float(np.max(np.abs(wave))) * gain
    if peak > 0.99:
        gain *= 0.99 / peak
    return (wave * gain).astype(np.float32)


# ----------------------------------------------------------------------------- pipeline


def preprocess_wave(
    wave: np.ndarray, config: PreprocessConfig, denoiser: Denoiser | None = None
) -> tuple[np.ndarray, PreprocessInfo]:
    """Apply denoise -> VAD trim -> length cap -> level normalisation to a 16 kHz clip."""
    sr = config.sample_rate
    input_seconds = wave.shape[0] / sr
    if denoiser is not None:
        wave = denoiser(wave)
    found = True
    if config.vad:
        wave, found = vad_trim(wave, sr, config.vad_threshold, config.vad_pad_ms)
    max_len = int(config.max_seconds * sr)
    if config.max_seconds > 0 and wave.shape[0] > max_len:
        wave = wave[:max_len]
    wave = normalize_level(wave, config.normalize, config.target_dbfs)
    info = PreprocessInfo(input_seconds, wave.shape[0] / sr, found, config.denoise)
    return np.ascontiguousarray(wave, dtype=np.float32), info
