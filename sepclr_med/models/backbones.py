"""3D encoders mapping a volume ``(n, 1, X, Y, Z)`` to a representation ``(n, d)``.

``small`` (default, CPU): four stride-2 conv blocks (16-32-64-128 channels) with GroupNorm,
global average pooling and a linear map to ``d``. ``resnet10``/``resnet18``/``densenet121``: MONAI
networks for GPUs, with GroupNorm instead of BatchNorm (small 3D batches, CPU DDP; InstanceNorm
would fail on DenseNet's 1-voxel last maps at 4 mm).
"""

from __future__ import annotations

import torch
from torch import nn

from sepclr_med.errors import SepclrError


def _block(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, kernel_size=3, stride=2, padding=1, bias=False),
        nn.GroupNorm(min(groups, cout), cout),
        nn.LeakyReLU(0.1, inplace=True),
        nn.Conv3d(cout, cout, kernel_size=3, padding=1, bias=False),
        nn.GroupNorm(min(groups, cout), cout),
        nn.LeakyReLU(0.1, inplace=True),
    )


class SmallCNN3D(nn.Module):
    """A fast 3D CNN encoder.

    Parameters
    ----------
    out_dim : int
        Size of the representation.
    in_channels : int
        Input channels.
    channels : tuple of int
        Channels of the stride-2 blocks.
    groups : int
        GroupNorm groups.
    """

    def __init__(
        self, out_dim: int, in_channels: int = 1, channels: tuple[int, ...] = (16, 32, 64, 128), groups: int = 8
    ) -> None:
        super().__init__()
        blocks, cin = [], in_channels
        for cout in channels:
            blocks.append(_block(cin, cout, groups))
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(cin, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _monai_resnet(depth: int, out_dim: int, in_channels: int) -> nn.Module:
    from monai.networks.nets import resnet10, resnet18

    factory = {10: resnet10, 18: resnet18}[depth]
    return factory(
        spatial_dims=3,
        n_input_channels=in_channels,
        num_classes=out_dim,
        conv1_t_stride=2,
        norm=("group", {"num_groups": 8}),
    )


def _monai_densenet(out_dim: int, in_channels: int) -> nn.Module:
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=3, in_channels=in_channels, out_channels=out_dim, norm=("group", {"num_groups": 8}))


BACKBONES = ("small", "resnet10", "resnet18", "densenet121")


def build_backbone(name: str, out_dim: int, in_channels: int = 1) -> nn.Module:
    """Create the encoder called ``name`` (one of :data:`BACKBONES`)."""
    if name == "small":
        return SmallCNN3D(out_dim, in_channels)
    if name in ("resnet10", "resnet18"):
        return _monai_resnet(int(name[6:]), out_dim, in_channels)
    if name == "densenet121":
        return _monai_densenet(out_dim, in_channels)
    raise SepclrError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
