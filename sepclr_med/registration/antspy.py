"""The door to ANTsPy: importing it with an actionable message, and ITK's LPS+ conventions
translated to the RAS+ world of NIfTI and nilearn."""

from __future__ import annotations

import os

import numpy as np

from sepclr_med.errors import SepclrError


def ants_module():
    """``import ants``, or an error that says how to install it."""
    try:
        import ants
    except ImportError:
        raise SepclrError(
            "preprocess needs ANTsPy: pip install 'sepclr-med[preprocess]' (the antspyx wheel ships its binaries)"
        ) from None
    return ants


def ants_affine_to_ras(path: str | os.PathLike) -> np.ndarray:
    """ANTs' affine transform file as a 4 x 4 RAS+ matrix (fixed world mm to moving world mm).

    ITK stores ``y = A (x - c) + c + t`` in LPS+ coordinates (``A`` row-major, then ``t``;
    ``c`` in the fixed parameters).
    """
    tx = ants_module().read_transform(str(path))
    p, c = np.asarray(tx.parameters, dtype=float), np.asarray(tx.fixed_parameters, dtype=float)
    a, t = p[:9].reshape(3, 3), p[9:12]
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = a, t + c - a @ c
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ lps @ flip


def lps_direction(grid) -> np.ndarray:
    """ITK direction cosines (LPS+) of a RAS+ :class:`~sepclr_med.io.grid.Grid`."""
    flip = np.diag([-1.0, -1.0, 1.0])
    return flip @ (grid.affine[:3, :3] / np.asarray(grid.voxel_size))


def lps_origin(grid) -> tuple[float, ...]:
    """ITK origin (LPS+ mm) of a RAS+ grid's first voxel."""
    return tuple(float(v) for v in np.diag([-1.0, -1.0, 1.0]) @ grid.affine[:3, 3])


def to_ants(data: np.ndarray, grid):
    """An ANTs image of ``data`` on a RAS+ :class:`~sepclr_med.io.grid.Grid` (float32, no file)."""
    return ants_module().from_numpy(
        np.asarray(data, dtype=np.float32),
        origin=lps_origin(grid),
        spacing=grid.voxel_size,
        direction=lps_direction(grid),
    )
