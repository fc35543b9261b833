"""3D contrastive VAE baselines: cVAE (Abid & Zou, 2019) and MM-cVAE (Weinberger et al., 2022).

Two encoders give a shared latent ``z`` and a salient latent ``s``; the decoder reconstructs
patients from ``[z, s]`` and controls from ``[z, 0]``. MM-cVAE adds maximum mean discrepancy
penalties: between the shared latents of controls and patients, and between the controls'
salient latents and the point 0.
"""

from __future__ import annotations

import functools
import operator

import torch
import torch.nn.functional as F
from torch import nn

from sepclr_med.models.backbones import SmallCNN3D


def rbf_mmd(x: torch.Tensor, y: torch.Tensor, scales: tuple[float, ...] = (0.25, 1.0, 4.0)) -> torch.Tensor:
    """Biased MMD^2 estimate between samples ``x`` and ``y`` with a sum of Gaussian kernels.

    Bandwidths are ``scales`` times the median pairwise distance of the pooled sample (median
    heuristic), so the penalty stays informative whatever the latent dimension and scale.
    """
    pooled = torch.cat([x, y])
    d2 = torch.cdist(pooled, pooled).pow(2)
    median = d2.detach()[d2.detach() > 0].median() if bool((d2 > 0).any()) else torch.tensor(1.0)
    kernel = functools.reduce(operator.add, (torch.exp(-d2 / (2 * s * median.clamp(min=1e-6))) for s in scales))
    n = len(x)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


class Decoder3D(nn.Module):
    """Latent -> volume: a linear map to a 3x3x3x128 grid, four stride-2 transposed convs,
    then trilinear resizing to ``shape``."""

    def __init__(self, latent_dim: int, shape: tuple[int, int, int], channels=(128, 64, 32, 16)) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.fc = nn.Linear(latent_dim, channels[0] * 27)
        layers = []
        for cin, cout in zip(channels, channels[1:], strict=False):
            layers += [
                nn.ConvTranspose3d(cin, cout, 4, stride=2, padding=1),
                nn.GroupNorm(min(8, cout), cout),
                nn.LeakyReLU(0.1, inplace=True),
            ]
        layers.append(nn.ConvTranspose3d(channels[-1], 1, 4, stride=2, padding=1))
        self.net = nn.Sequential(*layers)
        self.channels = channels[0]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        x = self.fc(latent).view(-1, self.channels, 3, 3, 3)
        return F.interpolate(self.net(x), size=self.shape, mode="trilinear", align_corners=False)


class ContrastiveVAE(nn.Module):
    """cVAE / MM-cVAE with small 3D CNN encoders.

    Parameters
    ----------
    shape : tuple of int
        Input volume shape (without channel).
    shared_dim, salient_dim : int
        Latent sizes (the "common" and "salient" spaces of the benchmark).
    mmd_weight : float
        0 gives cVAE; > 0 gives MM-cVAE.
    """

    def __init__(
        self, shape: tuple[int, int, int], shared_dim: int = 32, salient_dim: int = 32, mmd_weight: float = 0.0
    ) -> None:
        super().__init__()
        self.shared_encoder = SmallCNN3D(2 * shared_dim)
        self.salient_encoder = SmallCNN3D(2 * salient_dim)
        self.decoder = Decoder3D(shared_dim + salient_dim, shape)
        self.mmd_weight = float(mmd_weight)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means of the shared and salient latents (what probes use)."""
        return self.shared_encoder(x).chunk(2, dim=1)[0], self.salient_encoder(x).chunk(2, dim=1)[0]

    def loss(self, x: torch.Tensor, is_target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Negative ELBO (sum over voxels, mean over subjects) plus the MM penalties."""
        mu_z, logvar_z = self.shared_encoder(x).chunk(2, dim=1)
        mu_s, logvar_s = self.salient_encoder(x).chunk(2, dim=1)
        z = mu_z + torch.randn_like(mu_z) * (0.5 * logvar_z).exp()
        s = mu_s + torch.randn_like(mu_s) * (0.5 * logvar_s).exp()
        t = is_target.to(x.dtype).unsqueeze(1)
        recon = self.decoder(torch.cat([z, s * t], dim=1))
        rec = (recon - x).pow(2).flatten(1).sum(1).mean()
        kl_z = (-0.5 * (1 + logvar_z - mu_z.pow(2) - logvar_z.exp()).sum(1)).mean()
        kl_s = ((-0.5 * (1 + logvar_s - mu_s.pow(2) - logvar_s.exp()).sum(1)) * t.squeeze(1)).sum() / t.sum().clamp(
            min=1
        )
        total = rec + kl_z + kl_s
        terms = {
            "reconstruction": rec.detach().item(),
            "kl_shared": kl_z.detach().item(),
            "kl_salient": kl_s.detach().item(),
        }
        if self.mmd_weight > 0:
            bg, tg = ~is_target.bool(), is_target.bool()
            mmd = rbf_mmd(z[bg], z[tg]) + rbf_mmd(s[bg], torch.zeros_like(s[bg]))
            total = total + self.mmd_weight * mmd
            terms["mmd"] = mmd.detach().item()
        return total, terms
