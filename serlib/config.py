"""Typed experiment configuration and YAML loading.

One YAML file per experiment (SpeechBrain-style recipe): ``configs/<corpus>.yaml``
names the corpus and protocol and overrides only what differs from the defaults
below. Ablations are small overlays (``configs/ablations/*.yaml``) merged on top
with :func:`load_config`.

Every section is a dataclass so that a typo in a YAML key is an error, not a
silently ignored setting, and every value is checked when the config loads:
its type against the dataclass annotation (``epochs: abc`` or ``vad: maybe``
are errors, not late tracebacks) and its range or choices against
:data:`RULES` (``batch_size: 0``, ``features.kind: bogus``). Every problem is a
:class:`ConfigError` with one short line naming the key, or the file and line
of a YAML file that cannot be read.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
    protocol: str = "emobox"  # speaker-split | speaker-cv | emobox | split-column | stratified-cv (manifests) | loco | loco-6
    classes: list[str] | None = None  # None: every canonical label present in the corpus
    val_fraction: float = 0.15
    include_song: bool = False
    extra_train: list[str] = field(default_factory=list)  # corpora whose clips join every training part
    manifest: str | None = None  # a corpus of one's own: CSV/TSV (path, label[, speaker, split]) or LABEL/ folders
    folds: int = 0  # speaker-cv / stratified-cv: number of folds (0: the protocol's default)


@dataclass
class PreprocessConfig:
    """Waveform pipeline: 16 kHz mono -> denoise -> VAD trim -> level normalisation."""

    sample_rate: int = 16000
    denoise: str = "none"  # none | demucs
    demucs_model: str = "htdemucs"  # a pretrained name (letters, digits, _) or a local folder/file
    vad: bool = True
    vad_threshold: float = 0.5
    vad_pad_ms: int = 100
    normalize: str = "rms"  # rms | peak | none
    target_dbfs: float = -23.0
    max_seconds: float = 8.0  # longer clips are cut (keeps IEMOCAP's long turns bounded)
    max_file_seconds: float = 600.0  # prepare quarantines longer files (too-long); 0: no limit


@dataclass
class FeatureConfig:
    """Frame-level features computed with torchaudio transforms."""

    kind: str = "mfcc"  # mfcc | logmel
    n_mfcc: int = 40
    n_mels: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    deltas: bool = False
    lld: str = "none"  # none | egemaps | compare: openSMILE low-level descriptors appended to every frame


@dataclass
class WaveAugmentConfig:
    """Waveform augmentation computed once and cached as extra training copies.

    ``kind: random`` draws each copy's time stretch, pitch shift and noise at
    random (Tier-1); ``kind: speed`` is Kaldi-style speed perturbation, one copy
    with the first ``copies`` factors of ``speeds`` (resampled: tempo and pitch
    change together), so ``copies`` may not exceed ``len(speeds)``.
    """

    enabled: bool = True
    kind: str = "random"  # random | speed
    copies: int = 2
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.1])
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
    """Network architecture (``name``, a key of :data:`serlib.systems.tier1.network.NETWORKS`) and its sizes."""

    name: str = "tier1"
    recipe: str = ""  # the system recipe this config was loaded with (configs/models/<recipe>.yaml); "" for none

    conv_channels: list[int] = field(default_factory=lambda: [128, 256])
    kernel_size: int = 5
    lstm_hidden: int = 128
    lstm_layers: int = 2
    attention_heads: int = 4
    attention_dim: int = 64  # width of the attention bottleneck
    time_reduction: int = 2  # temporal down-scaling per conv block (stride of the pooling)
    dropout: float = 0.3
    pooling: str = "attention"  # attention: weighted mean (Tier-1) | attentive-stats: weighted mean + std
    conv2d_channels: list[int] = field(default_factory=lambda: [8, 16, 32])  # crnn2d only: its 2-D conv blocks
    input_planes: int = 3  # crnn2d only: spectrogram planes stacked in each frame (log-mel, delta, delta-delta)


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
    crop_average: bool = False  # validation/test: mean posterior over max_train_frames windows (50 % overlap)
    speaker_norm: bool = False  # standardise each clip with its own speaker's statistics (transductive at test)
    sentence_norm: bool = False  # subtract each clip's own mean frame first (inductive: needs no other clip)
    average_last: int = 0  # 0: test the best-validation epoch; K: the mean weights of the last K epochs (all, if fewer)
    num_threads: int = 0  # 0: $SERLIB_THREADS if set, else every core
    device: str = "auto"  # auto | cpu | cuda
    keep_checkpoints: bool = False  # False: only the newest best_uar_*.pt is kept


@dataclass
class EncoderConfig:
    """A frozen pretrained encoder (Whisper-base) whose pooled frames feed the encoder heads."""

    backend: str = "torch"  # torch: every layer (the same weights in a torch encoder) | ct2: last layer only
    mode: str = "own"  # own: each clip at its own length | pad10 | pad30: padded to 10 s / 30 s (Whisper's training)
    compute_type: str = "int8"  # ct2 only: int8 | float32
    layer: int | str = "auto"  # auto: chosen on validation speakers among every layer and their mean | last | mean | 0..6
    # the -multi heads (data.extra_train): an extra corpus's clips of classes the target lacks are dropped, or
    # trained as extra outputs that are masked when scoring
    extra_classes: str = "drop"  # drop | mask
    corpus_norm: str = "pooled"  # pooled: one standardisation for every corpus | per-corpus: each by its own statistics
    corpus_weight: str = "clips"  # clips: every training clip the same | balanced: every corpus | own-half: see multi_corpus


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
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), suitable for YAML/JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def section_hash(self, *sections: str) -> str:
        """Short stable hash of the named sections (used as cache keys)."""
        payload = {s: self.to_dict()[s] for s in sections}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- validation

_SHOWN_CHARS = 40  # values longer than this are cut in error messages

_Rule = Callable[[Any], "str | None"]  # returns what is wrong, or None


def _show(value: Any) -> str:
    """Short ``repr`` of a value for an error message (long values are cut)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _at_least(low: float) -> _Rule:
    return lambda v: None if v >= low else f"must be >= {low}"


