"""The volume store: brain crop with its affine, float16 storage, batches in order, read-ahead."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from conftest import make_image
from sepclr_med.data import PreprocessConfig, VolumeStore, batches, preprocessing
from sepclr_med.data.preprocess import CROP_MARGIN
from sepclr_med.training import TrainConfig

SHAPE = (13, 14, 15)
BOX = (slice(4, 8), slice(3, 10), slice(5, 9))  # the mask's voxels


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(7)
    mask = np.zeros(SHAPE, np.float32)
    mask[BOX] = 1
    paths = [make_image(tmp_path / f"s{i}.nii.gz", rng.uniform(0.1, 1.0, SHAPE).astype(np.float32)) for i in range(5)]
    return [str(p) for p in paths], str(make_image(tmp_path / "mask.nii.gz", mask))


def test_brain_crop_is_the_masks_box_and_keeps_voxels_where_they_were(images):
    paths, mask = images
    full = PreprocessConfig(mask=mask, crop="none", dtype="float32").resolve(paths)
    crop = PreprocessConfig(mask=mask, dtype="float32").resolve(paths)
    assert full.grid_shape == SHAPE
    start = np.array([b.start for b in BOX]) - CROP_MARGIN
    assert crop.grid_shape == tuple(int(b.stop - b.start + 2 * CROP_MARGIN) for b in BOX) == (6, 9, 6)
    assert np.array_equal(
        crop.mask_array(),
        full.mask_array()[tuple(slice(s, s + n) for s, n in zip(start, crop.grid_shape, strict=True))],
    )
    # voxel 0 of the crop is voxel `start` of the full grid, in the world
    assert np.allclose(np.asarray(crop.grid_affine) @ [0, 0, 0, 1], np.asarray(full.grid_affine) @ [*start, 1])
    whole = Compose(preprocessing(full))({"image": paths[0]})["image"][0]
    part = Compose(preprocessing(crop))({"image": paths[0]})["image"][0]
    window = tuple(slice(s, s + n) for s, n in zip(start, crop.grid_shape, strict=True))
    np.testing.assert_allclose(part.numpy(), whole[window].numpy(), rtol=1e-5)  # resampling on either grid
    assert float(whole.sum()) == pytest.approx(float(part.sum()), rel=1e-6)  # nothing in the mask was cut


def test_runs_stored_before_the_crop_and_float16_read_as_they_were(tmp_path):
    (tmp_path / "config.toml").write_text("[preprocess]\nmask = 'nonzero'\n")
    stored = TrainConfig.load_run(tmp_path).preprocess
    assert (stored.crop, stored.dtype) == ("none", "float32")
    assert (PreprocessConfig().crop, PreprocessConfig().dtype) == ("brain", "float16")


def test_float16_store_is_half_the_bytes_and_within_its_rounding(images):
    paths, mask = images
    exact = PreprocessConfig(mask=mask, dtype="float32").resolve(paths)
    half = PreprocessConfig(mask=mask).resolve(paths)
    store = VolumeStore([{"image": p, "subject_id": f"s{i}"} for i, p in enumerate(paths)], half)
    assert store.volumes is not None and store.volumes.dtype == torch.float16
    assert store.nbytes == len(paths) * int(np.prod(half.grid_shape)) * 2
    reference = Compose(preprocessing(exact))({"image": paths[2]})["image"]
    got = store[2]["image"]
    assert got.dtype == torch.float32 and store[2]["subject_id"] == "s2" and store[2]["index"] == 2
    inside = reference != 0
    relative = ((got - reference).abs()[inside] / reference.abs()[inside]).max()
    assert 0 < float(relative) <= 2**-11  # float16's half-ulp, and rounding did happen


@pytest.mark.parametrize("cache", ["disk", "none"])
def test_every_store_gives_the_same_batches_in_the_samplers_order(images, tmp_path, cache):
    paths, mask = images
    config = PreprocessConfig(mask=mask).resolve(paths)
    records = [{"image": p} for p in paths]
    memory = VolumeStore(records, config)
    other = VolumeStore(records, config, cache=cache, cache_dir=tmp_path / "cache", num_workers=2)
    order = [[3, 0], [4], [1, 2]]
    cpu = torch.device("cpu")
    got = list(batches(other, order, cpu, read_ahead=2))
    assert [indices for indices, _ in got] == order
    for (_, volumes), expected in zip(got, order, strict=True):
        assert volumes.dtype == torch.float16 and volumes.shape == (len(expected), 1, *config.grid_shape)
        assert torch.equal(volumes, memory.batch(expected, cpu))
    assert memory.place(cpu) == "host"
