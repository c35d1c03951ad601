"""Whisper's log-mel and the input-length modes, against references computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from serlib.features.encoders.logmel import (MODES, encoder_frames, hann_window, log_mel, mel_filters, mel_windows,
                                    power_spectrogram)

SR = 16000


def _bin_centred_cosine(k0: int, amplitude: float, n: int) -> np.ndarray:
    return (amplitude * np.cos(2 * np.pi * k0 * np.arange(n) / 400)).astype(np.float32)


def test_pure_tone_log_mel_matches_the_hand_computed_spectrum():
    # A cosine at FFT bin 40 (1600 Hz) whose last sample is a crest (16000 * 40 / 400 is an integer),
    # so the reflect padding continues it seamlessly and every frame windows the same pure tone.
    # The DFT of a periodic-Hann-windowed bin-centred tone of amplitude A has |X[k0]| = A N / 4,
    # |X[k0 +- 1]| = A N / 8 and nothing elsewhere: power 2500 and 625 for A = 0.5, N = 400.
    wave = _bin_centred_cosine(40, 0.5, 16001)
    power = np.zeros(201)
    power[40], power[39], power[41] = 2500.0, 625.0, 625.0
    log = np.log10(np.maximum(mel_filters().astype(np.float64) @ power, 1e-10))
    expected = (np.maximum(log, log.max() - 8.0) + 4.0) / 4.0

    got = log_mel(wave)

    assert got.shape == (80, 100) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.repeat(expected[:, None], 100, axis=1), atol=2e-4)
    band_of_tone = int(np.argmax(expected))
    assert np.all(np.argmax(got, axis=0) == band_of_tone)
    assert np.isclose(got.min(), got.max() - 2.0, atol=1e-6)  # bands without energy sit at the floor, max - 8 in log10


def test_power_spectrogram_of_the_tone_has_exactly_three_bins():
    p = power_spectrogram(_bin_centred_cosine(40, 0.5, 16001))
    assert p.shape == (100, 201)
    np.testing.assert_allclose(p[:, [39, 40, 41]], np.tile([625.0, 2500.0, 625.0], (100, 1)), rtol=1e-4)
    assert np.delete(p, [39, 40, 41], axis=1).max() < 1e-6


def test_log_mel_agrees_with_librosas_independent_stft_on_noise():
    import librosa

    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(SR) * np.linspace(0.01, 0.5, SR)).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=wave.astype(np.float64), sr=SR, n_fft=400, hop_length=160, window="hann",
                                         center=True, pad_mode="reflect", power=2.0, n_mels=80, htk=False, norm="slaney")
    log = np.log10(np.maximum(mel[:, :-1], 1e-10))
    expected = (np.maximum(log, log.max() - 8) + 4) / 4
    np.testing.assert_allclose(log_mel(wave), expected, atol=1e-3)


@pytest.mark.parametrize("n, frames", [(320, 2), (16000, 100), (16159, 100), (16160, 101)])
def test_log_mel_has_one_frame_per_160_samples_with_the_last_dropped(n, frames):
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    assert log_mel(wave).shape == (80, frames)


def test_log_mel_refuses_a_signal_shorter_than_one_encoder_frame():
    with pytest.raises(ValueError, match="at least 320 samples"):
        log_mel(np.zeros(100, np.float32))


def test_whisper_uses_a_periodic_hann_window_and_slaney_filters():
    w = hann_window()
    assert w[0] == 0.0 and np.isclose(w[200], 1.0) and w.sum() == pytest.approx(200.0)
    f = mel_filters()
    assert f.shape == (80, 201)
    assert f[:, 0].max() == 0.0 and np.all(f.sum(axis=1) > 0)  # DC is in no band, every band has bins


# ----------------------------------------------------------------------------- input-length modes


def _clip(seconds: float) -> np.ndarray:
    return (0.1 * np.random.default_rng(1).standard_normal(int(seconds * SR))).astype(np.float32)


def test_own_mode_pads_to_an_even_frame_count_and_counts_the_audio_frames():
    wave = _clip(3.3105)  # 52968 samples: not a multiple of 320
    (w,) = mel_windows(wave, "own")
    assert w.mel.shape == (80, 2 * encoder_frames(len(wave))) and w.audio_frames == 166 == -(-52968 // 320)


@pytest.mark.parametrize("mode, frames", [("pad10", 1000), ("pad30", 3000)])
def test_pad_modes_pad_to_a_fixed_length_but_keep_only_the_audio_frames(mode, frames):
    (w,) = mel_windows(_clip(3.3105), mode)
    assert w.mel.shape == (80, frames) and w.audio_frames == 166
    assert np.allclose(w.mel[:, 400:], w.mel.min())  # the zero padding sits at the log-mel floor


def test_clips_longer_than_a_window_are_cut_into_consecutive_windows():
    wave = _clip(35.0)
    own = mel_windows(wave, "own")
    assert [w.mel.shape[1] for w in own] == [3000, 500] and [w.audio_frames for w in own] == [1500, 250]
    pad10 = mel_windows(_clip(12.0), "pad10")
    assert [w.mel.shape[1] for w in pad10] == [1000, 1000] and [w.audio_frames for w in pad10] == [500, 100]


def test_modes_are_own_pad10_pad30_and_others_are_refused():
    assert list(MODES) == ["own", "pad10", "pad30"]
    with pytest.raises(ValueError, match="unknown input mode 'pad5'"):
        mel_windows(_clip(1.0), "pad5")


def test_a_long_clip_is_cut_into_the_same_windows_one_at_a_time():
    from serlib.features.encoders.logmel import long_mel_windows

    rng = np.random.default_rng(3)
    wave = (0.1 * rng.standard_normal(16000 * 65 + 123)).astype(np.float32)
    wave[16000 * 40: 16000 * 41] *= 8  # the loudest second sits in the second window
    whole, lazy = mel_windows(wave, "own"), list(long_mel_windows(wave))
    assert len(lazy) == len(whole) == 3
    for a, b in zip(whole, lazy):
        assert a.audio_frames == b.audio_frames and a.mel.shape == b.mel.shape
        np.testing.assert_allclose(a.mel, b.mel, atol=2e-5)  # the clamp uses the whole clip's loudest value


class _Projection:
    """A cheap stand-in encoder: a fixed random projection of the log-mel at the encoder's frame rate."""

    def __new__(cls):
        from serlib.features.encoders.base import WhisperBackend

        class Projection(WhisperBackend):
            name, n_layers = "torch", 2
            weights = np.random.default_rng(0).standard_normal((2, 80, 512)).astype(np.float32) / 9

            def encode_mel(self, mel):
                pairs = mel[:, : mel.shape[1] // 2 * 2].reshape(80, -1, 2).mean(-1).T
                return np.tanh(np.einsum("tm,lmd->ltd", pairs, self.weights)).astype(np.float32)

        return Projection()


def test_a_long_clip_pools_as_the_whole_clip_would_in_the_memory_of_one_window():
    import tracemalloc

    from serlib.features.encoders.base import pool_stats

    encoder = _Projection()
    rng = np.random.default_rng(4)
    short = (0.1 * rng.standard_normal(16000 * 70)).astype(np.float32)
    np.testing.assert_allclose(encoder.pooled(short), pool_stats(encoder.frames(short)), atol=1e-5)
    long = (0.1 * rng.standard_normal(16000 * 600)).astype(np.float32)  # 10 minutes: 38 MB of samples
    tracemalloc.start()
    encoder.pooled(long)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 120e6  # log_mel of the whole clip alone allocates about 230 MB


def test_the_mel_filterbank_is_librosas_slaney_filterbank():
    import librosa

    from serlib.features.encoders.logmel import mel_filters

    reference = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, htk=False, norm="slaney")
    assert mel_filters().shape == (80, 201)
    np.testing.assert_allclose(mel_filters(), reference, rtol=0, atol=1e-7)
