"""Waveform preprocessing: optional denoising, Silero VAD trimming, level normalisation.

The pipeline applied to every clip (after :func:`serlib.audio.load_audio` has made
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
    Hugging Face cache (read with ``HF_HUB_OFFLINE=1``) or from the torch hub
    cache (``$TORCH_HOME/hub/checkpoints``), where ``python -m demucs`` puts
    them. When they are missing :class:`DemucsUnavailable` is raised at once with
    instructions, instead of a network retry loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .audio import resample
from .config import PreprocessConfig

if TYPE_CHECKING:  # pragma: no cover - torch is imported where it is used: keeps `serlib prepare` fast
    import torch

Denoiser = Callable[[np.ndarray], np.ndarray]


class DemucsUnavailable(RuntimeError):
    """Pretrained Demucs weights are not available locally."""


@dataclass
class PreprocessInfo:
    """What preprocessing did to one clip (recorded per utterance in the cache)."""

    input_seconds: float
    output_seconds: float
    vad_found_speech: bool
    denoise: str


# ----------------------------------------------------------------------------- Demucs


def _demucs_bag_signatures(name: str) -> list[str]:
    """Model signatures that make up a named pretrained Demucs bag (from demucs' remote yaml)."""
    import yaml
    from demucs import pretrained

    remote = Path(pretrained.__file__).parent / "remote"
    bag = remote / f"{name}.yaml"
    if not bag.is_file():
        known = sorted(p.stem for p in remote.glob("*.yaml"))
        raise DemucsUnavailable(f"unknown Demucs model name {name!r}; known: {known}")
    return [str(s) for s in yaml.safe_load(bag.read_text())["models"]]


def load_pretrained_demucs(model: str = "htdemucs") -> torch.nn.Module:
    """Load pretrained Demucs weights from local storage only.

    Parameters
    ----------
    model
        A model name (``htdemucs``, ``mdx_extra``...) whose weights are already in
        the torch hub cache, a folder holding ``<name>.yaml`` and ``<sig>.th``
        files (demucs' ``--repo`` layout), or a single ``.th`` file.

    Raises
    ------
    DemucsUnavailable
        Immediately (no network access is attempted) when the weights are missing.
    """
    from demucs import pretrained
    from demucs.states import load_model

    path = Path(model).expanduser()
    if path.suffix == ".th":
        if not path.is_file():
            raise DemucsUnavailable(f"Demucs weights file not found: {path}")
        return load_model(path)
    if path.is_dir():
        bags = sorted(path.glob("*.yaml"))
        if not bags and not list(path.glob("*.th")):
            raise DemucsUnavailable(f"{path} holds no Demucs model (*.yaml bag or *.th weights)")
        name = bags[0].stem if bags else sorted(path.glob("*.th"))[0].stem.split("-")[0]
        return pretrained.get_model(name, repo=path)

    bag = _from_huggingface_cache(model)
    if bag is not None:
        return bag
    import torch

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    missing = [
        sig for sig in _demucs_bag_signatures(model) if not list(checkpoints.glob(f"{sig}-*.th"))
    ]
    if missing:
        raise DemucsUnavailable(
            f"pretrained Demucs '{model}' weights are not available offline "
            f"(not in the Hugging Face cache, and missing {', '.join(s + '-*.th' for s in missing)} "
            f"in {checkpoints}). Provide them by running `python -m demucs.separate -n "
            f"{model} some.wav` once on a machine with internet and copying its cache "
            "(~/.cache/huggingface or ~/.cache/torch) here (or set HF_HOME / TORCH_HOME), or set "
            "`preprocess.demucs_model` to a local folder with the model's .yaml "
            "and .th files; or use `preprocess.denoise: none`."
        )
    from demucs.repo import AnyModelRepo, BagOnlyRepo, LocalRepo

    local = LocalRepo(checkpoints)
    bag = AnyModelRepo(local, BagOnlyRepo(Path(pretrained.__file__).parent / "remote", local)).get_model(model)
    return bag.eval()


def _from_huggingface_cache(name: str) -> torch.nn.Module | None:
    """The model from the local Hugging Face cache (demucs >= 4.1), strictly offline; None if absent."""
    import os

    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from demucs.hf import get_hf_model

        return get_hf_model(name).eval()
    except Exception:  # not cached (LocalEntryNotFoundError), hub client missing, or an old demucs
        return None
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


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
