"""Image checks of a cohort: NIfTI, readable, 3D, a geometry a head can have, finite and
non-constant voxels, grids that agree.

Headers and voxels are read with nibabel only (no torch), one image at a time; the header is
checked before any voxel is read, so a header that claims an impossible size costs nothing.
"""

from __future__ import annotations

import os
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from sepclr_med.errors import Problem
from sepclr_med.io.grid import Grid

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VOXEL_SIZE_MM = (0.1, 10.0)  # voxel edges outside this range are no brain scan
MAX_FIELD_OF_VIEW_MM = 600.0  # per axis; a head is ~250 mm, a body coil's field of view ~500 mm
MAX_VOXELS = 2**28  # 1 GiB of float32: ~0.2 mm isotropic over a whole head


def check_image(path: str | Path) -> tuple[list[str], Grid | None]:
    """Check one image; return its error messages and its grid (None if unreadable).

    Each file version (path, modification time, size) is read once per process: a table whose
    rows share images costs one read per distinct image.
    """
    errors, grid = _check_image(*_file_version(path))
    return list(errors), grid


def _file_version(path: str | os.PathLike) -> tuple[str, int | None, int | None]:
    """``(path, mtime_ns, size)``: the key under which a file's checks are cached in a process
    (``None`` times and sizes when it cannot be stat'ed: reading it then says why)."""
    try:
        stat = os.stat(path)
    except OSError:
        return str(path), None, None
    return str(path), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=65536)
def _check_image(path: str, mtime_ns: int | None, size: int | None) -> tuple[tuple[str, ...], Grid | None]:
    errors, grid = _read_and_check(path)
    return tuple(errors), grid


def _read_and_check(path: str | Path) -> tuple[list[str], Grid | None]:
    from sepclr_med.io.nifti import load_image

    if not str(path).lower().endswith(NIFTI_SUFFIXES):  # nibabel also reads Analyze, MGH, MINC: not here
        return [
            "not a NIfTI file (.nii or .nii.gz); convert it first (e.g. dcm2niix for DICOM, mri_convert for .mgz)"
        ], None
    try:
        img = load_image(path)
    except Exception as exc:  # nibabel raises many kinds for corrupt files
        return [f"cannot read image, file is corrupt or not NIfTI ({type(exc).__name__}: {exc})"], None
    errors, grid = _header_errors(img)
    if errors:
        return errors, None
    try:
        data = np.asarray(img.dataobj)
    except Exception as exc:  # truncated gzip, short file
        return [f"cannot read voxels, file is corrupt ({type(exc).__name__}: {exc})"], None
    return _voxel_errors(data), grid


def _header_errors(img) -> tuple[list[str], Grid | None]:
    """Shape, affine and geometry, from the header alone."""
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        return [f"image is {len(img.shape)}D with shape {img.shape}; a 3D volume is needed"], None
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        return ["image affine is singular or not finite"], None
    grid = Grid.of(img)
    voxels = np.asarray(grid.voxel_size)
    fov = voxels * np.asarray(shape)
    lo, hi = VOXEL_SIZE_MM
    if voxels.min() < lo or voxels.max() > hi:
        return [
            f"voxel size {grid.describe()} is outside {lo:g}-{hi:g} mm: no brain scan has it (is the "
            "header's pixdim right?)"
        ], None
    if fov.max() > MAX_FIELD_OF_VIEW_MM:
        return [
            f"field of view {'x'.join(f'{v:.0f}' for v in fov)} mm exceeds {MAX_FIELD_OF_VIEW_MM:g} mm: no "
            "head is that large (is the header's pixdim right?)"
        ], None
    if int(np.prod(shape, dtype=np.int64)) > MAX_VOXELS:
        return [
            f"the header claims {'x'.join(map(str, shape))} voxels (over {MAX_VOXELS:,}); refused before reading"
        ], None
    return [], grid


def _voxel_errors(data: np.ndarray) -> list[str]:
    """Numeric, finite, not blank, not constant."""
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        return [f"voxel type {data.dtype} is not a real number"]
    bad = data.size - int(np.isfinite(data).sum())
    if bad:
        return [f"{bad} voxel(s) are NaN or Inf"]
    lo, hi = float(data.min()), float(data.max())
    if max(abs(lo), abs(hi)) > float(np.finfo(np.float32).max):
        return [
            f"voxel values up to {max(abs(lo), abs(hi)):.3g} exceed the float32 range the model computes in "
            "(check the header's scl_slope)"
        ]
    if lo == hi:
        return ["every voxel is 0: a blank image" if hi == 0 else f"every voxel is {hi:g}: a constant image"]
    return []


