"""Calibrate the template-space check (`sepclr_med.io.template_space`) on aligned and misaligned scans.

    python benchmarks/template_space_calibration.py [--quick] [--csv measures.csv]

Aligned population (every scan must pass):

* simulated cohorts of the project's simulator (grey-matter maps on a cropped MNI grid): recipe
  ``schizophrenia`` at 2, 3, 4 and 6 mm with two seeds, and each recipe of ``cohorts/family``
  at 4 mm;
* registered T1w-like brains: nilearn's brain-extracted MNI152 T1 template with a smooth random
  warp (2-3 mm), a head-size scale (±3 %), a bias field, noise, voxel sizes 1, 1.5 and 2 mm,
  intensity scales and dtypes (float32, int16, uint8, float64), cropped fields of view and stored
  orientations RAS, LPS, LAS and PIR (array reoriented, affine matching: must pass).

Misaligned population, made from every aligned scan (every scan must fail): the data rotated by
8°, 10° and 20° about the x, y and z axes (about the brain's centre, random sign) or shifted by
10 and 15 mm along each axis, resampled onto a grid with the input's own axes (the affine still
says MNI); a synthetic head with skull (a bright shell of scalp and skull 4-15 mm outside the
brain, a dark gap, and low-intensity neck tissue below: synthetic because no real head with
skull can be shipped); the same head, and the brain alone, with a scanner's affine (voxel sizes
on the diagonal, origin at the corner of the volume: positive coordinates only); and the brain
with a scanner affine centred on the volume.

Below the requirement, for information only (not used for margins or thresholds), from every
4th aligned scan: rotations of 3° and 5°, shifts of 5 mm.

Prints the processor, the table (population x measure: min / median / max), for each
threshold the worst aligned and the best targeted misaligned value with their margins, the
pass/fail counts and the median time of one ``measure_alignment`` call (image in memory; and
for a 1 mm ``.nii.gz`` read from disk). About 4 minutes on 2 cores; ``--quick`` runs a subset.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial.transform import Rotation

from sepclr_med.io import template_space as ts

ROTATIONS_DEG = (8.0, 10.0, 20.0)
SHIFTS_MM = (10.0, 15.0)
INFO_ROTATIONS_DEG = (3.0, 5.0)
INFO_SHIFTS_MM = (5.0,)
ORIENTATIONS = ("RAS", "LPS", "LAS", "PIR")
INFO_EVERY = 4  # the informational misalignments are made from every 4th aligned scan

SKULL = "head with skull (synthetic)"
NATIVE_HEAD = "native head with skull (corner origin)"
NATIVE_CORNER = "native brain (corner origin)"
NATIVE_CENTRED = "native brain (centred origin)"

#: measure -> (module threshold, True when a high value fails, what it must catch: kinds or populations)
CHECKS = {
    "template_r": ("MIN_TEMPLATE_R", False, (NATIVE_HEAD, NATIVE_CORNER)),
    "rotation_deg": ("MAX_ROTATION_DEG", True, ("rotated",)),
    "shift_mm": ("MAX_SHIFT_MM", True, ("shifted", NATIVE_CENTRED)),
    "outside_fraction": ("MAX_OUTSIDE_FRACTION", True, (SKULL, NATIVE_HEAD, NATIVE_CORNER)),
    "centroid_offset_mm": ("MAX_CENTROID_OFFSET_MM", True, (NATIVE_HEAD, NATIVE_CORNER)),
}


def processor() -> str:
    """The CPU model (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def in_memory(img) -> nib.Nifti1Image:
    """A float32 copy held in memory (so that timings exclude decompression)."""
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)


