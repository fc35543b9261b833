"""Generate a semi-synthetic cohort: real anatomy, shared factors, patient-only subtypes.

Each subject is built in template space, then warped::

    gm = template_gm
         * (1 - global_age_loss(age))                      # shared: global atrophy
         * (1 - regional_age_loss(age) * age_regions)      # shared: regional atrophy
         * (1 - max_loss_k * severity * subtype_k_map)     # patients only
    image = warp(gm, smooth deformation, head scale(sex)) * site_gain * bias_field + noise

The cohort CSV lists what a researcher would have (images, group, age, sex, site, clinical
scores); ``ground_truth.csv`` holds what only the simulation knows (subtype, severity, regions).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from sepclr_med.atomic import save_nifti, write_text
from sepclr_med.simulate.anatomy import TemplateSpace, bias_field, load_template_space, warp
from sepclr_med.simulate.recipe import Recipe


@dataclass
class SimulatedCohort:
    """Paths written by :func:`simulate_cohort`."""

    root: Path
    cohort_csv: Path
    ground_truth_csv: Path
    subtype_masks: dict[str, Path]
    brain_mask: Path


def _balanced_labels(rng: np.random.Generator, n: int, labels: list, weights=None) -> list:
    """``n`` labels in exact proportions (cyclic), shuffled."""
    out = (
        [labels[i % len(labels)] for i in range(n)] if weights is None else list(rng.choice(labels, size=n, p=weights))
    )
    rng.shuffle(out)
    return out


def _demographics(recipe: Recipe, rng: np.random.Generator) -> pd.DataFrame:
    n_c, n_p = recipe.n_controls, recipe.n_patients
    n = n_c + n_p
    groups = np.array(["control"] * n_c + ["patient"] * n_p)
    lo, hi = recipe.age.range
    shift = recipe.imbalance * recipe.age.patient_age_shift
    age = rng.uniform(lo, hi, n) + np.where(groups == "patient", shift, 0.0)
    sex = np.empty(n, dtype=object)
    for g in ("control", "patient"):
        idx = np.flatnonzero(groups == g)
        n_m = int(round(recipe.sex.male_fraction * len(idx)))
        sex[idx] = _balanced_labels(rng, len(idx), ["M"] * n_m + ["F"] * (len(idx) - n_m)) if len(idx) else []
    site_names = [s.name for s in recipe.sites]
    site = np.empty(n, dtype=object)
    site[groups == "control"] = _balanced_labels(rng, n_c, site_names)
    skew = recipe.imbalance
    patient_sites = _balanced_labels(rng, n_p, site_names)
    site[groups == "patient"] = [site_names[0] if rng.random() < skew else s for s in patient_sites]
    subtype = np.array([""] * n, dtype=object)
    subtype[groups == "patient"] = _balanced_labels(rng, n_p, [s.name for s in recipe.subtypes])
    severity = np.where(groups == "patient", rng.uniform(*recipe.severity, n), 0.0)
    head = np.where(sex == "M", recipe.sex.male_head_scale, 1.0) * (
        1 + recipe.anatomy.head_scale_sd * rng.standard_normal(n)
    )
    table = pd.DataFrame(
        {
            "group": groups,
            "age": np.round(age, 1),
            "sex": sex,
            "site": site,
            "subtype": subtype,
            "severity": np.round(severity, 4),
            "head_scale": np.round(head, 4),
        }
    )
    order = rng.permutation(n)  # neutral ids: group is not readable from the id
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "subject_id", [f"sub-{i + 1:04d}" for i in range(n)])
    return table


def _scores(recipe: Recipe, table: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    out = pd.DataFrame(index=table.index)
    patient = (table["group"] == "patient").to_numpy()
    for score in recipe.scores:
        weight = table["subtype"].map(lambda k, w=score.weights: w.get(k, 0.0)).to_numpy(float)
        value = score.base + weight * table["severity"].to_numpy() + score.noise_sd * rng.standard_normal(len(table))
        value = np.clip(np.round(value), score.lo, score.hi)
        out[score.name] = np.where(patient, value, np.nan)
    return out


def effect_maps(space: TemplateSpace, atlas, region_lists: list[list[str]]) -> list[np.ndarray]:
    """Smooth 0..1 maps of atlas region sets on the template grid (edges tapered ~1 voxel)."""
    maps = []
    for regions in region_lists:
        mask = atlas.mask(regions).astype(np.float32) if regions else np.zeros(space.shape, np.float32)
        smooth = ndimage.gaussian_filter(mask, sigma=0.7)
        maps.append(np.maximum(mask, smooth / max(smooth.max(), 1e-6)) * space.mask)
    return maps


def focal_variation(space: TemplateSpace, nuisance, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative field ``prod_k (1 + a_k g_k(x))`` of a subject's nuisance GM blobs.

    Blob centres are random voxels with GM > 0.3; ``a_k`` uniform in ``±max_gm_change``; each
    ``g_k`` a Gaussian of peak 1 whose standard deviation is drawn in ``nuisance.sigma_mm``.
    """
    field = np.ones(space.shape, np.float32)
    candidates = np.argwhere(space.gm > 0.3)
    grid = np.indices(space.shape, dtype=np.float32)
    for _ in range(rng.poisson(nuisance.blobs_per_subject)):
        centre = candidates[rng.integers(len(candidates))]
        sigma = rng.uniform(*nuisance.sigma_mm) / space.resolution_mm
        d2 = sum((grid[i] - centre[i]) ** 2 for i in range(3))
        amplitude = rng.uniform(-nuisance.max_gm_change, nuisance.max_gm_change)
        field *= 1 + amplitude * np.exp(-0.5 * d2 / sigma**2)
    return field


