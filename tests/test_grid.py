"""`Grid`: the one shape-and-affine object from cohort to report (issue 14)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from sepclr_med.io.grid import Grid


def _lps_grid() -> Grid:
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])  # LPS, anisotropic
    affine[:3, 3] = [40.0, 50.0, -30.0]
    return Grid(affine, (7, 8, 9))


def _world(grid: Grid, ijk) -> np.ndarray:
    return grid.affine[:3, :3] @ np.asarray(ijk, float) + grid.affine[:3, 3]


def test_canonical_grid_has_the_same_corners_in_ras_order():
    grid = _lps_grid()
    ras = grid.canonical()
    assert "".join(nib.aff2axcodes(ras.affine)) == "RAS" and ras.shape == (7, 8, 9)
    far = np.asarray(grid.shape) - 1
    corners = {tuple(np.round(_world(grid, np.array(c) * far), 6)) for c in np.ndindex(2, 2, 2)}
    corners_ras = {tuple(np.round(_world(ras, np.array(c) * far), 6)) for c in np.ndindex(2, 2, 2)}
    assert corners == corners_ras


def test_resized_grid_keeps_the_centre_and_covers_the_field_of_view():
    grid = _lps_grid().canonical()
    new = grid.resized(1.5)
    assert new.voxel_size == pytest.approx((1.5, 1.5, 1.5))
    assert new.shape == (10, 11, 18)  # ceil(7*2/1.5), ceil(8*2/1.5), ceil(9*3/1.5)
    centre = _world(grid, (np.asarray(grid.shape) - 1) / 2)
    assert np.allclose(_world(new, (np.asarray(new.shape) - 1) / 2), centre)


def test_crop_moves_the_origin_to_the_first_kept_voxel():
    grid = _lps_grid().canonical()
    crop = grid.cropped((5, 8, 4))
    start = np.array([7 // 2 - 5 // 2, 0, 9 // 2 - 4 // 2])  # MONAI's centre convention
    assert crop.shape == (5, 8, 4) and np.allclose(_world(crop, (0, 0, 0)), _world(grid, start))
    padded = grid.cropped((9, 8, 9))
    assert np.allclose(_world(padded, (1, 0, 0)), _world(grid, (0, 0, 0)))


def test_grids_equal_to_a_thousandth_of_a_mm_hash_alike_and_never_share_the_callers_array():
    affine = np.eye(4)
    grid = Grid(affine, (7, 8, 9))
    affine[0, 3] = 5.0
    assert grid.affine[0, 3] == 0.0 and not grid.affine.flags.writeable
    noisy = Grid(np.eye(4) + 1e-5, (7, 8, 9))
    assert noisy == grid and len({grid, noisy}) == 1
    assert Grid(np.eye(4), (7, 8, 10)) != grid and Grid(np.diag([1, 1, 1.01, 1]), (7, 8, 9)) != grid


def test_image_on_a_grid_keeps_the_affine_and_refuses_other_shapes():
    grid = _lps_grid()
    img = grid.image(np.ones((7, 8, 9)))
    assert Grid.of(img) == grid and img.get_data_dtype() == np.float32
    with pytest.raises(ValueError, match="not on a grid"):
        grid.image(np.ones((9, 8, 7)))
    assert grid.describe() == "shape 7x8x9, voxels 2x2x3 mm"


def test_preprocessing_settings_give_their_grid_as_one_object(tmp_path):
    from sepclr_med.data.preprocess import PreprocessConfig
    from sepclr_med.errors import SepclrError

    with pytest.raises(SepclrError, match="not resolved"):
        _ = PreprocessConfig().grid
    path = tmp_path / "a.nii.gz"
    nib.save(_lps_grid().image(np.random.default_rng(0).random((7, 8, 9))), path)
    config = PreprocessConfig(voxel_size=4.0, intensity="none", mask="nonzero").resolve([str(path)])
    assert config.grid == _lps_grid().canonical().resized(4.0)
    assert config.grid.shape == config.output_shape