# ----------------------------------------------------------------------------- aligned scans
def simulated_scans(work: Path, quick: bool) -> list[tuple[str, str, nib.Nifti1Image]]:
    """GM maps from the project's simulator: several resolutions, seeds and family recipes."""
    from sepclr_med.simulate import load_recipe, simulate_cohort

    root = Path(__file__).resolve().parents[1]
    jobs = [(load_recipe(), res, seed) for res in (2.0, 3.0, 4.0, 6.0) for seed in ((0,) if quick else (0, 1))]
    family = sorted((root / "cohorts" / "family").glob("*.toml"))
    jobs += [(load_recipe(path), 4.0, 7) for path in (family[:1] if quick else family)]
    scans = []
    for i, (recipe, res, seed) in enumerate(jobs):
        n = 2
        sim = simulate_cohort(
            recipe.replace(n_controls=n, n_patients=n, resolution_mm=res, seed=seed), work / f"sim{i}"
        )
        table = pd.read_csv(sim.cohort_csv)
        for path in table["image"]:
            scans.append(
                (
                    f"aligned: simulated GM map, {res:g} mm",
                    f"{recipe.name} seed {seed} {path}",
                    in_memory(nib.load(sim.cohort_csv.parent / path)),
                )
            )
    return scans


def reorient(img: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same image stored with axis codes ``codes`` (array flipped/permuted, affine matching)."""
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    return img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(codes)))


def t1_scans(rng: np.random.Generator, quick: bool) -> list[tuple[str, str, nib.Nifti1Image]]:
    """Registered T1w-like brains: the MNI152 T1 template with small realistic perturbations."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    from nilearn.image import resample_img

    from sepclr_med.simulate.anatomy import bias_field, warp

    t1 = load_mni152_template(resolution=2)
    base = np.asarray(t1.dataobj, dtype=np.float32)
    brain = np.asarray(load_mni152_brain_mask(resolution=2).dataobj) > 0
    centre = np.argwhere(brain).mean(axis=0)
    scans = []
    voxel_sizes = (1.5, 2.0, 1.0, 1.5, 2.0, 1.5, 2.0, 1.0)[: 4 if quick else 8]
    for i, voxel in enumerate(voxel_sizes):
        data = warp(
            base,
            rng,
            amplitude_vox=rng.uniform(2.0, 3.0) / 2.0,
            sigma_vox=16.0 / 2.0,
            scale=float(rng.uniform(0.97, 1.03)),
            center=centre,
        )
        data = data * bias_field(rng, data.shape, rng.uniform(0.1, 0.3))
        inside = ndimage.gaussian_filter(data, 1.0) > 0.05
        data = np.clip(data + inside * rng.uniform(0.01, 0.04) * rng.standard_normal(data.shape), 0, None)
        img = nib.Nifti1Image(data.astype(np.float32), t1.affine)
        if voxel != 2.0:
            affine = np.diag([voxel] * 3 + [1.0])
            affine[:3, 3] = t1.affine[:3, 3]
            shape = tuple(int(np.floor((s - 1) * 2.0 / voxel)) + 1 for s in data.shape)
            img = resample_img(
                img,
                target_affine=affine,
                target_shape=shape,
                interpolation="linear",
                force_resample=True,
                copy_header=True,
            )
        if i % 2 == 1:  # field of view cropped to the brain + 6 mm
            img = crop_to_brain(img, 6.0)
        scale, dtype = [(1.0, np.float32), (1000.0, np.int16), (255.0, np.uint8), (1e-3, np.float64)][i % 4]
        values = np.asarray(img.dataobj, dtype=np.float64) * scale
        if np.issubdtype(dtype, np.integer):
            values = np.round(values)
        img = nib.Nifti1Image(values.astype(dtype), img.affine)
        codes = ORIENTATIONS[i % len(ORIENTATIONS)]
        scans.append(
            (
                f"aligned: T1w-like brain, {voxel:g} mm",
                f"T1 #{i} {voxel:g} mm {codes} {dtype.__name__}{' cropped' if i % 2 else ''}",
                reorient(img, codes),
            )
        )
    return scans


def crop_to_brain(img: nib.Nifti1Image, margin_mm: float) -> nib.Nifti1Image:
    """The image cropped to the bounding box of its positive voxels plus ``margin_mm``."""
    data = np.asarray(img.dataobj)
    voxel = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    margin = np.ceil(margin_mm / voxel).astype(int)
    nonzero = np.argwhere(data > 0)
    lo = np.maximum(nonzero.min(axis=0) - margin, 0)
    hi = np.minimum(nonzero.max(axis=0) + margin + 1, data.shape)
    return img.slicer[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]


# -------------------------------------------------------------------------- misaligned scans
def world_centre(img) -> np.ndarray:
    """Intensity centroid of the image in world mm (the brain's centre)."""
    data = np.clip(np.asarray(img.dataobj, dtype=np.float64), 0, None)
    index = (
        np.array(
            [data.sum(axis=tuple(a for a in range(3) if a != axis)) @ np.arange(n) for axis, n in enumerate(data.shape)]
        )
        / data.sum()
    )
    return img.affine[:3, :3] @ index + img.affine[:3, 3]


def move(
    img, centre: np.ndarray, *, angle_deg: float = 0.0, axis: int = 0, shift_mm: np.ndarray | None = None
) -> nib.Nifti1Image:
    """The brain rotated about ``centre`` (world mm) around world ``axis``, then shifted.

    The result keeps the input's axes and voxel size (its affine still says MNI); its grid is
    the input's, extended to hold the moved field of view.
    """
    from nilearn.image import resample_img

    rotvec = np.zeros(3)
    rotvec[axis] = np.radians(angle_deg)
    motion = np.eye(4)
    motion[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    motion[:3, 3] = centre - motion[:3, :3] @ centre + (np.zeros(3) if shift_mm is None else shift_mm)
    source = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), motion @ img.affine)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in img.shape[:3]], indexing="ij")).reshape(3, -1)
    inverse = np.linalg.inv(img.affine)
    moved = inverse[:3, :3] @ (source.affine[:3, :3] @ corners + source.affine[:3, 3:4]) + inverse[:3, 3:4]
    lo = np.minimum(np.floor(moved.min(axis=1)), 0).astype(int)
    hi = np.maximum(np.ceil(moved.max(axis=1)), np.asarray(img.shape[:3]) - 1).astype(int)
    target = img.affine.copy()
    target[:3, 3] = img.affine[:3, :3] @ lo + img.affine[:3, 3]
    return resample_img(
        source,
        target_affine=target,
        target_shape=tuple(hi - lo + 1),
        interpolation="linear",
        force_resample=True,
        copy_header=True,
    )


