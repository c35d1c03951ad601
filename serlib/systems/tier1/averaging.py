"""Weight averaging over the last epochs of training (``train.average_last``).

Stochastic weight averaging (Izmailov et al., 2018, "Averaging weights leads
to wider optima and better generalization"): the network that is tested is the
uniform mean of the weights reached at the end of each of the last *K* epochs,
instead of the single epoch with the best validation UAR. On a corpus whose
validation part holds one or two speakers the validation curve jumps by several
points from one epoch to the next, so the best epoch is partly chosen by noise;
the mean of the late, low-learning-rate epochs needs no choice at all.

Batch-norm statistics belong to the weights they were measured with, so after
averaging they are measured again with one pass over training batches
(:func:`recompute_batchnorm`), as ``torch.optim.swa_utils.update_bn`` does.
Averaging reads the weights and changes nothing else: the training trajectory
of a run with averaging is that of the same run without it.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class WeightAverage:
    """Running uniform mean of a network's parameters and buffers.

    Floating-point tensors are averaged; integer buffers (batch-norm's
    ``num_batches_tracked``) keep the newest value.
    """

    def __init__(self) -> None:
        self.mean: dict[str, torch.Tensor] | None = None
        self.count = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Add the model's current weights to the mean."""
        state = model.state_dict()
        self.count += 1
        if self.mean is None:
            self.mean = {k: v.detach().clone() for k, v in state.items()}
            return
        for k, v in state.items():
            if v.is_floating_point():
                self.mean[k] += (v.detach() - self.mean[k]) / self.count
            else:
                self.mean[k] = v.detach().clone()

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (raises when nothing was averaged)."""
        if self.mean is None:
            raise RuntimeError("no epoch was averaged")
        model.load_state_dict(self.mean)

    def state_dict(self) -> dict[str, object]:
        """Plain data for a checkpoint (``last.pt``), so a resumed run continues the same mean."""
        return {"mean": self.mean, "count": self.count}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.mean = state["mean"]  # type: ignore[assignment]
        self.count = int(state["count"])  # type: ignore[arg-type]


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                        device: str = "cpu") -> bool:
    """Measure every batch-norm layer's running mean and variance again over ``batches`` of ``(x, lengths)``.

    Each layer's statistics become the plain average over the batches
    (momentum ``None``); dropout stays off. Returns False, touching nothing,
    when the model has no batch-norm layer.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    for x, lengths in batches:
        model(x.to(device), lengths.to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
    return True
