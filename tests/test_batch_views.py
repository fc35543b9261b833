"""Views made on whole batches (sepclr_med.data.batch_views) against MONAI's per-sample views."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from monai.transforms import Affine, GaussianSmooth

from sepclr_med.data import AugmentConfig, BatchViews, ContrastiveViews
from sepclr_med.data.batch_views import cut_out

SHAPE = (7, 8, 9)
ONLY_AFFINE = AugmentConfig(affine_prob=1.0, noise_prob=0.0, blur_prob=0.0, cutout_prob=0.0)


def smooth_volumes(n: int, seed: int = 0) -> torch.Tensor:
    """Positive, smooth ``(n, 1, 7, 8, 9)`` volumes (a blob whose centre varies)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in SHAPE), indexing="ij"), -1)
    centres = np.array(SHAPE) / 2 + rng.uniform(-1, 1, (n, 3))
    blobs = np.exp(-(((grid[None] - centres[:, None, None, None]) / 2.5) ** 2).sum(-1))
    return torch.tensor(blobs[:, None], dtype=torch.float32)


def test_a_drawn_affine_is_the_one_monai_applies():
    x = smooth_volumes(3)
    views = BatchViews(ONLY_AFFINE, SHAPE, seed=1)
    draws = views.draw([0, 1, 2], epoch=0, view=0)
    out = views.apply(x, draws)
    for b in range(3):
        assert not np.allclose(draws.affine[b], np.eye(4))
        reference = Affine(affine=torch.tensor(draws.affine[b]), padding_mode="zeros", mode="bilinear", image_only=True)
        assert torch.allclose(out[b], torch.as_tensor(reference(x[b])), atol=1e-5)


def test_blur_is_monais_gaussian_and_cutout_a_box():
    x = smooth_volumes(2)
    config = AugmentConfig(affine_prob=0.0, noise_prob=0.0, blur_prob=1.0, cutout_prob=1.0, blur_sigma=(0.6, 0.6))
    views = BatchViews(config, SHAPE, seed=2)
    draws = dataclasses.replace(views.draw([0, 1], 0, 0), cutout_start=np.array([[-1, -1, -1], [1, 2, 3]]))
    out = views.apply(x, draws)
    assert torch.allclose(out[0], torch.as_tensor(GaussianSmooth(sigma=0.6)(x[0])), atol=1e-6)
    size = views.cutout_size  # round(0.15 * shape), at least 1
    box = out[1, 0, 1 : 1 + size[0], 2 : 2 + size[1], 3 : 3 + size[2]]
    assert box.abs().sum() == 0 and out[1].abs().sum() > 0
    assert torch.equal(cut_out(x, np.full((2, 3), -1), size), x)  # no cutout drawn: untouched


def test_views_depend_on_seed_epoch_and_index_only():
    x = smooth_volumes(6)
    config = AugmentConfig(noise_prob=1.0)
    views = BatchViews(config, SHAPE, seed=5)
    before = x.clone()
    a1, a2 = views(x, [0, 1, 2, 3, 4, 5], epoch=3)
    assert torch.equal(x, before)  # the caller's batch is not changed
    # the same subjects in another batch, another order: the same views (to float rounding: the
    # grouped blur's kernel width follows the batch's largest sigma)
    b1, b2 = views(x[[4, 1]], [4, 1], epoch=3)
    assert torch.allclose(b1, a1[[4, 1]], atol=1e-6) and torch.allclose(b2, a2[[4, 1]], atol=1e-6)
    again = BatchViews(config, SHAPE, seed=5)(x, list(range(6)), epoch=3)
    assert torch.equal(again[0], a1) and torch.equal(again[1], a2)
    assert not torch.equal(a1, a2)  # two views differ
    assert not torch.equal(views(x, list(range(6)), epoch=4)[0], a1)  # another epoch, other views
    assert not torch.equal(BatchViews(config, SHAPE, seed=6)(x, list(range(6)), epoch=3)[0], a1)


def _moments(views: torch.Tensor, originals: torch.Tensor) -> np.ndarray:
    """Per view: mean, standard deviation, fraction of exact zeros, correlation with its original."""
    v, o = views.flatten(1).double(), originals.flatten(1).double()
    vc, oc = v - v.mean(1, keepdim=True), o - o.mean(1, keepdim=True)
    corr = (vc * oc).sum(1) / (vc.norm(dim=1) * oc.norm(dim=1))
    return torch.stack([v.mean(1), v.std(1), (v == 0).double().mean(1), corr], 1).numpy()


def test_batch_views_have_the_distribution_of_monai_views():
    """Same settings, 400 views each: the moments' means agree to 4 standard errors."""
    n = 400
    x = smooth_volumes(n, seed=3)
    config = AugmentConfig()  # the defaults: every step at its own probability
    batch = BatchViews(config, SHAPE, seed=11)(x, list(range(n)), epoch=0)[0]
    monai = ContrastiveViews(config.compose(SHAPE)).set_random_state(seed=11)
    per_sample = torch.stack([monai(x[i])[0] for i in range(n)])
    ours, theirs = _moments(batch, x), _moments(per_sample, x)
    standard_error = np.sqrt((ours.var(0) + theirs.var(0)) / n)
    assert np.all(np.abs(ours.mean(0) - theirs.mean(0)) < 4 * standard_error + 1e-9), (
        ours.mean(0),
        theirs.mean(0),
        standard_error,
    )
    assert np.all(theirs.std(0) > 0)  # the check compares distributions, not constants


def test_unsupported_augmentations_are_refused():
    with pytest.raises(ValueError, match="flip_prob"):
        BatchViews(AugmentConfig(flip_prob=0.5), SHAPE)
    with pytest.raises(ValueError, match=r"\(B, 1, \(7, 8, 9\)\)"):
        BatchViews(AugmentConfig(), SHAPE).apply(
            torch.zeros(2, 1, 9, 8, 7), BatchViews(AugmentConfig(), SHAPE).draw([0, 1], 0, 0)
        )