def add_skull(img, rng: np.random.Generator) -> nib.Nifti1Image:
    """A synthetic head: the brain plus a bright scalp/skull shell and low-intensity neck tissue.

    Shell: 4-6 mm to 11-15 mm outside the brain's support, intensity 0.4-0.9 of the brain's
    99th percentile (smoothly modulated by ±20 %); neck: a 40-60 mm column below the brain at
    0.15-0.35. The grid is padded to hold them.
    """
    data = np.clip(np.asarray(img.dataobj, dtype=np.float32), 0, None)
    affine = img.affine
    voxel = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    p99 = float(np.percentile(data[data > 0], 99))
    down = int(np.argmax(np.abs(affine[2, :3])))  # array axis closest to world z
    pad = [[int(np.ceil(17 / v))] * 2 for v in voxel]
    pad[down][0 if affine[2, down] > 0 else 1] += int(np.ceil(60 / voxel[down]))
    data = np.pad(data, pad)
    affine = affine.copy()
    affine[:3, 3] = affine[:3, :3] @ -np.array([p[0] for p in pad]) + affine[:3, 3]
    support = ndimage.binary_fill_holes(ndimage.gaussian_filter(data, 1.0) > 0.05 * p99)
    distance = ndimage.distance_transform_edt(~support, sampling=voxel)
    inner, outer = rng.uniform(4, 6), rng.uniform(11, 15)
    texture = 1 + 0.2 * np.tanh(ndimage.gaussian_filter(rng.standard_normal(data.shape), 8 / voxel.min()) * 20)
    shell = (distance >= inner) & (distance <= outer)
    head = data + shell * rng.uniform(0.4, 0.9) * p99 * texture
    world = np.indices(data.shape).reshape(3, -1)
    world = (affine[:3, :3] @ world + affine[:3, 3:4]).reshape(3, *data.shape)
    sw = world[:, support]
    bottom, (cx, cy) = sw[2].min(), (sw[0].mean(), sw[1].mean() - 10)
    neck = (
        ((world[0] - cx) ** 2 / 45**2 + (world[1] - cy) ** 2 / 40**2 <= 1)
        & (world[2] < bottom + 20)
        & (world[2] > bottom - rng.uniform(40, 60))
        & (distance > 0)
    )
    head = head + neck * rng.uniform(0.15, 0.35) * p99 * texture
    return nib.Nifti1Image(head.astype(np.float32), affine)


