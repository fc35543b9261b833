"""Two augmented 3D views of each subject, for contrastive learning.

Defaults follow the method page (section 4): small random affine, Gaussian noise, Gaussian
blur and cutout. Intensity scaling and bias fields are *off* by default because they erase
global effects (atrophy, site gain) that the common space should represent; flips are off
because saliency maps keep left and right apart.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    MapTransform,
    RandAffined,
    RandBiasFieldd,
    RandCoarseDropoutd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    Randomizable,
    RandScaleIntensityd,
    Transform,
)


@dataclass
class AugmentConfig:
    """Strength and probability of each augmentation (0 probability disables it)."""

    affine_prob: float = 0.9
    rotate_deg: float = 5.0
    scale: float = 0.05
    translate_vox: float = 2.0
    noise_prob: float = 0.5
    noise_std: float = 0.03
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 0.8)
    cutout_prob: float = 0.3
    cutout_fraction: float = 0.15
    intensity_prob: float = 0.0
    intensity_factor: float = 0.1
    bias_prob: float = 0.0
    bias_coeff: float = 0.1
    flip_prob: float = 0.0

    def to_dict(self) -> dict:
        """Plain dictionary."""
        return asdict(self)

    def compose(self, spatial_shape: tuple[int, ...], key: str = "image") -> Compose:
        """The MONAI ``Compose`` of dictionary transforms applied to one view."""
        rad = np.deg2rad(self.rotate_deg)
        cut = tuple(max(1, int(round(s * self.cutout_fraction))) for s in spatial_shape)
        steps = [
            RandAffined(
                key,
                prob=self.affine_prob,
                rotate_range=(rad, rad, rad),
                scale_range=(self.scale,) * 3,
                translate_range=(self.translate_vox,) * 3,
                padding_mode="zeros",
                mode="bilinear",
            ),
            RandGaussianNoised(key, prob=self.noise_prob, std=self.noise_std),
            RandGaussianSmoothd(
                key, prob=self.blur_prob, sigma_x=self.blur_sigma, sigma_y=self.blur_sigma, sigma_z=self.blur_sigma
            ),
            RandCoarseDropoutd(key, prob=self.cutout_prob, holes=1, spatial_size=cut, fill_value=0),
        ]
        if self.intensity_prob > 0:
            steps.append(RandScaleIntensityd(key, factors=self.intensity_factor, prob=self.intensity_prob))
        if self.bias_prob > 0:
            steps.append(RandBiasFieldd(key, coeff_range=(0.0, self.bias_coeff), prob=self.bias_prob))
        if self.flip_prob > 0:
            steps.append(RandFlipd(key, prob=self.flip_prob, spatial_axis=0))
        return Compose(steps)


class ContrastiveViews(Randomizable, Transform):
    """Array transform: one channel-first volume in, a pair of independently augmented views out.

    Parameters
    ----------
    augment : monai.transforms.Compose
        Dictionary transforms on key ``"image"`` applied once per view.
    """

    def __init__(self, augment: Compose) -> None:
        self.augment = augment

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.augment.set_random_state(seed=int(self.R.randint(2**31)))
        return self

    def randomize(self, data=None) -> None:  # randomness lives in ``augment``
        return None

    def __call__(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.augment({"image": img})["image"]
        second = self.augment({"image": img})["image"]
        return _plain(first), _plain(second)


def _plain(x) -> torch.Tensor:
    """A float32 tensor without MONAI metadata (cheaper to batch and to move to a device)."""
    x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return x.to(torch.float32)


class ContrastiveViewsd(Randomizable, MapTransform):
    """Dictionary twin: replaces ``key`` by ``view_keys`` (two augmented views).

    Parameters
    ----------
    keys : str
        The image key.
    augment : monai.transforms.Compose
        Dictionary transforms on key ``"image"``.
    view_keys : tuple of str
        Names of the two views in the output dictionary.
    keep_original : bool
        Keep ``key`` in the output as well.
    """

    def __init__(
        self,
        keys: KeysCollection,
        augment: Compose,
        view_keys: tuple[str, str] = ("view1", "view2"),
        keep_original: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys)
        self.views = ContrastiveViews(augment)
        self.view_keys = view_keys
        self.keep_original = keep_original

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.views.set_random_state(seed=int(self.R.randint(2**31)))
        return self

    def randomize(self, data=None) -> None:
        return None

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.view_keys[0]], d[self.view_keys[1]] = self.views(d[key])
            if not self.keep_original:
                del d[key]
        return d
