"""Options against leakage of patient-only information into the common space.

``independence_penalty``: squared distance correlation between the patients' common reps and
their salient reps, with the salient reps held fixed (detached). The salient rep is the model's own
estimate of the patient-only variation; pushing only the common encoder away from it removes that
variation from the common space without giving the salient encoder an easy way out (emptying
itself), which is what a two-sided penalty did at large weights.

``LeakageAdversary``: a linear regressor tries to predict the patients' salient reps from their
(L2-normalised) common reps; a gradient-reversal layer makes the common encoder work against it.
If the salient rep carries the subtype and the common rep lets a linear map recover the salient
rep, the common rep leaks the subtype: the adversary removes exactly that linear predictability.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sepclr_med.losses import distance_correlation_sq


def independence_penalty(common: torch.Tensor, salient: torch.Tensor) -> torch.Tensor:
    """dCor² between ``common`` and ``salient`` rows (patients' reps); gradient to ``common`` only."""
    return distance_correlation_sq(common, salient.detach())


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-scale`` backward."""
    return _Reverse.apply(x, scale)


class LeakageAdversary(nn.Module):
    """Linear predictor of salient reps from common reps, trained through gradient reversal.

    Parameters
    ----------
    common_dim, salient_dim : int
        Rep sizes.
    """

    def __init__(self, common_dim: int, salient_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(common_dim, salient_dim)

    def forward(self, common: torch.Tensor, salient: torch.Tensor) -> torch.Tensor:
        """Explained fraction of the (detached, standardised) salient reps: minimised by the
        adversary's own parameters, maximised (through the reversal) by the common encoder."""
        target = salient.detach().float()
        target = (target - target.mean(0)) / (target.std(0) + 1e-6)
        predicted = self.linear(reverse_gradient(F.normalize(common.float(), dim=1)))
        return 1.0 - F.mse_loss(predicted, target) / target.var(0, unbiased=False).mean().clamp(min=1e-6)
