"""The networks: sizes as specified, padding never matters, for every registered architecture."""

from __future__ import annotations

import pytest
import torch

from serlib.config import ModelConfig, load_config
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from serlib.systems.tier1.network import (NETWORKS, CRNN2dSER, Tier1SER, bidirectional_lstm, build_network, count_parameters,
                          lengths_to_mask, reverse_within_lengths)


def test_base_config_is_near_the_reference_0_93_million_parameters():
    n = count_parameters(Tier1SER(40, 8, load_config().model))
    assert 0.85e6 <= n <= 1.05e6, n


def test_large_config_is_near_the_reference_3_7_million_parameters():
    n = count_parameters(Tier1SER(40, 8, load_config("configs/ablations/large.yaml").model))
    assert 3.4e6 <= n <= 4.0e6, n


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_padding_never_changes_the_output(name):
    torch.manual_seed(0)
    model = build_network(ModelConfig(name=name), 48, 6).eval()  # 48 = 3 planes of 16 bands for crnn2d
    x = torch.randn(3, 50, 48)
    lengths = torch.tensor([50, 31, 7])
    padded = torch.cat([x, 100 * torch.randn(3, 23, 48)], dim=1)  # garbage after the valid frames
    for b, n in enumerate(lengths):
        padded[b, n:] = 1e3 * torch.randn(padded.shape[1] - n, 48)
    with torch.no_grad():
        assert torch.allclose(model(x, lengths), model(padded, lengths), atol=1e-4)
        # and one clip's logits do not depend on its batch mates
        alone = model(x[1:2, :31], lengths[1:2])
        assert torch.allclose(alone, model(padded, lengths)[1:2], atol=1e-4)


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("frames", [1, 2, 5, 400])
def test_any_length_gives_finite_logits(name, frames):
    model = build_network(ModelConfig(name=name), 48, 4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, frames, 48), torch.tensor([frames, max(1, frames // 2)]))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_the_2d_front_end_reads_each_frame_as_stacked_planes_and_shares_kernels_across_frequency():
    cfg = ModelConfig(name="crnn2d", conv2d_channels=[8, 16], input_planes=3)
    model = CRNN2dSER(3 * 64, 5, cfg)
    assert model.blocks[0].conv.in_channels == 3 and model.lstm.input_size == 16 * 16  # 64 bands halved twice
    assert model.blocks[0].conv.weight.shape == (8, 3, 3, 3)  # one 3x3 kernel per plane, whatever the band
    with pytest.raises(ValueError, match="do not split"):
        CRNN2dSER(100, 5, cfg)


def test_mask_marks_valid_steps():
    assert lengths_to_mask(torch.tensor([2, 0, 3]), 3).tolist() == [[True, True, False], [False] * 3, [True] * 3]


def test_reversing_within_lengths_keeps_padding_in_place_and_undoes_itself():
    x = torch.arange(2 * 4, dtype=torch.float32).reshape(2, 4, 1)
    lengths = torch.tensor([4, 2])
    flipped = reverse_within_lengths(x, lengths)
    assert flipped[:, :, 0].tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_within_lengths(flipped, lengths), x)


def test_fused_bidirectional_lstm_equals_packed_sequences_in_values_and_gradients():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(12, 8, num_layers=2, batch_first=True, bidirectional=True)
    x = torch.randn(4, 15, 12, requires_grad=True)
    lengths = torch.tensor([15, 6, 1, 11])
    mask = lengths_to_mask(lengths, 15)[:, :, None]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    reference, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=15)
    fused = bidirectional_lstm(lstm, x, lengths) * mask
    assert torch.allclose(fused, reference, atol=1e-6)
    grad_ref = torch.autograd.grad(reference.square().sum(), [x, lstm.weight_hh_l1_reverse])
    grad_fused = torch.autograd.grad(fused.square().sum(), [x, lstm.weight_hh_l1_reverse])
    for a, b in zip(grad_ref, grad_fused):
        assert torch.allclose(a, b, atol=1e-5)