def scanner_affine(img, centred: bool = False) -> nib.Nifti1Image:
    """The same voxels with a scanner's affine: voxel sizes on the diagonal, origin at the corner
    of the volume (positive coordinates only) or at its centre."""
    voxel = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    affine = np.diag([*voxel, 1.0])
    if centred:
        affine[:3, 3] = -voxel * (np.asarray(img.shape[:3]) - 1) / 2
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), affine)


def misaligned(img, rng: np.random.Generator, info: bool = True) -> list[tuple[str, str, nib.Nifti1Image]]:
    """(kind, population, image) for every misalignment of one aligned scan.

    ``info`` adds the misalignments below the requirement (kind ``"info"``).
    """
    out = []
    centre = world_centre(img)
    for angle in ROTATIONS_DEG + (INFO_ROTATIONS_DEG if info else ()):
        for axis in range(3):
            kind = "rotated" if angle in ROTATIONS_DEG else "info"
            sign = rng.choice([-1.0, 1.0])
            out.append(
                (kind, f"rotated {angle:g}° about {'xyz'[axis]}", move(img, centre, angle_deg=sign * angle, axis=axis))
            )
    for shift in SHIFTS_MM + (INFO_SHIFTS_MM if info else ()):
        for axis in range(3):
            kind = "shifted" if shift in SHIFTS_MM else "info"
            vector = np.zeros(3)
            vector[axis] = rng.choice([-1.0, 1.0]) * shift
            out.append((kind, f"shifted {shift:g} mm along {'xyz'[axis]}", move(img, centre, shift_mm=vector)))
    head = add_skull(img, rng)
    out.append(("skull", SKULL, head))
    out.append(("native", NATIVE_HEAD, scanner_affine(head)))
    out.append(("native", NATIVE_CORNER, scanner_affine(img)))
    out.append(("native", NATIVE_CENTRED, scanner_affine(img, centred=True)))
    return out


# -------------------------------------------------------------------------------- reporting
def timed(img) -> dict[str, float]:
    start = time.perf_counter()
    measures = ts.measure_alignment(img)
    measures["seconds"] = time.perf_counter() - start
    return measures


def cell(values: pd.Series, digits: int) -> str:
    values = values.astype(float)
    if values.isna().all():
        return "nan"
    return " / ".join(f"{v:.{digits}f}" for v in (values.min(), values.median(), values.max())) + (
        f" ({int(values.isna().sum())} nan)" if values.isna().any() else ""
    )


