"""Hand-written region code gives the values of the library that does the same job (issue 14):
Captum's FeatureAblation for region ablation, nilearn's NiftiLabelsMasker for region means."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sepclr_med.io.grid import Grid


def _labels(shape, rng) -> np.ndarray:
    labels = rng.integers(0, 5, size=shape).astype(np.int32)
    labels[0] = 0  # some background
    return labels


def test_region_ablation_is_captums_feature_ablation():
    from captum.attr import FeatureAblation

    from sepclr_med.explain.saliency import Projection, region_ablation
    from sepclr_med.models import ModelConfig, SepCLRModel

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    shape = (7, 8, 9)
    model = SepCLRModel(ModelConfig(salient_dim=4, common_dim=4)).eval()
    volumes = torch.from_numpy(rng.random((3, 1, *shape), dtype=np.float32))
    baseline = torch.from_numpy(rng.random((1, 1, *shape), dtype=np.float32))
    labels = _labels(shape, rng)
    ids = [1, 2, 3, 4]
    u = torch.from_numpy(rng.standard_normal((3, 4)).astype(np.float32))
    ours = region_ablation(model, volumes, u, baseline, labels, ids)
    with torch.no_grad():
        attr = FeatureAblation(Projection(model)).attribute(
            volumes,
            baselines=baseline,
            feature_mask=torch.from_numpy(labels).long()[None, None],
            additional_forward_args=(u,),
        )
    captum = np.stack([attr[:, 0][:, labels == r][:, 0].numpy() for r in ids], axis=1)
    assert ours.shape == (3, 4) and np.abs(ours).max() > 1e-4
    np.testing.assert_allclose(ours, captum, atol=1e-5)


def test_region_means_are_nilearns_labels_masker():
    from nilearn.maskers import NiftiLabelsMasker

    from sepclr_med.explain.regions import region_table

    rng = np.random.default_rng(1)
    grid = Grid(np.diag([2.0, 2.0, 2.0, 1.0]), (7, 8, 9))
    labels, data = _labels(grid.shape, rng), rng.standard_normal(grid.shape)
    regions = pd.DataFrame({"id": [1, 2, 3, 4, 9], "name": list("abcde"), "hemisphere": "L"})  # 9: not on the grid
    table = region_table(data, labels, regions).set_index("region_id").sort_index()
    masker = NiftiLabelsMasker(
        grid.image(labels, dtype=np.int32), strategy="mean", resampling_target=None, standardize=None
    )
    means = np.ravel(masker.fit_transform(grid.image(data)))
    assert list(table.index) == [1, 2, 3, 4]
    np.testing.assert_allclose(table["mean_attribution"].to_numpy(), means, atol=1e-6)
    assert table["voxels"].tolist() == [int((labels == r).sum()) for r in (1, 2, 3, 4)]
