"""Data pipeline: grid, intensity, cache, views and the stratified sampler."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest
import torch
from monai.transforms import Compose

from conftest import AFFINE, make_image, write_cohort
from sepclr_med.data import (
    AugmentConfig,
    ContrastiveViewsd,
    GroupStratifiedBatchSampler,
    PreprocessConfig,
    TwoViewDataset,
    cached_dataset,
    preprocessing,
)
from sepclr_med.errors import SepclrError
from sepclr_med.io.reading import read_cohort


@pytest.fixture
def cohort(tmp_path, rng):
    return read_cohort(write_cohort(tmp_path, 3, 3, rng=rng))


def resolved(cohort, **kwargs) -> PreprocessConfig:
    return PreprocessConfig(mask="nonzero", **kwargs).resolve(cohort.table["image"].tolist())


@pytest.fixture
def count_loads(monkeypatch):
    """Count NIfTI decodes (MONAI's NibabelReader calls nibabel.load)."""
    calls = []
    original = nibabel.load

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(nibabel, "load", counting)
    return calls


def test_preprocessing_keeps_grid_and_global_differences(tmp_path):
    data = np.ones((7, 8, 9), np.float32)
    a = make_image(tmp_path / "a.nii.gz", data)
    b = make_image(tmp_path / "b.nii.gz", 0.8 * data)  # global atrophy of 20 %
    config = PreprocessConfig(mask="nonzero").resolve([str(a), str(b)], control_paths=[str(a)])
    assert config.grid_shape == (7, 8, 9)
    assert config.scale == pytest.approx(1.0)
    load = Compose(preprocessing(config))
    va, vb = (load({"image": str(p)})["image"] for p in (a, b))
    assert va.shape == (1, 7, 8, 9) and va.dtype == torch.float32
    assert float(vb.mean() / va.mean()) == pytest.approx(0.8, rel=2**-11)  # kept visible (to float16 rounding)
    assert float(vb[0, 0, 0, 0]) == float(np.float16(0.8))  # stored values are float16's
    zscored = Compose(preprocessing(PreprocessConfig(mask="nonzero", intensity="zscore").resolve([str(a)])))
    ramp = make_image(tmp_path / "r.nii.gz", np.arange(1, 505, dtype=np.float32).reshape(7, 8, 9))
    ramp80 = make_image(tmp_path / "r80.nii.gz", 0.8 * np.arange(1, 505, dtype=np.float32).reshape(7, 8, 9))
    za, zb = (zscored({"image": str(p)})["image"] for p in (ramp, ramp80))
    assert torch.allclose(za, zb, atol=1e-4)  # z-scoring erases the global difference


def test_other_grids_and_orientations_are_resampled_to_the_reference(tmp_path):
    data = np.arange(7 * 8 * 9, dtype=np.float32).reshape(7, 8, 9) + 1
    ref = make_image(tmp_path / "ref.nii.gz", data)
    flipped_affine = AFFINE.copy()
    flipped_affine[0, 0] = -4.0
    flipped_affine[0, 3] = 6 * 4.0  # same world box, x axis stored reversed (LAS)
    flipped = make_image(tmp_path / "las.nii.gz", data[::-1].copy(), affine=flipped_affine)
    coarse = make_image(tmp_path / "c.nii.gz", shape=(4, 4, 5), affine=np.diag([8.0, 8.0, 8.0, 1.0]))
    config = PreprocessConfig(mask="nonzero", intensity="none").resolve([str(ref), str(ref), str(flipped), str(coarse)])
    load = Compose(preprocessing(config))
    out_ref, out_flip, out_coarse = (load({"image": str(p)})["image"] for p in (ref, flipped, coarse))
    assert out_coarse.shape == out_ref.shape == (1, 7, 8, 9)
    assert torch.allclose(out_ref, out_flip, atol=1e-3)  # canonicalised, same anatomy


def test_voxel_size_and_crop(cohort):
    config = resolved(cohort, voxel_size=8.0, spatial_size=(4, 4, 4))
    assert config.grid_shape == (4, 4, 4)  # 4 x 4 x 5 at 8 mm, cropped: the grid is the crop
    item = Compose(preprocessing(config))(cohort.records()[0])
    assert item["image"].shape == (1, 4, 4, 4)


def test_memory_cache_second_epoch_reads_no_nifti(cohort, count_loads):
    config = resolved(cohort)
    count_loads.clear()
    dataset = cached_dataset(cohort.records(), config, cache="memory")
    assert len(count_loads) == len(cohort)  # first pass decodes each file once
    first = [dataset[i]["image"] for i in range(len(dataset))]
    second = [dataset[i]["image"] for i in range(len(dataset))]
    assert len(count_loads) == len(cohort)  # later epochs: no NIfTI read at all
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_disk_cache_is_reused_and_invalidated_by_settings(cohort, tmp_path, count_loads):
    config = resolved(cohort)
    cache_dir = tmp_path / "cache"
    count_loads.clear()
    first = cached_dataset(cohort.records(), config, cache="disk", cache_dir=cache_dir)
    assert len(count_loads) == len(cohort)  # filled once, when made
    values = [first[i]["image"] for i in range(len(first))]
    assert len(count_loads) == len(cohort)  # reading decodes nothing
    files = sorted((cache_dir / config.hash()).iterdir())
    assert len(files) == len(cohort) and all(f.suffix == ".npy" and not f.name.startswith(".") for f in files)
    assert np.load(files[0]).dtype == np.float16 and first.nbytes == sum(f.stat().st_size for f in files)
    count_loads.clear()
    again = cached_dataset(cohort.records(), config, cache="disk", cache_dir=cache_dir)
    assert all(torch.equal(again[i]["image"], values[i]) for i in range(len(again)))
    assert count_loads == []  # a new process with the same settings reads no NIfTI
    changed = resolved(cohort, intensity="zscore")
    assert changed.hash() != config.hash()
    count_loads.clear()
    cached_dataset(cohort.records(), changed, cache="disk", cache_dir=cache_dir)
    assert len(count_loads) == len(cohort)  # changed settings never reuse the stale cache
    assert len(list(cache_dir.iterdir())) == 2


def test_disk_cache_follows_a_changed_image_file(cohort, tmp_path, count_loads):
    config = resolved(cohort)
    cache_dir = tmp_path / "cache"
    cached_dataset(cohort.records(), config, cache="disk", cache_dir=cache_dir)
    make_image(__import__("pathlib").Path(cohort.records()[0]["image"]), np.full((7, 8, 9), 0.5, np.float32))
    count_loads.clear()
    item = cached_dataset(cohort.records(), config, cache="disk", cache_dir=cache_dir)[0]
    assert len(count_loads) == 1  # only the changed file is decoded again
    assert float(item["image"].max()) == float(np.float16(0.5 / config.scale))


def test_two_views_are_seeded_by_seed_epoch_and_index(cohort):
    config = resolved(cohort)
    base = cached_dataset(cohort.records(), config)
    views = lambda: ContrastiveViewsd("image", AugmentConfig(noise_prob=1.0).compose(config.output_shape))  # noqa: E731
    a, b = TwoViewDataset(base, views(), seed=5), TwoViewDataset(base, views(), seed=5)
    x, y = a[2], b[2]
    assert set(x) >= {"view1", "view2", "is_target", "subject_id"} and "image" not in x
    assert torch.equal(x["view1"], y["view1"]) and torch.equal(x["view2"], y["view2"])
    assert not torch.equal(x["view1"], x["view2"])
    assert type(x["view1"]) is torch.Tensor and x["view1"].shape == (1, 7, 8, 9)
    a.set_epoch(1)
    assert not torch.equal(a[2]["view1"], x["view1"])
    b.set_epoch(1)
    _ = b[0]  # order of access does not matter
    assert torch.equal(a[2]["view1"], b[2]["view1"])


@pytest.mark.filterwarnings("ignore:groups are imbalanced")
@pytest.mark.parametrize(
    "n_controls, n_patients, batch_size", [(100, 100, 16), (37, 23, 8), (5, 4, 4), (11, 50, 7), (9, 9, 32), (2, 3, 4)]
)
def test_sampler_every_batch_has_both_groups(n_controls, n_patients, batch_size):
    is_target = np.array([False] * n_controls + [True] * n_patients)
    np.random.default_rng(1).shuffle(is_target)
    sampler = GroupStratifiedBatchSampler(is_target, batch_size, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        seen = sorted(i for b in batches for i in b)
        assert seen == list(range(len(is_target)))  # every subject exactly once per epoch
        for batch in batches:
            assert is_target[batch].sum() >= 2 and (~is_target[batch]).sum() >= 2


def test_sampler_splits_ranks_without_overlap():
    is_target = np.array([False] * 21 + [True] * 18)
    ranks = [GroupStratifiedBatchSampler(is_target, 6, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == len(ranks[0])
    flat = [i for rank in batches for b in rank for i in b]
    assert sorted(flat) == list(range(39))
    assert all(is_target[b].sum() >= 2 and (~is_target[b]).sum() >= 2 for rank in batches for b in rank)


def test_sampler_warns_when_imbalance_inflates_batches():
    with pytest.warns(UserWarning, match="batches hold ~42 subjects instead of 16"):
        GroupStratifiedBatchSampler([False] * 200 + [True] * 10, 16)


def test_sampler_rejects_impossible_settings():
    with pytest.raises(SepclrError, match="batch_size"):
        GroupStratifiedBatchSampler([0, 0, 1, 1], 3)
    with pytest.raises(SepclrError, match="too few"):
        GroupStratifiedBatchSampler([0, 0, 0, 1, 1, 1], 4, num_replicas=2)


@pytest.mark.parametrize("size", [(5, 6, 7), (9, 6, 11)])  # a crop, and a crop on one axis with pads on two
def test_a_spatial_size_crop_keeps_voxels_where_they_were(tmp_path, size):
    from monai.transforms import Compose, ResizeWithPadOrCrop

    from conftest import make_image
    from sepclr_med.data.preprocess import PreprocessConfig, preprocessing

    path = make_image(tmp_path / "a.nii.gz", rng=np.random.default_rng(4))  # 7 x 8 x 9 at 4 mm
    full = PreprocessConfig(intensity="none", mask="nonzero").resolve([str(path)])
    cropped = PreprocessConfig(intensity="none", mask="nonzero", spatial_size=size).resolve([str(path)])
    assert cropped.grid_shape == size and cropped.output_shape == size
    whole = Compose(preprocessing(full))({"image": str(path)})["image"]
    expected = ResizeWithPadOrCrop(size)(whole)  # the crop of the full grid, as MONAI makes it
    got = Compose(preprocessing(cropped))({"image": str(path)})["image"]
    np.testing.assert_allclose(got.numpy(), np.asarray(expected), atol=1e-5)
    # the crop's affine puts each voxel where it was on the full grid
    full_affine, crop_affine = np.asarray(full.grid_affine), np.asarray(cropped.grid_affine)
    inside = np.argwhere(got[0].numpy() != 0)[0]
    world = crop_affine @ np.r_[inside, 1]
    source = np.round(np.linalg.inv(full_affine) @ world).astype(int)[:3]
    assert got[0][tuple(inside)] == pytest.approx(float(whole[0][tuple(source)]))
    stored = PreprocessConfig.from_dict({**full.to_dict(), "spatial_size": list(size)})  # a run of before
    assert stored.grid_shape == size and np.allclose(stored.grid_affine, crop_affine)