def summarise(table: pd.DataFrame) -> None:
    digits = {"template_r": 2, "rotation_deg": 1, "shift_mm": 1, "outside_fraction": 3, "centroid_offset_mm": 1}
    rows = []
    for (_kind, population), group in table.groupby(["kind", "population"], sort=False):
        passed = int((group["errors"] == 0).sum())
        rows.append(
            {
                "population": population,
                "n": len(group),
                **{m: cell(group[m], d) for m, d in digits.items()},
                "pass": f"{passed}/{len(group)}",
            }
        )
    print("\nmin / median / max of each measure; pass = scans with no alignment error")
    print(pd.DataFrame(rows).to_markdown(index=False))

    aligned = table[table["kind"] == "aligned"]
    print("\nthresholds and margins (margin = distance from the threshold; > 0: on the right side)")
    rows = []
    for measure, (name, high_fails, kinds) in CHECKS.items():
        threshold = getattr(ts, name)
        target = table[table["kind"].isin(kinds) | table["population"].isin(kinds)][measure]
        target = target.astype(float).fillna(np.inf if high_fails else -np.inf)  # NaN fails
        worst = aligned[measure].astype(float).max() if high_fails else aligned[measure].astype(float).min()
        best = target.min() if high_fails else target.max()
        sign = 1 if high_fails else -1
        rows.append(
            {
                "measure": measure,
                "threshold": f"{name} = {threshold:g}",
                "worst aligned": f"{worst:.3g}",
                "best targeted misaligned": f"{best:.3g}",
                "targets": ", ".join(kinds),
                "aligned margin": f"{sign * (threshold - worst):.3g}",
                "misaligned margin": f"{sign * (best - threshold):.3g}",
            }
        )
    print(pd.DataFrame(rows).to_markdown(index=False))

    required = table[table["kind"].isin(["rotated", "shifted", "skull", "native"])]
    n_pass = int((aligned["errors"] == 0).sum())
    n_fail = int((required["errors"] > 0).sum())
    print(
        f"\naligned scans passing: {n_pass}/{len(aligned)}; misaligned scans failing: {n_fail}/{len(required)}"
        f" -> requirement {'MET' if n_pass == len(aligned) and n_fail == len(required) else 'NOT MET'}"
    )
    misses = pd.concat([aligned[aligned["errors"] > 0], required[required["errors"] == 0]])
    for _, row in misses.head(10).iterrows():
        print(f"  wrong: {row['population']} from {row['source']}: " + ", ".join(f"{m}={row[m]:.3g}" for m in CHECKS))
    seconds = table["seconds"]
    fine = table[table["voxel_mm"] <= 2.0]["seconds"]
    print(
        f"\nmeasure_alignment per scan (image in memory): median {1000 * seconds.median():.0f} ms over "
        f"{len(seconds)} scans; scans with voxels <= 2 mm: median {1000 * fine.median():.0f} ms, "
        f"max {1000 * fine.max():.0f} ms"
    )


def time_from_disk(folder: Path, repeats: int = 5) -> None:
    """Median time to load a 1 mm int16 ``.nii.gz`` (197x233x189) and measure it, and to load it only."""
    from nilearn.datasets import load_mni152_template

    t1 = load_mni152_template(resolution=1)
    path = folder / "t1_1mm.nii.gz"
    nib.save(nib.Nifti1Image(np.round(np.asarray(t1.dataobj) * 1000).astype(np.int16), t1.affine), path)
    both, load = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(nib.load(path).dataobj)
        load.append(time.perf_counter() - start)
        start = time.perf_counter()
        ts.measure_alignment(nib.load(path))
        both.append(time.perf_counter() - start)
    print(
        f"1 mm int16 .nii.gz from disk: load + measure_alignment median {1000 * np.median(both):.0f} ms "
        f"(decompression alone {1000 * np.median(load):.0f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset (a smoke run)")
    parser.add_argument("--csv", help="write every scan's measures to this CSV")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"processor: {processor()}; python {platform.python_version()}")
    start = time.perf_counter()
    ts.measure_alignment(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)))
    print(f"templates prepared once per process: {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        time_from_disk(Path(tmp))
        aligned = simulated_scans(Path(tmp), args.quick) + t1_scans(rng, args.quick)
    print(f"{len(aligned)} aligned scans built in {time.perf_counter() - start:.0f} s")
    rows = []
    for index, (aligned_population, source, img) in enumerate(aligned):
        scans = [("aligned", aligned_population, img)] + misaligned(img, rng, info=index % INFO_EVERY == 0)
        for kind, population, scan in scans:
            measures = timed(scan)
            voxel = float(np.sqrt((scan.affine[:3, :3] ** 2).sum(axis=0)).max())
            rows.append(
                {
                    "source": f"{index}: {source}",
                    "kind": kind,
                    "population": population,
                    "voxel_mm": voxel,
                    **measures,
                    "errors": len(ts.alignment_errors(measures)),
                }
            )
    table = pd.DataFrame(rows)
    order = {"aligned": 0, "rotated": 1, "shifted": 2, "skull": 3, "native": 4, "info": 5}
    table = table.sort_values("kind", key=lambda k: k.map(order), kind="stable")
    summarise(table)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
