"""Typed experiment configuration and YAML loading.

One YAML file per experiment (SpeechBrain-style recipe): ``configs/<corpus>.yaml``
names the corpus and protocol and overrides only what differs from the defaults
below. Ablations are small overlays (``configs/ablations/*.yaml``) merged on top
with :func:`load_config`.

Every section is a dataclass so that a typo in a YAML key is an error, not a
silently ignored setting.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


SMOKE_OVERRIDES: tuple[str, ...] = (
    "train.epochs=2", "train.num_threads=1", "wave_augment.copies=1",
    "model.conv_channels=[16, 32]", "model.lstm_hidden=16", "model.attention_dim=16",
)
"""Overrides of a smoke run (CI, notebook plumbing checks): a tiny model for two epochs."""


class ConfigError(ValueError):
    """A config file or override does not match the schema."""


@dataclass
class DataConfig:
    """Which corpus, which protocol and which classes."""

    corpus: str = "ravdess"
    protocol: str = "emobox"  # speaker-split | speaker-cv | emobox
    classes: list[str] | None = None  # None: every canonical label present in the corpus
    val_fraction: float = 0.15
    include_song: bool = False


@dataclass
class PreprocessConfig:
    """Waveform pipeline: 16 kHz mono -> denoise -> VAD trim -> level normalisation."""

    sample_rate: int = 16000
    denoise: str = "none"  # none | demucs
    demucs_model: str = "htdemucs"  # a name in the torch hub cache or a local folder/file
    vad: bool = True
    vad_threshold: float = 0.5
    vad_pad_ms: int = 100
    normalize: str = "rms"  # rms | peak | none
    target_dbfs: float = -23.0
    max_seconds: float = 8.0  # longer clips are cut (keeps IEMOCAP's long turns bounded)


@dataclass
class FeatureConfig:
    """Frame-level features computed with torchaudio transforms."""

    kind: str = "mfcc"  # mfcc | logmel
    n_mfcc: int = 40
    n_mels: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    deltas: bool = False


@dataclass
class WaveAugmentConfig:
    """Waveform augmentation computed once and cached as extra training copies."""

    enabled: bool = True
    copies: int = 2
    time_stretch: tuple[float, float] = (0.9, 1.1)
    pitch_shift: tuple[float, float] = (-2.0, 2.0)  # semitones
    noise_snr_db: tuple[float, float] = (15.0, 35.0)


@dataclass
class BatchAugmentConfig:
    """Augmentation applied to training batches: SpecAugment masks and mixup."""

    specaugment: bool = True
    time_masks: int = 2
    time_mask_width: int = 20
    freq_masks: int = 2
    freq_mask_width: int = 6
    mixup: bool = True
    mixup_alpha: float = 0.2
    mixup_prob: float = 0.5


@dataclass
class ModelConfig:
    """Tier-1 network sizes."""

    conv_channels: list[int] = field(default_factory=lambda: [128, 256])
    kernel_size: int = 5
    lstm_hidden: int = 128
    lstm_layers: int = 2
    attention_heads: int = 4
    attention_dim: int = 64  # width of the attention bottleneck
    time_reduction: int = 2  # temporal down-scaling per conv block (stride of the pooling)
    dropout: float = 0.3


@dataclass
class TrainConfig:
    """Optimisation and early stopping."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.05  # cosine floor as a fraction of lr
    label_smoothing: float = 0.1
    class_weights: bool = True
    grad_clip: float = 5.0
    patience: int = 10  # epochs without validation UAR improvement
    max_train_frames: int = 400  # random crop length for training batches (4 s)
    num_threads: int = 0  # 0: $SERLIB_THREADS if set, else every core
    device: str = "auto"  # auto | cpu | cuda
    keep_checkpoints: bool = False  # False: only the newest best_uar_*.pt is kept


@dataclass
class Config:
    """A whole experiment."""

    name: str = "default"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    wave_augment: WaveAugmentConfig = field(default_factory=WaveAugmentConfig)
    batch_augment: BatchAugmentConfig = field(default_factory=BatchAugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), suitable for YAML/JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def section_hash(self, *sections: str) -> str:
        """Short stable hash of the named sections (used as cache keys)."""
        payload = {s: self.to_dict()[s] for s in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, recursing into sub-sections."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown key(s) {unknown}; valid keys: {sorted(known)}"
        )
    kwargs = {}
    for name, value in values.items():
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else known[name].default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}".lstrip("."))
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated recursively with ``overlay`` (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``"train.epochs=5"`` into ``{"train": {"epochs": 5}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw)
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def config_from_dict(values: dict[str, Any]) -> Config:
    """Validate a nested dict against the schema."""
    return _build(Config, values, "")


def load_config(
    path: str | Path | None = None,
    *overlays: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """Load a YAML config, merge overlay files and ``KEY=VALUE`` overrides.

    Parameters
    ----------
    path
        Base YAML file, or None for the defaults.
    overlays
        Further YAML files merged on top in order (ablations).
    overrides
        Command-line style overrides such as ``"train.epochs=3"``.
    """
    values: dict[str, Any] = {}
    for p in ([path] if path else []) + list(overlays):
        p = Path(p)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        loaded = yaml.safe_load(p.read_text()) or {}
        values = deep_merge(values, loaded)
    for text in overrides:
        values = deep_merge(values, parse_override(text))
    return config_from_dict(values)


def save_config(config: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
