"""The Tier-1 network: sizes as specified, padding never matters."""

from __future__ import annotations

import pytest
import torch

from serlib.config import load_config
from serlib.model import Tier1SER, count_parameters, lengths_to_mask


def test_base_config_is_near_the_reference_0_93_million_parameters():
    n = count_parameters(Tier1SER(40, 8, load_config().model))
    assert 0.85e6 <= n <= 1.05e6, n


def test_large_config_is_near_the_reference_3_7_million_parameters():
    n = count_parameters(Tier1SER(40, 8, load_config("configs/ablations/large.yaml").model))
    assert 3.4e6 <= n <= 4.0e6, n


def test_padding_never_changes_the_output():
    torch.manual_seed(0)
    model = Tier1SER(40, 6).eval()
    x = torch.randn(3, 50, 40)
    lengths = torch.tensor([50, 31, 7])
    padded = torch.cat([x, 100 * torch.randn(3, 23, 40)], dim=1)  # garbage after the valid frames
    for b, n in enumerate(lengths):
        padded[b, n:] = 1e3 * torch.randn(padded.shape[1] - n, 40)
    with torch.no_grad():
        assert torch.allclose(model(x, lengths), model(padded, lengths), atol=1e-4)
        # and one clip's logits do not depend on its batch mates
        alone = model(x[1:2, :31], lengths[1:2])
        assert torch.allclose(alone, model(padded, lengths)[1:2], atol=1e-4)


@pytest.mark.parametrize("frames", [1, 2, 5, 400])
def test_any_length_gives_finite_logits(frames):
    model = Tier1SER(40, 4).eval()
    with torch.no_grad():
        out = model(torch.randn(2, frames, 40), torch.tensor([frames, max(1, frames // 2)]))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_mask_marks_valid_steps():
    assert lengths_to_mask(torch.tensor([2, 0, 3]), 3).tolist() == [[True, True, False], [False] * 3, [True] * 3]