def simulate_subject(
    space: TemplateSpace,
    row: pd.Series,
    recipe: Recipe,
    age_map: np.ndarray,
    subtype_maps: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """One subject's GM image (float32) on the template grid."""
    decades = (row["age"] - recipe.age.reference) / 10.0
    gm = space.gm * (1 - recipe.age.global_loss_per_decade * decades)
    gm = gm * (1 - recipe.age.regional_loss_per_decade * decades * age_map)
    if row["subtype"]:
        spec = next(s for s in recipe.subtypes if s.name == row["subtype"])
        gm = gm * (1 - spec.max_gm_loss * row["severity"] * subtype_maps[spec.name])
    if recipe.nuisance.blobs_per_subject > 0:
        gm = gm * focal_variation(space, recipe.nuisance, rng)
    gm = np.clip(gm, 0, 1).astype(np.float32)
    res = space.resolution_mm
    center = np.argwhere(space.mask).mean(axis=0)
    warp_args = dict(
        amplitude_vox=recipe.anatomy.deformation_mm / res,
        sigma_vox=recipe.anatomy.deformation_smoothness_mm / res,
        scale=float(row["head_scale"]),
        center=center,
    )
    seed = rng.integers(2**32)
    gm = warp(gm, np.random.default_rng(seed), **warp_args)
    inside = warp(space.mask.astype(np.float32), np.random.default_rng(seed), **warp_args) > 0.5
    site = next(s for s in recipe.sites if s.name == row["site"])
    image = gm * site.gain * bias_field(rng, space.shape, site.bias_strength)
    image = image + inside * site.noise_sd * rng.standard_normal(space.shape).astype(np.float32)
    return np.clip(image, 0, None).astype(np.float32)


def simulate_cohort(
    recipe: Recipe, out: str | os.PathLike, progress: Callable[[int, int], None] | None = None
) -> SimulatedCohort:
    """Write a semi-synthetic cohort generated from ``recipe`` to the folder ``out``.

    Parameters
    ----------
    recipe : Recipe
        What to simulate; ``recipe.seed`` makes the output byte-identical across runs.
    out : path-like
        Output folder (created). Writes ``images/``, ``masks/subtype-<name>.nii.gz``,
        ``brain_mask.nii.gz``, ``ground_truth.csv``, ``recipe.toml`` and, last,
        ``cohort.csv``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each subject.

    Returns
    -------
    SimulatedCohort
    """
    from sepclr_med.io.atlas import Atlas

    recipe.validate()
    out = Path(out)
    space = load_template_space(recipe.resolution_mm)
    atlas = Atlas.load("AAL").resample_to(space.image(space.gm))
    age_map, *maps = effect_maps(space, atlas, [recipe.age.regions] + [s.regions for s in recipe.subtypes])
    subtype_maps = {s.name: m for s, m in zip(recipe.subtypes, maps, strict=True)}

    rng = np.random.default_rng(recipe.seed)
    table = _demographics(recipe, rng)
    table = pd.concat([table, _scores(recipe, table, rng)], axis=1)
    subject_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(recipe.seed).spawn(len(table))]

    (out / "images").mkdir(parents=True, exist_ok=True)
    for i, row in table.iterrows():
        data = simulate_subject(space, row, recipe, age_map, subtype_maps, subject_rngs[i])
        save_nifti(space.image(data), out / "images" / f"{row['subject_id']}.nii.gz")
        if progress is not None:
            progress(i + 1, len(table))

    masks = {}
    for spec in recipe.subtypes:
        masks[spec.name] = save_nifti(
            space.image(atlas.mask(spec.regions) & space.mask, np.uint8), out / "masks" / f"subtype-{spec.name}.nii.gz"
        )
    brain = save_nifti(space.image(space.mask, np.uint8), out / "brain_mask.nii.gz")

    regions = {s.name: ";".join(s.regions) for s in recipe.subtypes}
    truth = table[["subject_id", "group", "subtype", "severity", "age", "sex", "site", "head_scale"]].copy()
    truth["affected_regions"] = truth["subtype"].map(lambda k: regions.get(k, ""))
    write_text(out / "ground_truth.csv", truth.to_csv(index=False))
    write_text(out / "recipe.toml", _to_toml(recipe))
    cohort = table[["subject_id"]].copy()
    cohort["image"] = "images/" + table["subject_id"] + ".nii.gz"
    cohort = pd.concat([cohort, table[["group", "age", "sex", "site"] + [s.name for s in recipe.scores]]], axis=1)
    cohort_csv = write_text(out / "cohort.csv", cohort.to_csv(index=False))
    return SimulatedCohort(out, cohort_csv, out / "ground_truth.csv", masks, brain)


def _to_toml(recipe: Recipe) -> str:
    """The resolved recipe as TOML (so a cohort folder records how it was made)."""
    import tomli_w

    data = recipe.to_dict()
    data["severity"] = {"range": list(recipe.severity)}
    data["age"]["range"] = list(recipe.age.range)
    data["nuisance"]["sigma_mm"] = list(recipe.nuisance.sigma_mm)
    return tomli_w.dumps(data)