def _between(low: float, high: float, *, high_open: bool = False, low_open: bool = False) -> _Rule:
    def rule(v: Any) -> str | None:
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
        return None if ok else f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    return rule


def _one_of(*choices: str | int) -> _Rule:
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}"


def _ordered_pair(low: float | None = None) -> _Rule:
    def rule(v: Any) -> str | None:
        if v[0] > v[1]:
            return "must be (low, high) with low <= high"
        if low is not None and v[0] < low:
            return f"values must be >= {low}"
        return None

    return rule


def _labels(v: list[str] | None) -> str | None:
    from serlib.data.corpora import CANONICAL_LABELS

    if v is None:
        return None
    unknown = [lab for lab in v if lab not in CANONICAL_LABELS]
    if unknown:
        return f"unknown label(s) {_show(unknown)}; labels are {', '.join(CANONICAL_LABELS)}"
    if len(set(v)) != len(v) or len(v) < 2:
        return "must list at least two distinct labels (or be null for every label present)"
    return None


def _corpora(v: list[str]) -> str | None:
    from serlib.data.corpora import canonical_corpus_name

    try:
        names = [canonical_corpus_name(c) for c in v]
    except ValueError as err:
        return str(err)
    return "must not name a corpus twice" if len(set(names)) != len(names) else None


def _channels(v: list[int]) -> str | None:
    return None if v and min(v) >= 1 else "must be a non-empty list of positive integers"


def _device(v: str) -> str | None:
    return None if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) else "must be auto, cpu, cuda, cuda:N or mps"


def _speeds(v: list[float]) -> str | None:
    return None if v and all(0.5 <= x <= 2.0 for x in v) else "must be a non-empty list of factors in [0.5, 2]"


def _non_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


