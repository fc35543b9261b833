"""The template-space check: registered scans pass; rotated, shifted, skull-on and native scans fail."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from sepclr_med.io import template_space as ts
from sepclr_med.io.template_space import alignment_errors, measure_alignment


@pytest.fixture(scope="module")
def subjects(tmp_path_factory) -> list[nib.Nifti1Image]:
    """Eight simulated GM maps (4 controls + 4 patients, 6 mm), held in memory."""
    from sepclr_med.simulate import load_recipe, simulate_cohort

    recipe = load_recipe().replace(n_controls=4, n_patients=4, resolution_mm=6.0, seed=5)
    sim = simulate_cohort(recipe, tmp_path_factory.mktemp("template_space"))
    paths = pd.read_csv(sim.cohort_csv)["image"]
    images = [nib.load(sim.cohort_csv.parent / p) for p in paths]
    return [nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine) for img in images]


def moved(img, *, angle_deg: float = 0.0, axis: int = 0, shift_mm=(0.0, 0.0, 0.0)) -> nib.Nifti1Image:
    """The data rotated about the brain's centre and shifted in world space; the affine stays an
    axis-aligned MNI grid (the input's, padded by 30 mm)."""
    from nilearn.image import resample_img

    data = np.asarray(img.dataobj, dtype=np.float32)
    centre = img.affine[:3, :3] @ ndimage.center_of_mass(data) + img.affine[:3, 3]
    motion = np.eye(4)
    motion[:3, :3] = Rotation.from_euler("xyz"[axis], angle_deg, degrees=True).as_matrix()
    motion[:3, 3] = centre - motion[:3, :3] @ centre + np.asarray(shift_mm)
    voxel = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    pad = np.ceil(30 / voxel).astype(int)
    target = img.affine.copy()
    target[:3, 3] = img.affine[:3, :3] @ -pad + img.affine[:3, 3]
    return resample_img(
        nib.Nifti1Image(data, motion @ img.affine),
        target_affine=target,
        target_shape=tuple(np.asarray(data.shape) + 2 * pad),
        interpolation="linear",
        force_resample=True,
        copy_header=True,
    )


def with_skull(img) -> nib.Nifti1Image:
    """A synthetic head: a bright shell 5-15 mm outside the brain, on a grid padded by 20 mm."""
    voxel = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    pad = np.ceil(20 / voxel).astype(int)
    data = np.pad(np.asarray(img.dataobj, dtype=np.float32), [(p, p) for p in pad])
    distance = ndimage.distance_transform_edt(data < 0.05 * data.max(), sampling=voxel)
    shell = (distance >= 5) & (distance <= 15)
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ -pad + img.affine[:3, 3]
    return nib.Nifti1Image(data + 0.6 * np.percentile(data[data > 0], 99) * shell, affine)


def scanner(img) -> nib.Nifti1Image:
    """The same voxels with a scanner's affine: voxel sizes on the diagonal, origin at a corner."""
    voxel = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    return nib.Nifti1Image(np.asarray(img.dataobj), np.diag([*voxel, 1.0]))


def reoriented(img, codes: str) -> nib.Nifti1Image:
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    return img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(codes)))


def test_simulated_subjects_in_template_space_pass(subjects):
    for img in subjects:
        m = measure_alignment(img)
        assert alignment_errors(m) == []
        assert m["template_r"] > 0.6 and m["gm_template"] == 1.0
        assert m["rotation_deg"] < 3.0 and m["shift_mm"] < 3.5
        assert m["outside_fraction"] < 0.08 and m["centroid_offset_mm"] < 8.0


def test_the_mni_template_itself_is_aligned():
    from nilearn.datasets import load_mni152_template

    m = measure_alignment(load_mni152_template(resolution=2))
    assert m["template_r"] > 0.99 and m["gm_template"] == 0.0
    assert m["rotation_deg"] < 0.2 and m["shift_mm"] < 0.2
    assert m["outside_fraction"] < 0.01 and m["centroid_offset_mm"] < 0.5


@pytest.mark.parametrize("axis", [0, 2])
def test_rotated_10_degrees_fails_naming_the_rotation(subjects, axis):
    m = measure_alignment(moved(subjects[0], angle_deg=10.0, axis=axis))
    assert 8.0 < m["rotation_deg"] < 12.5
    errors = alignment_errors(m)
    assert any(
        e.startswith(f"rotated {m['rotation_deg']:.1f}° away from MNI152 (> {ts.MAX_ROTATION_DEG:.1f}°)")
        for e in errors
    ), errors


@pytest.mark.parametrize("shift", [(12.0, 0.0, 0.0), (0.0, 0.0, -12.0)])
def test_shifted_12_mm_fails_naming_the_shift(subjects, shift):
    m = measure_alignment(moved(subjects[1], shift_mm=shift))
    assert 9.0 < m["shift_mm"] < 15.0 and m["rotation_deg"] < 3.0
    errors = alignment_errors(m)
    assert any(
        e.startswith(f"brain shifted {m['shift_mm']:.1f} mm") and f"> {ts.MAX_SHIFT_MM:.1f} mm" in e for e in errors
    ), errors


def test_skull_shell_fails_on_the_outside_fraction(subjects):
    img = subjects[2]
    head = with_skull(img)
    m = measure_alignment(head)
    assert m["outside_fraction"] > 0.2 > 0.08 > measure_alignment(img)["outside_fraction"]
    errors = alignment_errors(m)
    assert any(
        e.startswith(f"{m['outside_fraction']:.0%} of the image intensity lies outside")
        and "skull" in e
        and f"(> {ts.MAX_OUTSIDE_FRACTION:.0%})" in e
        for e in errors
    ), errors


