"""The SepCLR model: two independent encoders (common, salient), each with a projection head.

Losses use the head outputs; analysis (probes, embeddings, explanations) uses the reps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from sepclr_med.models.backbones import build_backbone


@dataclass
class ModelConfig:
    """Architecture settings.

    Parameters
    ----------
    backbone : str
        Encoder type (``small``, ``resnet10``, ``resnet18``, ``densenet121``).
    common_dim, salient_dim : int
        Sizes of the common and salient representations.
    head_hidden : int
        Hidden width of the projection heads (paper: 128).
    common_intensity : bool
        Add a learned linear function of each volume's mean and standard deviation to the common
        rep (:class:`GlobalIntensity`). The backbones are exactly invariant to a global intensity
        gain, so without it the common space cannot hold site gain or global atrophy.
    """

    backbone: str = "small"
    common_dim: int = 32
    salient_dim: int = 32
    head_hidden: int = 128
    common_intensity: bool = True

    def to_dict(self) -> dict:
        """Plain dictionary."""
        return asdict(self)


class GlobalIntensity(nn.Module):
    """Linear map of each volume's per-channel mean and standard deviation to a rep offset.

    Every backbone here starts with a bias-free convolution followed by GroupNorm, which makes it
    invariant to multiplying the input by a constant (measured: 4e-6 change for a 15 % gain, the
    rep itself ~0.24). A site's scanner gain and age-related global GM loss are such constants;
    this side path gives them back to the encoder it is attached to.

    Parameters
    ----------
    in_channels : int
        Channels of the volumes.
    dim : int
        Size of the rep it is added to.
    """

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * in_channels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.float().flatten(2)
        return self.linear(torch.cat([flat.mean(-1), flat.std(-1)], dim=1))


class ProjectionHead(nn.Sequential):
    """Linear(d, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, d), as in the paper."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


class SepCLROutput(NamedTuple):
    """Representations of the local batch and head outputs (possibly of the gathered batch)."""

    common_rep: torch.Tensor
    salient_rep: torch.Tensor
    common_head: torch.Tensor
    salient_head: torch.Tensor


class SepCLRModel(nn.Module):
    """Two independent 3D encoders with their projection heads.

    Parameters
    ----------
    config : ModelConfig
        Architecture.
    in_channels : int
        Input channels of the volumes.
    """

    def __init__(self, config: ModelConfig | None = None, in_channels: int = 1) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.common_encoder = build_backbone(c.backbone, c.common_dim, in_channels)
        self.salient_encoder = build_backbone(c.backbone, c.salient_dim, in_channels)
        self.common_intensity = GlobalIntensity(in_channels, c.common_dim) if c.common_intensity else None
        self.common_head = ProjectionHead(c.common_dim, c.head_hidden)
        self.salient_head = ProjectionHead(c.salient_dim, c.head_hidden)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Common and salient representations of ``x`` (what analysis uses)."""
        common = self.common_encoder(x)
        if self.common_intensity is not None:
            common = common + self.common_intensity(x).to(common.dtype)
        return common, self.salient_encoder(x)

    def forward(
        self, x: torch.Tensor, gather: Callable[[torch.Tensor], torch.Tensor] | None = None, n_views: int = 1
    ) -> SepCLROutput:
        """Reps of ``x`` and head outputs.

        Parameters
        ----------
        x : torch.Tensor
            Volumes ``(n_views * n, C, X, Y, Z)``: the views stacked one after the other.
        gather : callable, optional
            Applied to each view's reps before the heads; under DDP it concatenates the reps of
            all ranks (with gradients), so that the heads' BatchNorm and the loss see the global
            batch and the objective does not depend on the world size.
        n_views : int
            Number of stacked views; each goes through the heads separately (own BatchNorm
            statistics), and head outputs are returned stacked in the same order.
        """
        common, salient = self.encode(x)
        gather = gather or (lambda t: t)
        with torch.autocast(device_type=x.device.type, enabled=False):  # heads and loss in float32
            heads_c = [self.common_head(gather(c).float()) for c in common.chunk(n_views)]
            heads_s = [self.salient_head(gather(s).float()) for s in salient.chunk(n_views)]
        return SepCLROutput(common, salient, torch.cat(heads_c), torch.cat(heads_s))