RULES: dict[str, _Rule] = {
    "seed": _at_least(0),
    "data.corpus": _non_empty,  # canonicalised after the rules (see _canonical_corpus)
    "data.protocol": _one_of("speaker-split", "speaker-cv", "emobox", "split-column", "stratified-cv", "loco", "loco-6"),
    "encoder.extra_classes": _one_of("drop", "mask"),
    "encoder.corpus_norm": _one_of("pooled", "per-corpus"),
    "encoder.corpus_weight": _one_of("clips", "balanced", "own-half"),
    "data.folds": _at_least(0),
    "data.classes": _labels,
    "data.extra_train": _corpora,
    "data.val_fraction": _between(0, 1, high_open=True),
    "preprocess.sample_rate": _between(4000, 192000),
    "preprocess.denoise": _one_of("none", "demucs"),
    "preprocess.demucs_model": _non_empty,
    "preprocess.vad_threshold": _between(0, 1),
    "preprocess.vad_pad_ms": _at_least(0),
    "preprocess.normalize": _one_of("rms", "peak", "none"),
    "preprocess.target_dbfs": _between(-100, 0),
    "preprocess.max_seconds": _at_least(0),
    "preprocess.max_file_seconds": _at_least(0),
    "features.kind": _one_of("mfcc", "logmel"),
    "features.n_mfcc": _at_least(1),
    "features.n_mels": _at_least(1),
    "features.win_ms": _between(0, 1000, low_open=True),
    "features.hop_ms": _between(0, 1000, low_open=True),
    "features.lld": _one_of("none", "egemaps", "compare"),
    "wave_augment.kind": _one_of("random", "speed"),
    "wave_augment.copies": _at_least(0),
    "wave_augment.speeds": _speeds,
    "wave_augment.time_stretch": _ordered_pair(low=0.1),
    "wave_augment.pitch_shift": _ordered_pair(),
    "wave_augment.noise_snr_db": _ordered_pair(),
    "batch_augment.time_masks": _at_least(0),
    "batch_augment.time_mask_width": _at_least(0),
    "batch_augment.freq_masks": _at_least(0),
    "batch_augment.freq_mask_width": _at_least(0),
    "batch_augment.mixup_alpha": _between(0, 100, low_open=True),
    "batch_augment.mixup_prob": _between(0, 1),
    "model.conv_channels": _channels,
    "model.kernel_size": _at_least(1),
    "model.lstm_hidden": _at_least(1),
    "model.lstm_layers": _at_least(1),
    "model.attention_heads": _at_least(1),
    "model.attention_dim": _at_least(1),
    "model.time_reduction": _at_least(1),
    "model.dropout": _between(0, 1, high_open=True),
    "model.pooling": _one_of("attention", "attentive-stats"),
    "train.epochs": _at_least(1),
    "train.batch_size": _at_least(1),
    "train.lr": _between(0, 10, low_open=True),
    "train.weight_decay": _at_least(0),
    "train.warmup_epochs": _at_least(0),
    "train.min_lr_ratio": _between(0, 1),
    "train.label_smoothing": _between(0, 1, high_open=True),
    "train.grad_clip": _at_least(0),
    "train.patience": _at_least(1),
    "train.average_last": _at_least(0),
    "train.max_train_frames": _at_least(1),
    "train.num_threads": _at_least(0),
    "train.device": _device,
    "encoder.backend": _one_of("torch", "ct2"),
    "encoder.mode": _one_of("own", "pad10", "pad30"),
    "encoder.compute_type": _one_of("int8", "float32"),
    "encoder.layer": _one_of("auto", "last", "mean", 0, 1, 2, 3, 4, 5, 6),
    "model.name": _one_of("tier1", "crnn2d"),
    "model.conv2d_channels": _channels,
    "model.input_planes": _at_least(1),
}
"""Range or choice of every value, by dotted key (types come from the dataclass annotations)."""

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # YAML 1.1 reads "1e-3" as a string


