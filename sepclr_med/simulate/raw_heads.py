"""Raw heads with a known truth: the shipped MNI152 template moved by a known transform and stored
as scanners store them (what ``sepclr-med preprocess`` is tested and measured on)."""

from __future__ import annotations

import os

import numpy as np


def motion_matrix(angles=(8.0, -5.0, 10.0), shift=(6.0, -9.0, 4.0), scales=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Template world -> scan world (RAS+ mm): per-axis scaling, then an x-y-z Euler rotation
    (degrees), then a shift (mm)."""
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(scales)
    m[:3, 3] = shift
    return m


def scanner_head(
    path: str | os.PathLike,
    motion: np.ndarray,
    *,
    resolution: float = 4.0,
    voxel_size=(3.0, 3.0, 4.5),
    skull: bool = False,
    bias: float = 0.25,
    noise: float = 0.02,
    rng: np.random.Generator | None = None,
) -> None:
    """Write the template moved by ``motion`` as a raw scan.

    LPS+ axes, anisotropic ``voxel_size`` voxels, a field of view 15% larger than the head, int16
    with a scale slope, a linear bias field of ``±bias`` along z and Gaussian noise in the head; with
    ``skull``, CSF (dark), skull (dark) and scalp (bright) shells of 1, 2 and 2 voxels of the
    ``resolution`` mm template grid around the brain.
    """
    import nibabel as nib
    from scipy import ndimage

    from sepclr_med.registration.template import Template

    t1, mask = Template(resolution).images()
    data, brain = np.asarray(t1.dataobj, dtype=np.float32), np.asarray(mask.dataobj) > 0
    pad = int(np.ceil(20 / resolution))
    data, brain = np.pad(data, pad), np.pad(brain, pad)
    affine = t1.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, pad)
    if skull:
        step = max(1, int(round(4 / resolution)))
        grow = [ndimage.binary_dilation(brain, iterations=k * step) for k in (1, 3, 5)]
        data[grow[0] & ~brain], data[grow[1] & ~grow[0]], data[grow[2] & ~grow[1]] = 0.15, 0.1, 1.3
    data = (data * (1 + bias * np.linspace(-1, 1, data.shape[2])[None, None, :])).astype(np.float32)
    if rng is not None and noise:
        data = data + rng.normal(0, noise, data.shape).astype(np.float32) * (data > 0)
    vox = np.asarray(voxel_size, dtype=float)
    shape = tuple(int(s) for s in np.ceil(np.array(data.shape) * resolution / vox * 1.15))
    scan_affine = np.diag([-vox[0], -vox[1], vox[2], 1.0])
    scan_affine[:3, 3] = -(scan_affine[:3, :3] @ ((np.array(shape) - 1) / 2))
    voxel_to_template = np.linalg.inv(affine) @ np.linalg.inv(motion) @ scan_affine
    values = ndimage.affine_transform(data, voxel_to_template, output_shape=shape, order=1)
    slope = float(values.max()) / 30000
    img = nib.Nifti1Image(np.round(values / slope).astype(np.int16), scan_affine)
    img.header.set_slope_inter(slope, 0.0)
    nib.save(img, str(path))