def test_native_scanner_affine_fails(subjects):
    m = measure_alignment(scanner(subjects[3]))
    assert m["outside_fraction"] > 0.9 and m["centroid_offset_mm"] > 100
    assert np.isnan(m["template_r"]) or m["template_r"] < ts.MIN_TEMPLATE_R
    errors = alignment_errors(m)
    assert any("outside the MNI152 brain mask" in e for e in errors)
    assert any(e.startswith(f"intensity centre {m['centroid_offset_mm']:.1f} mm") for e in errors)


def test_the_callers_image_is_not_mutated(subjects, tmp_path):
    img = subjects[4]
    data, affine, header = np.asarray(img.dataobj).copy(), img.affine.copy(), img.header.copy()
    measure_alignment(img)
    assert np.array_equal(np.asarray(img.dataobj), data) and np.array_equal(img.affine, affine)
    assert img.header == header
    path = tmp_path / "scan.nii.gz"
    nib.save(img, path)
    loaded = nib.load(path)
    measure_alignment(loaded)
    assert not loaded.in_memory  # its data cache is not filled either


@pytest.mark.parametrize("codes", ["LPS", "PIR"])
def test_reoriented_copy_gives_the_same_measures(subjects, codes):
    img = subjects[5]
    flipped = reoriented(img, codes)
    assert not np.allclose(flipped.affine, img.affine)
    a, b = measure_alignment(img), measure_alignment(flipped)
    assert alignment_errors(b) == []
    for key, tolerance in [
        ("template_r", 0.01),
        ("rotation_deg", 0.3),
        ("shift_mm", 0.3),
        ("outside_fraction", 0.005),
        ("centroid_offset_mm", 0.2),
    ]:
        assert abs(a[key] - b[key]) <= tolerance, (key, a[key], b[key])


def test_reoriented_t1_at_1_5_mm_passes():
    from nilearn.datasets import load_mni152_template
    from nilearn.image import resample_img

    t1 = load_mni152_template(resolution=2)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = t1.affine[:3, 3]
    fine = resample_img(
        t1,
        target_affine=affine,
        target_shape=(130, 155, 125),
        interpolation="linear",
        force_resample=True,
        copy_header=True,
    )
    scaled = nib.Nifti1Image(np.round(np.asarray(fine.dataobj) * 1000).astype(np.int16), fine.affine)
    m = measure_alignment(reoriented(scaled, "LPS"))
    assert alignment_errors(m) == [] and m["template_r"] > 0.97 and m["rotation_deg"] < 0.5


def test_a_background_offset_or_noise_floor_is_not_tissue(rng):
    from nilearn.datasets import load_mni152_template

    t1 = load_mni152_template(resolution=2)
    data = np.asarray(t1.dataobj, dtype=np.float32)
    noisy = data + 0.05 + np.abs(rng.normal(0.0, 0.01, data.shape)).astype(np.float32)
    m = measure_alignment(nib.Nifti1Image(noisy, t1.affine))
    assert m["outside_fraction"] < 0.01 and alignment_errors(m) == []


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_image_is_flagged(value):
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = (-120.0, -150.0, -100.0)  # the field of view holds the whole dilated brain mask
    m = measure_alignment(nib.Nifti1Image(np.full((60, 70, 60), value, np.float32), affine))
    assert np.isnan(m["template_r"]) and np.isnan(m["rotation_deg"]) and np.isnan(m["shift_mm"])
    errors = alignment_errors(m)
    assert errors[0].startswith("image is constant or empty inside the MNI152 brain mask")
    assert m["outside_fraction"] > 0.8
    if value == 0.0:
        assert m["outside_fraction"] == 1.0 and np.isnan(m["centroid_offset_mm"])


def test_constant_box_smaller_than_the_brain_is_flagged():
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = (-80.0, -120.0, -72.0)  # a box with edges inside the dilated brain mask
    m = measure_alignment(nib.Nifti1Image(np.full((40, 48, 40), 7, np.int16), affine))
    assert m["template_r"] < ts.MIN_TEMPLATE_R and m["outside_fraction"] > ts.MAX_OUTSIDE_FRACTION
    assert alignment_errors(m)[0].startswith(f"correlation with the MNI152 template {m['template_r']:.2f}")


def test_non_3d_image_is_refused():
    with pytest.raises(ValueError, match="3D"):
        measure_alignment(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)))


def test_messages_name_each_figure_and_its_threshold():
    ok = {
        "template_r": 0.85,
        "gm_template": 1.0,
        "rotation_deg": 1.0,
        "shift_mm": 1.0,
        "outside_fraction": 0.01,
        "centroid_offset_mm": 2.0,
    }
    assert alignment_errors(ok) == []
    bad = dict(ok, template_r=0.31, outside_fraction=0.42, centroid_offset_mm=31.0)
    errors = alignment_errors(bad)
    assert errors[0].startswith(f"correlation with the MNI152 grey-matter template 0.31 < {ts.MIN_TEMPLATE_R:.2f}")
    assert errors[1].startswith(
        f"42% of the image intensity lies outside the MNI152 brain mask (> {ts.MAX_OUTSIDE_FRACTION:.0%})"
    )
    assert errors[2].startswith(
        f"intensity centre 31.0 mm from the MNI152 brain centre (> {ts.MAX_CENTROID_OFFSET_MM:.0f} mm)"
    )
