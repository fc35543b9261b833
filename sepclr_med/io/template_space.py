"""Is this scan in MNI152 template space? Cheap measures of alignment and calibrated thresholds.

The model expects images already registered to MNI152 (brain-extracted T1w or VBM grey-matter
maps). A native-space head, a brain shifted or rotated in world space, or a skull left on pass
the header checks of :mod:`sepclr_med.io.image_checks`; the measures here catch them. Each image is
resampled through its own affine (world coordinates) onto a coarse MNI grid and compared with
nilearn's MNI152 templates (shipped offline, prepared once per process):

``template_r``
    Pearson correlation, inside the dilated MNI152 brain mask, with the better of the T1 and
    grey-matter templates (both smoothed). Low: not a brain where MNI152 has one.
``rotation_deg``, ``shift_mm``
    The rigid transform (rotation about the template brain's centre, then translation) that
    best maps the template onto the image, fitted by a few Gauss-Newton steps on smoothed
    4 mm volumes. A registered scan gives up to about 2° and 2.5 mm; a rotated or shifted one
    gives its rotation and shift. This is what separates them: the correlation alone varies more
    between registered subjects than an 8° rotation changes it.
``outside_fraction``
    Share of the image's positive intensity mass, summed over its own voxels, that lies
    outside the dilated brain mask: skull, scalp, neck, or a brain outside MNI space.
``centroid_offset_mm``
    Distance between the image's intensity centroid and the matched template's (a safety net
    for gross offsets where the rigid fit has nothing to work on).

The thresholds are module constants chosen by ``benchmarks/template_space_calibration.py``;
``docs/template_space.md`` has its table, the margins and the limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

#: Voxel size (mm) of the grid on which images are compared with the templates.
COARSE_MM = 4.0
#: The MNI152 brain mask is dilated by this much (mm) to tolerate individual brain size.
DILATION_MM = 8.0
#: Smoothing (FWHM, mm) of the two Gauss-Newton stages of the rigid fit, coarse then fine.
FIT_FWHM_MM = (16.0, 6.0)

#: Lowest correlation with the best MNI152 template of an image in template space.
MIN_TEMPLATE_R = 0.40
#: Largest residual rotation (degrees) of an image in template space.
MAX_ROTATION_DEG = 4.0
#: Largest residual shift (mm) of the brain centre of an image in template space.
MAX_SHIFT_MM = 5.0
#: Highest share of the image's positive intensity outside the dilated MNI152 brain mask.
MAX_OUTSIDE_FRACTION = 0.15
#: Largest distance (mm) between the image's intensity centroid and the template's.
MAX_CENTROID_OFFSET_MM = 20.0

_TEMPLATE_MM = 1.0  # nilearn's 1 mm templates are block-averaged to COARSE_MM
_FIT_STEP = 2  # the rigid fit uses every 2nd coarse voxel (8 mm) of the dilated mask
_FIT_ITERATIONS = (10, 30)
_CLIP_PERCENTILE = 99.9  # intensities above this percentile of the positive voxels are clipped
_BACKGROUND_FRACTION = 0.1  # intensities below this fraction of their 99th percentile are background


@dataclass(frozen=True)
class _Reference:
    """The templates on the coarse grid, built once per process by :func:`_reference`."""

    coarse_affine: np.ndarray
    coarse_shape: tuple[int, int, int]
    mask: np.ndarray  # dilated brain mask on the coarse grid (bool)
    centre: np.ndarray  # brain-mask centroid (world mm): the centre of rotation
    points: np.ndarray  # 3 x N world coordinates of the fit points (8 mm, inside ``mask``)
    fit_values: dict[str, tuple[np.ndarray, ...]]  # template -> its values at ``points``, per stage
    centroids: dict[str, np.ndarray]  # template -> intensity centroid (world mm)


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """Mean over non-overlapping ``factor``-cubes (the shape must be divisible by ``factor``)."""
    x, y, z = (s // factor for s in volume.shape)
    return volume.reshape(x, factor, y, factor, z, factor).mean(axis=(1, 3, 5))


def _sigma_vox(fwhm_mm: float) -> float:
    return fwhm_mm / COARSE_MM / np.sqrt(8 * np.log(2))


@lru_cache(maxsize=1)
def _reference() -> _Reference:
    """nilearn's 1 mm MNI152 templates block-averaged to ``COARSE_MM``, and the dilated mask."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_template

    factor = int(round(COARSE_MM / _TEMPLATE_MM))
    mask_img = load_mni152_brain_mask(resolution=1)
    fine_affine = np.asarray(mask_img.affine, dtype=float)
    crop = tuple(slice(0, int(s) // factor * factor) for s in mask_img.shape[:3])
    coarse_affine = fine_affine.copy()
    coarse_affine[:3, :3] *= factor
    coarse_affine[:3, 3] += fine_affine[:3, :3] @ np.full(3, (factor - 1) / 2)  # centre of a block
    brain = _block_mean(np.asarray(mask_img.dataobj, dtype=np.float32)[crop], factor) > 0.5
    radius = DILATION_MM / COARSE_MM
    r = int(np.ceil(radius))
    ball = np.sum(np.mgrid[-r : r + 1, -r : r + 1, -r : r + 1] ** 2, axis=0) <= radius**2
    mask = ndimage.binary_dilation(brain, structure=ball)
    centre = _centroid(brain.astype(float), coarse_affine)
    grid = np.zeros_like(mask)
    grid[::_FIT_STEP, ::_FIT_STEP, ::_FIT_STEP] = True
    index = np.argwhere(mask & grid).T
    points = coarse_affine[:3, :3] @ index + coarse_affine[:3, 3:4]
    fit_values, centroids = {}, {}
    for name, loader in (("T1", load_mni152_template), ("GM", load_mni152_gm_template)):
        img = loader(resolution=1)
        if not np.allclose(img.affine, fine_affine):
            raise RuntimeError(f"nilearn's MNI152 {name} template and brain mask are on different grids")
        volume = np.clip(_block_mean(np.asarray(img.dataobj, dtype=np.float32)[crop], factor), 0, None)
        volume = volume.astype(np.float64)
        fit_values[name] = tuple(ndimage.gaussian_filter(volume, _sigma_vox(f))[tuple(index)] for f in FIT_FWHM_MM)
        centroids[name] = _centroid(volume, coarse_affine)
    return _Reference(coarse_affine, mask.shape, mask, centre, points, fit_values, centroids)


def _centroid(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Intensity-weighted centroid (world mm) of a non-negative volume; NaN when it sums to 0."""
    return _mass_and_centroid(volume, affine)[1]


def _positive_volume(img) -> tuple[np.ndarray, np.ndarray]:
    """The image's voxels as a new float32 array, robustly cleaned, and its affine.

    Non-finite and negative values become 0; so do values below ``_BACKGROUND_FRACTION`` of the
    99th percentile of the positive voxels (a background offset or noise floor is not tissue);
    values above the ``_CLIP_PERCENTILE`` percentile are clipped (hot voxels). The caller's image
    is not touched: voxels are read through ``dataobj``, so its data cache is not filled either.
    """
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"a 3D image is needed, not shape {data.shape}")
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("image affine is singular or not finite")
    data = np.array(data, dtype=np.float32)  # always a copy
    if not np.isfinite(data).all():
        data[~np.isfinite(data)] = 0.0
    sample = data[::3, ::3, ::3]
    sample = sample[sample > 0]
    if sample.size:
        p99, top = np.percentile(sample, [99.0, _CLIP_PERCENTILE])
        data[data < _BACKGROUND_FRACTION * p99] = 0.0
        np.clip(data, 0.0, top, out=data)
    else:
        np.clip(data, 0.0, None, out=data)
    return data, affine


def _mass_and_centroid(data: np.ndarray, affine: np.ndarray) -> tuple[float, np.ndarray]:
    """Total intensity times voxel volume (mm^3) and intensity centroid (world mm; NaN if 0)."""
    plane = data.sum(axis=2, dtype=np.float64)
    total = float(plane.sum())
    if not total > 0:
        return 0.0, np.full(3, np.nan)
    profiles = (plane.sum(axis=1), plane.sum(axis=0), data.sum(axis=(0, 1), dtype=np.float64))
    index = np.array([p @ np.arange(p.size) for p in profiles]) / total
    return total * abs(float(np.linalg.det(affine[:3, :3]))), affine[:3, :3] @ index + affine[:3, 3]


def _reduce(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block-average voxels smaller than ``COARSE_MM`` (integer factor per axis) against aliasing."""
    voxel = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    factor = np.maximum(1, np.floor(COARSE_MM / voxel + 1e-6)).astype(int)
    if (factor == 1).all():
        return data, affine
    n = np.asarray(data.shape) // factor
    if (n == 0).any():
        return data, affine
    blocks = data[: n[0] * factor[0], : n[1] * factor[1], : n[2] * factor[2]]
    reduced = blocks.reshape(n[0], factor[0], n[1], factor[1], n[2], factor[2]).mean(axis=(1, 3, 5))
    scale = np.diag([*factor, 1.0])
    scale[:3, 3] = (factor - 1) / 2  # the new voxel's centre, in old voxel indices
    return reduced, affine @ scale


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when ``a`` is constant (to 1e-9 of its magnitude) or ``b`` is."""
    magnitude = float(np.abs(a).max(initial=0.0))
    a, b = a - a.mean(), b - b.mean()
    na, nb = float(a @ a), float(b @ b)
    if not (na > a.size * (1e-9 * magnitude) ** 2 and nb > 0):
        return float("nan")
    return float(a @ b) / np.sqrt(na * nb)


def _rigid_fit(coarse: np.ndarray, ref: _Reference) -> tuple[float, str, np.ndarray, np.ndarray, float]:
    """Fit the rigid transform mapping the template onto ``coarse`` (Gauss-Newton, two stages).

    Returns the correlation at identity (last stage's smoothing), the matched template's name
    (chosen at the first stage), the rotation matrix, the translation (mm) and the correlation
    after the fit. With nothing to fit (constant image): NaN, ``""``, identity, NaN, NaN.
    """
    inverse = np.linalg.inv(ref.coarse_affine)
    offsets = ref.points - ref.centre[:, None]
    rotation, shift = np.eye(3), np.zeros(3)
    best, r_before = "", float("nan")
    for stage, fwhm in enumerate(FIT_FWHM_MM):
        smooth = ndimage.gaussian_filter(coarse, _sigma_vox(fwhm))
        volumes = [smooth] + [g / COARSE_MM for g in np.gradient(smooth)]  # world axes: diagonal affine

        def sample(
            rotation: np.ndarray, shift: np.ndarray, count: int, volumes: list = volumes
        ) -> tuple[list[np.ndarray], np.ndarray]:
            moved = rotation @ offsets
            index = inverse[:3, :3] @ (moved + (ref.centre + shift)[:, None]) + inverse[:3, 3:4]
            return [
                ndimage.map_coordinates(v, index, order=1, mode="constant", cval=0.0) for v in volumes[:count]
            ], moved

        if stage == 0:
            (values,), _ = sample(rotation, shift, 1)
            scores = {name: _pearson(values, v[stage]) for name, v in ref.fit_values.items()}
            if all(np.isnan(s) for s in scores.values()):
                return float("nan"), "", rotation, np.full(3, np.nan), float("nan")
            best = max(scores, key=lambda k: -np.inf if np.isnan(scores[k]) else scores[k])
        template = ref.fit_values[best][stage]
        if stage == len(FIT_FWHM_MM) - 1:
            (values,), _ = sample(np.eye(3), np.zeros(3), 1)
            r_before = _pearson(values, template)
        target = (template - template.mean()) / template.std()
        for _ in range(_FIT_ITERATIONS[stage]):
            (values, *gradient), moved = sample(rotation, shift, 4)
            sd = float(values.std())
            if not sd > 1e-9 * float(np.abs(values).max(initial=0.0)):
                break  # the brain left the field of view: nothing to fit
            grad = np.stack(gradient) / sd
            # d(image)/d(small rotation w) = gradient . (w x moved) = w . (moved x gradient)
            jacobian = np.column_stack([np.cross(moved.T, grad.T), grad.T, np.ones(values.size)])
            residual = (values - values.mean()) / sd - target
            normal = jacobian.T @ jacobian
            normal += 1e-3 * np.diag(np.diag(normal))  # Levenberg-Marquardt damping
            try:
                step = -np.linalg.solve(normal, jacobian.T @ residual)
            except np.linalg.LinAlgError:
                break
            rotation = Rotation.from_rotvec(step[:3]).as_matrix() @ rotation
            shift = shift + step[3:6]
            if np.degrees(np.linalg.norm(step[:3])) < 0.05 and np.linalg.norm(step[3:6]) < 0.05:
                break
    (values,), _ = sample(rotation, shift, 1)
    r_after = _pearson(values, template)
    return float(r_before), best, rotation, shift, float(r_after)


def measure_alignment(img) -> dict[str, float]:
    """Measure how well one image sits in MNI152 template space.

    Voxels smaller than ``COARSE_MM`` are block-averaged (integer factor per axis, against
    aliasing), then the image is resampled through its affine onto a ``COARSE_MM`` grid of
    nilearn's MNI152 field of view (trilinear) and compared with the templates inside the
    MNI152 brain mask dilated by ``DILATION_MM``. Any dtype, intensity scale, orientation,
    voxel size or field of view (cropped to the brain or not) is accepted. Intensities are used
    as they are except that negative and non-finite values, and values below 10 % of the 99th
    percentile of the positive voxels (background offset, noise floor), count as 0 and the
    brightest 0.1 % are clipped. About 40 ms for a 4 mm scan, 0.15 s for a 1 mm one (in memory).

    Parameters
    ----------
    img : nibabel.spatialimages.SpatialImage
        A 3D image (or 4D with one volume). It is not modified, and its data cache is not filled.

    Returns
    -------
    dict of str to float
        ``template_r``: correlation (smoothed, FWHM ``FIT_FWHM_MM[-1]``) inside the dilated mask
        with the better-matching template, NaN when the image is constant there;
        ``gm_template``: 1.0 when the grey-matter template matched better, 0.0 for T1;
        ``rotation_deg`` and ``shift_mm``: the residual rigid transform (rotation about the
        template brain's centre, translation of that centre), NaN when it cannot be fitted;
        ``registered_r``: the correlation after that transform;
        ``outside_fraction``: share of the image's positive intensity mass outside the dilated
        mask (1.0 when the image has no positive voxel);
        ``centroid_offset_mm``: distance from the image's intensity centroid to the matched
        template's (NaN when the image has no positive voxel).

    Raises
    ------
    ValueError
        If the image is not 3D or its affine is singular.

    Examples
    --------
    >>> from nilearn.datasets import load_mni152_template
    >>> m = measure_alignment(load_mni152_template(resolution=2))
    >>> bool(m["template_r"] > 0.99 and m["rotation_deg"] < 0.5 and m["outside_fraction"] < 0.01)
    True
    >>> alignment_errors(m)
    []
    """
    ref = _reference()
    data, affine = _positive_volume(img)
    total, centroid = _mass_and_centroid(data, affine)
    data, affine = _reduce(data, affine)
    to_voxel = np.linalg.inv(affine) @ ref.coarse_affine
    coarse = ndimage.affine_transform(
        data,
        to_voxel[:3, :3],
        to_voxel[:3, 3],
        output_shape=ref.coarse_shape,
        order=1,
        mode="constant",
        cval=0.0,
        prefilter=False,
    ).astype(np.float64)
    inside = float(coarse[ref.mask].sum()) * COARSE_MM**3
    outside = float(np.clip(1.0 - inside / total, 0.0, 1.0)) if total > 0 else 1.0
    r_before, best, rotation, shift, r_after = _rigid_fit(coarse, ref)
    fitted = not np.isnan(r_before)
    return {
        "template_r": r_before,
        "gm_template": float(best == "GM"),
        "rotation_deg": float(np.degrees(np.linalg.norm(Rotation.from_matrix(rotation).as_rotvec())))
        if fitted
        else float("nan"),
        "shift_mm": float(np.linalg.norm(shift)) if fitted else float("nan"),
        "registered_r": r_after if fitted else float("nan"),
        "outside_fraction": outside,
        "centroid_offset_mm": float(np.linalg.norm(centroid - ref.centroids[best or "T1"])),
    }


def alignment_errors(measures: dict[str, float]) -> list[str]:
    """Human messages for each measure of :func:`measure_alignment` beyond its threshold.

    Parameters
    ----------
    measures : dict of str to float
        As returned by :func:`measure_alignment`.

    Returns
    -------
    list of str
        One message per failed check, naming the figure, its threshold and the likely cause;
        empty when the image looks registered to MNI152. NaN figures (constant or empty image)
        fail. The messages give no remedy: the caller adds its own (how to register, how to go
        on anyway).

    Examples
    --------
    >>> errors = alignment_errors({"template_r": 0.9, "rotation_deg": 12.0, "shift_mm": 1.0,
    ...                            "outside_fraction": 0.0, "centroid_offset_mm": 2.0})
    >>> errors[0].split(":")[0]
    'rotated 12.0° away from MNI152 (> 4.0°)'
    """
    errors = []
    template = "grey-matter template" if measures.get("gm_template", 0.0) == 1.0 else "template"
    r = measures["template_r"]
    if np.isnan(r):
        errors.append(
            "image is constant or empty inside the MNI152 brain mask: no brain where "
            "template space has one (blank image, or far outside the MNI field of view?)"
        )
    elif r < MIN_TEMPLATE_R:
        errors.append(
            f"correlation with the MNI152 {template} {r:.2f} < {MIN_TEMPLATE_R:.2f}: not in "
            "template space (native head, shifted or rotated?)"
        )
    rotation, shift = measures["rotation_deg"], measures["shift_mm"]
    if not np.isnan(r):
        if np.isnan(rotation) or rotation > MAX_ROTATION_DEG:
            errors.append(
                f"rotated {rotation:.1f}° away from MNI152 (> {MAX_ROTATION_DEG:.1f}°): not registered to the template"
            )
        if np.isnan(shift) or shift > MAX_SHIFT_MM:
            errors.append(
                f"brain shifted {shift:.1f} mm from the MNI152 brain (> {MAX_SHIFT_MM:.1f} mm): "
                "not registered to the template"
            )
    outside = measures["outside_fraction"]
    if outside > MAX_OUTSIDE_FRACTION:
        errors.append(
            f"{outside:.0%} of the image intensity lies outside the MNI152 brain mask "
            f"(> {MAX_OUTSIDE_FRACTION:.0%}): skull or scalp left on (not brain-extracted), "
            "or brain outside template space"
        )
    offset = measures["centroid_offset_mm"]
    if np.isnan(offset) or offset > MAX_CENTROID_OFFSET_MM:
        what = "undefined (no positive voxel)" if np.isnan(offset) else f"{offset:.1f} mm"
        errors.append(
            f"intensity centre {what} from the MNI152 brain centre "
            f"(> {MAX_CENTROID_OFFSET_MM:.0f} mm): brain shifted, head or neck in the image, "
            "or not in template space"
        )
    return errors