def _describe_type(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe_type(a) for a in args)
    if origin is list:
        return f"a list of {_describe_type(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is tuple:
        return f"a pair of {_describe_type(args[0]).removeprefix('a ').removeprefix('an ')}s" if len(args) == 2 else "a tuple"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the annotated type ``hint``; raises TypeError when it is not one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)) or (origin is tuple and len(value) != len(args)):
            raise TypeError
        items = [_coerce(v, args[0] if origin is list else args[i]) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - an annotation this validator does not know
        return value
    raise TypeError


def _build(cls: type, values: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, checking every key, type and range."""
    if values is None:  # an empty YAML section ("train:" with nothing below)
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_show(values)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, values)) - set(known))
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown key(s) {_show(unknown)}; valid keys: {sorted(known)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        key = f"{where}.{name}".lstrip(".")
        default = known[name].default_factory() if known[name].default_factory is not dataclasses.MISSING else known[name].default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, key)
            continue
        try:
            value = _coerce(value, hints[name])
        except TypeError:
            raise ConfigError(f"{key}: expected {_describe_type(hints[name])}, got {_show(value)}") from None
        problem = RULES[key](value) if key in RULES else None
        if problem:
            raise ConfigError(f"{key}={_show(value)}: {problem}")
        kwargs[name] = value
    return cls(**kwargs)


def _check_consistency(config: "Config") -> None:
    """Rules that involve two values, and the canonical corpus name."""
    from serlib.data.corpora import canonical_corpus_name

    if config.data.manifest:  # a corpus of one's own is named after its manifest, not one of the seven
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", config.data.corpus):
            raise ConfigError(f"data.corpus={config.data.corpus!r}: a manifest corpus name is lower-case letters, "
                              "digits and '-'")
        if config.data.protocol == "emobox":
            raise ConfigError("data.protocol=emobox: EmoBox folds exist for the seven known corpora only; a manifest "
                              "uses speaker-cv, speaker-split, split-column or stratified-cv")
    else:
        if config.data.protocol in ("split-column", "stratified-cv"):
            raise ConfigError(f"data.protocol={config.data.protocol}: for a manifest corpus only (data.manifest)")
        try:
            config.data.corpus = canonical_corpus_name(config.data.corpus)
        except ValueError as err:
            raise ConfigError(f"data.corpus: {err}") from None
    if config.data.protocol in ("loco", "loco-6"):
        from serlib.data.splits import LOCO_CLASSES

        config.data.classes = config.data.classes or list(LOCO_CLASSES[config.data.protocol])
    # The corpus itself is dropped from data.extra_train (its training part is used anyway), so one overlay
    # ("also train on RAVDESS") applies to every corpus.
    config.data.extra_train = [c for c in map(canonical_corpus_name, config.data.extra_train)
                               if c != config.data.corpus]
    f, m = config.features, config.model
    if f.kind == "mfcc" and f.n_mfcc > f.n_mels:
        raise ConfigError(f"features.n_mfcc={f.n_mfcc} must be <= features.n_mels={f.n_mels}")
    w = config.wave_augment
    if w.enabled and w.kind == "speed" and w.copies > len(w.speeds):
        raise ConfigError(f"wave_augment.copies={w.copies} exceeds the {len(w.speeds)} wave_augment.speeds "
                          f"factor(s); with wave_augment.kind=speed each copy uses one factor")
    t = config.train
    if t.average_last and t.patience < t.epochs:
        raise ConfigError(f"train.average_last={t.average_last} averages the last epochs of a full run: set "
                          f"train.patience >= train.epochs={t.epochs} (no early stopping)")
    if t.speaker_norm and t.sentence_norm:
        raise ConfigError("train.speaker_norm and train.sentence_norm both normalise each clip's input: choose one")
    if m.attention_dim % m.attention_heads:
        raise ConfigError(
            f"model.attention_dim={m.attention_dim} must be a multiple of model.attention_heads={m.attention_heads}"
        )


def check_device_available(device: str) -> None:
    """Raise :class:`ConfigError` when ``train.device`` names an accelerator this machine lacks.

    ``auto`` and ``cpu`` always pass. Call it before training starts (the CLI
    does), so that ``train.device=cuda`` on a CPU-only machine is one line, not
    a traceback from inside the training loop.
    """
    import torch

    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={device}: no CUDA GPU is available here; use train.device=auto or cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"train.device={device}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("train.device=mps: Apple MPS is not available here; use train.device=auto or cpu")


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
        raise ConfigError(f"override {_show(text)}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {_show(text)}: expected KEY.PATH=VALUE, e.g. train.epochs=5")
    try:
        value: Any = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {_show(text)}: the value is not valid YAML ({_yaml_problem(err)})") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def config_from_dict(values: dict[str, Any]) -> Config:
    """Validate a nested dict against the schema: keys, types, ranges; the corpus name is canonicalised.

    Raises
    ------
    ConfigError
        One line naming the first key that is wrong and why.
    """
    config = _build(Config, values, "")
    _check_consistency(config)
    return config


def config_from_model_file(values: dict[str, Any], source: str, *, demucs_model: str | None = None) -> Config:
    """The config embedded in a checkpoint or a shipped model's sidecar, validated like any config.

    A model file may name a pretrained Demucs model (``htdemucs``), never a path:
    the weights a denoiser loads come from the user's own caches, or from
    ``demucs_model`` (the user's command line), which replaces whatever the file says.

    Raises
    ------
    ConfigError
        One line naming ``source`` and the key that is wrong.
    """
    values = {**values, "preprocess": dict(values.get("preprocess") or {})} if isinstance(values, dict) else values
    if demucs_model is not None and isinstance(values, dict):
        values["preprocess"]["demucs_model"] = demucs_model
    try:
        config = config_from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    named = config.preprocess.demucs_model
    if demucs_model is None and not re.fullmatch(r"[A-Za-z0-9_]+", named):
        raise ConfigError(f"{source}: preprocess.demucs_model {_show(named)} is a path, and a model file may only name "
                          "a pretrained Demucs model (e.g. htdemucs); give your own weights with --demucs-model PATH")
    return config


def _yaml_problem(err: yaml.YAMLError) -> str:
    """The short cause of a YAML error (without PyYAML's multi-line context)."""
    problem = str(getattr(err, "problem", None) or getattr(err, "reason", None) or str(err).splitlines()[0])
    tag = re.search(r"constructor for the tag '(?:tag:yaml.org,2002:)?([^']*)'", problem)
    if tag:
        return f"the tag !!{_show(tag.group(1))[1:-1]} is not allowed: only plain YAML values are read"
    return problem if len(problem) <= 80 else problem[:77] + "..."


def _yaml_line(err: yaml.YAMLError, text: str) -> int | None:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    position = getattr(err, "position", None)  # ReaderError (control characters)
    return text[:position].count("\n") + 1 if isinstance(position, int) else None


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (the last would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} appears twice in one section",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """Read one config file as a mapping (``{}`` when empty).

    Only plain YAML is read (``yaml.safe_load``): a ``!!python/...`` tag is an
    error, never executed, and so is a key given twice in one section.

    Raises
    ------
    ConfigError
        One line naming the file (and the line, where there is one) when it is
        missing, unreadable, not text, not YAML, or not a mapping at the top.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p} is a folder, not a config file (e.g. configs/ravdess.yaml)")
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read the config file ({err.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(f"{p}, line {line}: not a text (UTF-8) file; is this really a config?") from None
    try:
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        line = _yaml_line(err, text)
        where = f"{p}, line {line}" if line else str(p)
        raise ConfigError(f"{where}: not valid YAML ({_yaml_problem(err)})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        kind = {list: "a list", str: "a single string"}.get(type(loaded), f"a {type(loaded).__name__}")
        raise ConfigError(f"{p}, line 1: expected a mapping of sections (data:, train:, ...), got {kind}")
    return loaded


def load_config(
    path: str | Path | None = None,
    *overlays: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """Load a YAML config, merge overlay files and ``KEY=VALUE`` overrides, and validate it.

    Parameters
    ----------
    path
        Base YAML file, or None for the defaults.
    overlays
        Further YAML files merged on top in order (ablations).
    overrides
        Command-line style overrides such as ``"train.epochs=3"``.

    Raises
    ------
    ConfigError
        A file cannot be read as a YAML mapping, or a key, type or value is wrong.
    """
    values: dict[str, Any] = {}
    for p in ([path] if path else []) + list(overlays):
        values = deep_merge(values, read_yaml_file(p))
    for text in overrides:
        values = deep_merge(values, parse_override(text))
    return config_from_dict(values)


def save_config(config: Config, path: str | Path) -> None:
    """Write the fully resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
