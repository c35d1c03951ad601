"""Augmentation.

Two kinds, applied in different places so that no expensive work is repeated:

* **Waveform augmentation** (random time stretch, pitch shift and noise
  injection, or speed perturbation at fixed factors) is
  computed *once* per clip in :mod:`serlib.features.frames` and cached as extra
  training copies. It is never applied on the fly, and the trainer only ever
  draws copies of *training* clips.
* **Batch augmentation** (SpecAugment-style time/frequency masks and mixup) is
  cheap tensor arithmetic on training batches only.
"""

from __future__ import annotations

import zlib

import librosa
import numpy as np
import torch

from serlib.config import BatchAugmentConfig, WaveAugmentConfig


def clip_rng(utt_id: str, copy: int, seed: int = 0) -> np.random.Generator:
    """A generator that depends only on (seed, utterance, copy): caching is reproducible."""
    return np.random.default_rng([seed, zlib.crc32(utt_id.encode()), copy])


def speed_perturb(wave: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """``wave`` played ``factor`` times faster: tempo and pitch change together (Kaldi's speed perturbation).

    Resampling to ``sample_rate / factor`` and reading the result at
    ``sample_rate`` makes the clip ``1 / factor`` as long.
    """
    if abs(factor - 1.0) < 1e-6:
        return np.ascontiguousarray(wave, dtype=np.float32)
    out = librosa.resample(wave.astype(np.float32), orig_sr=sample_rate, target_sr=round(sample_rate / factor),
                           res_type="soxr_hq")
    return np.ascontiguousarray(out, dtype=np.float32)


def augment_wave(
    wave: np.ndarray, sample_rate: int, config: WaveAugmentConfig, rng: np.random.Generator, copy: int = 0
) -> np.ndarray:
    """Copy number ``copy`` of ``wave``: speed-perturbed by ``config.speeds[copy]`` (``kind: speed``, the first
    ``config.copies`` factors),
    else randomly time-stretched, pitch-shifted and noised."""
    if getattr(config, "kind", "random") == "speed":
        return speed_perturb(wave, sample_rate, float(config.speeds[copy]))
    out = wave.astype(np.float32)
    rate = float(rng.uniform(*config.time_stretch))
    if abs(rate - 1.0) > 1e-3:
        out = librosa.effects.time_stretch(out, rate=rate)
    steps = float(rng.uniform(*config.pitch_shift))
    if abs(steps) > 1e-3:
        out = librosa.effects.pitch_shift(out, sr=sample_rate, n_steps=steps, res_type="soxr_hq")
    snr_db = float(rng.uniform(*config.noise_snr_db))
    power = float(np.mean(out.astype(np.float64) ** 2))
    if power > 0:
        noise = rng.standard_normal(out.shape[0]).astype(np.float32)
        out = out + noise * np.sqrt(power / 10 ** (snr_db / 10))
    return np.ascontiguousarray(out, dtype=np.float32)


def spec_augment(
    x: torch.Tensor, lengths: torch.Tensor, config: BatchAugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """SpecAugment-style masking of a ``(batch, time, feat)`` batch (returns a new tensor).

    Time masks are placed inside each clip's valid length; masked values are set
    to 0, the mean of normalised features.
    """
    x = x.clone()
    batch, _, feats = x.shape
    for b in range(batch):
        length = int(lengths[b])
        for _ in range(config.freq_masks):
            width = int(torch.randint(0, config.freq_mask_width + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, feats - width), (1,), generator=generator))
            x[b, :, start : start + width] = 0.0
        for _ in range(config.time_masks):
            width = int(torch.randint(0, min(config.time_mask_width, length // 5) + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(1, length - width), (1,), generator=generator))
            x[b, start : start + width, :] = 0.0
    return x


def mixup(
    x: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    config: BatchAugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix each example with a random partner of the same batch.

    ``targets`` are one-hot/soft ``(batch, classes)``; returns mixed inputs, the
    longer of the two lengths, and mixed targets. With probability
    ``1 - mixup_prob`` the batch is returned unchanged.
    """
    if float(torch.rand(1, generator=generator)) >= config.mixup_prob:
        return x, lengths, targets
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator))).beta(
        config.mixup_alpha, config.mixup_alpha
    ))
    lam = max(lam, 1 - lam)  # the first clip dominates, so its length mask stays meaningful
    perm = torch.randperm(x.shape[0], generator=generator)
    mixed = lam * x + (1 - lam) * x[perm]
    return mixed, torch.maximum(lengths, lengths[perm]), lam * targets + (1 - lam) * targets[perm]