def check_images(cohort, progress=None) -> list[Problem]:
    """Check every existing image of ``cohort``; report grid mismatches as warnings.

    Parameters
    ----------
    cohort : Cohort
        A cohort whose ``table`` has ``image`` and ``row`` columns.

    progress : callable, optional
        ``progress(done, total, what)`` after each row.

    Returns
    -------
    list of Problem
        Errors for unreadable, non-3D or non-finite images; one warning per image whose grid
        differs from the most common grid (the pipeline resamples it).
    """
    file = str(cohort.source)
    problems: list[Problem] = []
    grids: dict[int, Grid] = {}
    total = len(cohort.table)
    for idx, (path, row) in enumerate(zip(cohort.table["image"], cohort.table["row"], strict=True)):
        if progress is not None:
            progress(idx + 1, total, "reading images")
        if not path or not Path(path).is_file():
            continue  # already reported as missing
        errors, grid = check_image(path)
        problems += [Problem(file, f"{msg} ({path})", int(row), "image") for msg in errors]
        if grid is not None:
            grids[idx] = grid
    if grids:
        reference, _ = Counter(grids.values()).most_common(1)[0]
        for idx, grid in grids.items():
            if grid != reference:
                row = int(cohort.table["row"].iloc[idx])
                problems.append(
                    Problem(
                        file,
                        f"grid ({grid.describe()}) differs from the cohort's reference grid "
                        f"({reference.describe()}); the pipeline will resample it",
                        row,
                        "image",
                        severity="warning",
                    )
                )
    return problems


ALIGNMENT_ADVICE = (
    "register it to MNI152 first (fMRIPrep, CAT12, Clinica t1-linear), or pass --allow-unaligned "
    "to go on (recorded in the run and shown on reports)"
)
ALLOWED_NOTE = "used anyway (--allow-unaligned)"


@lru_cache(maxsize=4096)
def _alignment_of(path: str, mtime_ns: int | None, size: int | None) -> tuple:
    import nibabel as nib

    from sepclr_med.io.template_space import measure_alignment

    return tuple(measure_alignment(nib.load(path)).items())


def alignment_measures(path: str | os.PathLike) -> dict[str, float]:
    """:func:`~sepclr_med.io.template_space.measure_alignment` of the image at ``path``, computed
    once per file version in a process (keyed by path, modification time and size)."""
    return dict(_alignment_of(*_file_version(path)))


def check_alignment(cohort, *, allow_unaligned: bool = False, progress=None) -> tuple[pd.DataFrame, list[Problem]]:
    """Is every image of ``cohort`` in MNI152 template space? (:mod:`sepclr_med.io.template_space`)

    Parameters
    ----------
    cohort : Cohort
        Images already checked readable (:func:`check_images`).
    allow_unaligned : bool
        Report failing scans as warnings instead of errors.
    progress : callable, optional
        ``progress(done, total, what)`` after each subject.

    Returns
    -------
    measures : pandas.DataFrame
        One row per subject: ``subject_id``, every measure, ``aligned`` (bool) and ``problem``.
    problems : list of Problem
        One per failing scan, naming the subject, its figures and what to do.
    """
    from sepclr_med.io.template_space import alignment_errors

    rows = []
    for k, (sid, path) in enumerate(zip(cohort.subject_ids, cohort.table["image"], strict=True)):
        if progress is not None:
            progress(k + 1, len(cohort.table), "template space")
        measures = alignment_measures(path)
        errors = alignment_errors(measures)
        rows.append({"subject_id": sid, **measures, "aligned": not errors, "problem": "; ".join(errors)})
    measures = pd.DataFrame(rows)
    return measures, alignment_problems(cohort, measures, allow_unaligned=allow_unaligned)


def alignment_problems(cohort, measures: pd.DataFrame, *, allow_unaligned: bool = False) -> list[Problem]:
    """One problem per scan that ``measures`` (:func:`check_alignment`) says is not in template
    space, naming the subject, its figures and what to do; warnings with ``allow_unaligned``."""
    file = str(cohort.source)
    failing = ~measures["aligned"].astype(bool).to_numpy()
    return [
        Problem(
            file,
            f"{sid} is not in MNI152 template space: {problem} ({path}); "
            + (ALLOWED_NOTE if allow_unaligned else ALIGNMENT_ADVICE),
            int(row),
            "image",
            severity="warning" if allow_unaligned else "error",
        )
        for sid, problem, path, row in zip(
            measures["subject_id"][failing],
            measures["problem"][failing],
            cohort.table["image"][failing],
            cohort.table["row"][failing],
            strict=True,
        )
    ]


def reference_grid(paths: list[str]) -> Grid:
    """The most common grid among the images at ``paths`` (each distinct file read once)."""
    import nibabel as nib

    grids = {p: Grid.of(nib.load(p)) for p in set(paths)}
    return Counter(grids[p] for p in paths).most_common(1)[0][0]
