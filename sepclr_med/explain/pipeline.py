"""``explain``: from a run and a cohort to directions, maps, region tables, clinical statistics
and figures, with an index of every file written."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from sepclr_med.atomic import save_nifti, write_table, write_text
from sepclr_med.errors import SepclrError
from sepclr_med.explain.clinical import associate
from sepclr_med.explain.directions import SalientDirections
from sepclr_med.explain.group_stats import STATISTICS, group_statistic
from sepclr_med.explain.regions import ablation_table, region_table
from sepclr_med.explain.saliency import PRECISIONS, attribute, group_attributions, region_rep_changes
from sepclr_med.locking import locks_output
from sepclr_med.naming import safe_name, slug

METHODS = ("eg", "ig", "grad", "ablation")


def load_atlas(atlas: str | os.PathLike, grid_img, lookup: str | os.PathLike | None = None):
    """A packaged atlas by name, or a labels NIfTI plus lookup table, on the run's grid."""
    from sepclr_med.io.atlas import Atlas

    if lookup is not None or str(atlas).endswith((".nii", ".nii.gz")):
        if lookup is None:
            raise SepclrError(f"atlas {atlas}: a labels image needs a lookup table (--atlas-lut)")
        base = Atlas.from_files(atlas, lookup)
    else:
        base = Atlas.load(str(atlas))
    return base.resample_to(grid_img)


def _groups_of_patients(salient: np.ndarray, patient: np.ndarray, subjects: list[str], truth, seed: int = 0) -> dict:
    """Patient subgroups: ground-truth subtypes when known, else k-means clusters in salient space."""
    if truth is not None and "subtype" in truth.columns:
        subtype = truth.set_index("subject_id").reindex(subjects)["subtype"].fillna("").to_numpy()
        return {f"subtype-{k}": patient & (subtype == k) for k in sorted(set(subtype[patient])) if k}
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import StandardScaler

    from sepclr_med.evaluation.dependence import patient_cluster_silhouette

    k = int(patient_cluster_silhouette(salient[patient])["n_clusters"] or 2)
    labels = KMeans(k, n_init=10, random_state=seed).fit_predict(StandardScaler().fit_transform(salient[patient]))
    out = {}
    for c in range(k):
        mask = np.zeros_like(patient)
        mask[np.flatnonzero(patient)[labels == c]] = True
        out[f"cluster-{c + 1}"] = mask
    return out


@locks_output("out")
def explain(
    run,
    cohort,
    out: str | os.PathLike,
    *,
    atlas: str = "AAL",
    atlas_lut=None,
    method: str = "eg",
    subjects: list[str] | None = None,
    n_steps: int = 24,
    group_stat: str | None = None,
    group_fwhm: float | None = None,
    truth=None,
    n_permutations: int = 0,
    figures: bool = True,
    console=None,
    device: str = "cpu",
    precision: str = "float32",
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Explain a run's salient space on ``cohort`` and write everything into ``out``.

    Parameters
    ----------
    run : Run
        Trained run.
    cohort : Cohort
        Controls and patients (controls give the baseline image and the deviation reference).
    out : path-like
        Output folder.
    atlas, atlas_lut
        Packaged atlas name (``AAL``, ``AAL3``, ``HCPEx``) or a labels NIfTI plus its lookup table.
    method : {"eg", "ig", "grad", "ablation"}
        Voxel attribution (expected gradients against the controls' images, integrated gradients
        from their mean image, plain gradients) or region ablation only.
    subjects : list of str, optional
        Subjects that get their own map and region table (default: every patient).
    n_steps : int
        Attribution budget per subject: expected-gradient samples or integrated-gradient steps.
    group_stat : {"t", "mean"}, optional
        Group maps: voxelwise one-sample t of the members' smoothed maps, or their mean. Default:
        ``"t"`` for ``eg``; ``"mean"`` for ``ig`` and ``grad``, whose single mean-image baseline
        leaves artefacts that every member shares and a t-map would amplify (docs/explain.md).
    group_fwhm : float, optional
        Smoothing of the members' maps before the group statistic (mm FWHM; 0 = none). Default:
        8 for ``eg``, 0 for ``ig`` and ``grad``.
    truth : pandas.DataFrame, optional
        Ground truth with ``subject_id`` and ``subtype`` (group maps per subtype); else clusters.
    n_permutations : int
        Max-T permutations for the clinical table (0 = none).
    figures : bool
        Write PNG figures.
    device : str
        ``cpu``, ``cuda`` or ``auto``: where the encoders run and the maps are computed.
    precision : {"float32", "bfloat16"}
        Attribution passes under bfloat16 autocast (:func:`~sepclr_med.explain.saliency.attribute`).
    progress : callable, optional
        Called with the name of each stage as it starts (a progress display).

    Returns
    -------
    dict
        The index written to ``index.json``: every output path by kind, and timings.
    """
    group_stat, group_fwhm = _group_settings(method, group_stat, group_fwhm)
    if precision not in PRECISIONS:
        raise SepclrError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    stage = progress or (lambda name: None)
    stage("reading and encoding the cohort")
    job = _Job.start(run, cohort, Path(out), subjects, atlas, atlas_lut, truth, figures, console, device)
    tic = time.perf_counter()
    stage(f"{method} maps of {len(job.pidx)} patients and their groups")
    if method in ("eg", "ig", "grad"):
        job.index["precision"] = precision
        _voxel_maps(job, method, n_steps, group_stat, group_fwhm, precision)
        job.index["timings"]["maps_per_second"] = len(job.pidx) / (time.perf_counter() - tic)
    else:
        _ablation_maps(job)
        job.index["timings"]["subjects_per_second"] = len(job.pidx) / (time.perf_counter() - tic)
    stage("clinical associations and figures")
    _clinical_tables(job, run, n_permutations)
    index = job.index
    write_text(job.out / "index.json", json.dumps(index, indent=1))
    job.say(
        f"explain: {len(index['maps'])} maps, {len(index['regions'])} region tables, "
        f"{len(index['subjects'])} subjects, {len(index['figures'])} figures -> {job.out / 'index.json'}"
    )
    return index


def _group_settings(method: str, group_stat: str | None, group_fwhm: float | None) -> tuple[str, float]:
    """The group statistic and smoothing each method defaults to; refused when unknown."""
    if method not in METHODS:
        raise SepclrError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    group_stat = group_stat or ("t" if method == "eg" else "mean")
    group_fwhm = (8.0 if method == "eg" else 0.0) if group_fwhm is None else group_fwhm
    if group_stat not in STATISTICS or group_fwhm < 0:
        raise SepclrError(
            f"--group-stat must be one of {', '.join(STATISTICS)} (got {group_stat!r}) and "
            f"--group-fwhm at least 0 (got {group_fwhm:g})"
        )
    return group_stat, group_fwhm


def _requested_subjects(cohort, subjects: list[str] | None) -> set[str]:
    """The patients that get their own map (default: every patient); controls are refused."""
    ids, patient = cohort.subject_ids, cohort.is_target
    if (~patient).sum() < 2 or patient.sum() < 2:
        raise SepclrError("explain needs at least 2 controls and 2 patients in the cohort")
    wanted = set(subjects) if subjects else {s for s, p in zip(ids, patient, strict=True) if p}
    unknown = wanted - set(ids)
    if unknown:
        raise SepclrError(f"--subjects not in the cohort: {', '.join(sorted(unknown))}")
    controls = wanted & {s for s, p in zip(ids, patient, strict=True) if not p}
    if controls:
        raise SepclrError(
            f"--subjects names controls, which define the reference and get no map: {', '.join(sorted(controls))}"
        )
    return wanted


@dataclass
class _Job:
    """What every step of one ``explain`` call shares: where it writes, the grid and atlas, the
    cohort's volumes and reps, and the salient directions fitted on them."""

    out: Path
    index: dict
    say: Callable
    figures: bool
    cohort: Any
    wanted: set[str]
    model: Any
    pre: Any
    to_img: Callable
    brain: np.ndarray | None
    labels: np.ndarray
    regions: pd.DataFrame
    volumes: torch.Tensor
    salient: np.ndarray
    common: np.ndarray
    directions: SalientDirections
    deviation: pd.DataFrame
    references: torch.Tensor
    baseline: torch.Tensor
    own: np.ndarray
    pidx: np.ndarray
    groups: dict[str, np.ndarray]

    @classmethod
    def start(
        cls, run, cohort, out: Path, subjects, atlas, atlas_lut, truth, figures: bool, console, device: str
    ) -> _Job:
        """Check the request, then read, encode and fit what the steps need (writes the index's
        tables: ``deviation.csv``, ``directions.csv``, the baseline image)."""
        from sepclr_med.data import cached_dataset
        from sepclr_med.embed import encode_dataset, latent_table
        from sepclr_med.training.distributed import resolve_device

        say = console.print if console is not None else (lambda *a, **k: None)
        warning = run.verdict_warning()
        index: dict = {
            "maps": {},
            "regions": {},
            "figures": [],
            "tables": {},
            "subjects": {},
            "timings": {},
            "checks": {},
            "verdict": run.verdict(),
            "warnings": [warning] if warning else [],
        }
        if warning:
            from rich.markup import escape

            say(f"[bold red]WARNING[/] (training verdict): {escape(warning)}")
        wanted = _requested_subjects(cohort, subjects)
        for sub in ("maps", "regions", "figures", "subjects"):  # only once the request is known to be valid
            (out / sub).mkdir(parents=True, exist_ok=True)
        dev = resolve_device(device)
        model = run.load_model(dev)
        pre = run.config.preprocess
        to_img = pre.grid.image
        atlas_img = load_atlas(atlas, to_img(np.zeros(pre.grid.shape, np.float32)), atlas_lut)
        data = cached_dataset(cohort.records(), pre, cache="memory")  # decoded once: reps and maps
        volumes = torch.stack([data[i]["image"] for i in range(len(data))])
        latents = latent_table(cohort, *encode_dataset(model, data, device=dev))
        salient = latents.filter(like="salient_").to_numpy()
        patient = cohort.is_target
        scores = cohort.table[list(cohort.score_columns)].reset_index(drop=True)
        directions = SalientDirections(random_state=run.config.seed).fit(salient, patient, scores)
        deviation = _direction_tables(directions, salient, cohort, out, index)
        references = volumes[torch.from_numpy(~patient)]  # eg draws from them; ig, grad, ablation take their mean
        baseline = references.mean(dim=0)
        save_nifti(to_img(baseline[0].numpy()), out / "maps" / "baseline_control_mean.nii.gz")
        return cls(
            out=out,
            index=index,
            say=say,
            figures=figures,
            cohort=cohort,
            wanted=wanted,
            model=model,
            pre=pre,
            to_img=to_img,
            brain=pre.mask_array() if pre.mask != "nonzero" else None,
            labels=atlas_img.data,
            regions=atlas_img.regions,
            volumes=volumes,
            salient=salient,
            common=latents.filter(like="common_").to_numpy(),
            directions=directions,
            deviation=deviation,
            references=references,
            baseline=baseline,
            own=directions.deviation_directions(salient),
            pidx=np.flatnonzero(patient),
            groups={
                "patients": patient,
                **_groups_of_patients(salient, patient, cohort.subject_ids, truth, run.config.seed),
            },
        )


def _direction_tables(directions: SalientDirections, salient: np.ndarray, cohort, out: Path, index: dict):
    """Write ``deviation.csv`` (every subject) and ``directions.csv``; return the deviation table."""
    deviation = directions.deviation(salient)
    deviation.insert(0, "group", cohort.table["group"].to_numpy())
    deviation.insert(0, "subject_id", cohort.subject_ids)
    index["tables"]["deviation"] = str(write_table(out / "deviation.csv", deviation))
    dir_table = pd.DataFrame(
        [
            {
                "direction": k,
                "explained_variance_ratio": directions.explained_variance_ratio_[int(k[2:]) - 1]
                if k.startswith("pc")
                else np.nan,
                "cv_r2": directions.score_cv_r2_.get(k.split(":", 1)[-1], np.nan),
                **{f"u_{i}": v for i, v in enumerate(u)},
            }
            for k, u in directions.directions().items()
        ]
    )
    index["tables"]["directions"] = str(write_table(out / "directions.csv", dir_table))
    return deviation


def _voxel_maps(
    job: _Job, method: str, n_steps: int, group_stat: str, group_fwhm: float, precision: str = "float32"
) -> None:
    """Each patient's map along its own deviation direction, and second-level group maps."""
    ids, pidx, model, references = job.cohort.subject_ids, job.pidx, job.model, job.references
    settings: dict[str, Any] = {"method": method, "n_steps": n_steps, "precision": precision}
    maps = attribute(model, job.volumes[pidx], job.own[pidx], references, **settings)
    if job.brain is not None:
        maps = maps * job.brain
    by_subject = dict(zip([ids[i] for i in pidx], maps, strict=True))
    # a group map explains the group's shared direction (controls' mean -> the group's mean),
    # summarised as a second-level map: members' maps smoothed, then one-sample t (or mean)
    shared = {f"deviation_{name}": job.directions.toward(job.salient[mask]) for name, mask in job.groups.items()}
    titles = {f"deviation_{name}": f"{name}: the group's salient deviation" for name in job.groups}
    stems = group_attributions(
        model,
        job.volumes[pidx],
        {f"deviation_{name}": mask[pidx] for name, mask in job.groups.items()},
        shared,
        references,
        **settings,
    )
    along = {f"direction_{d.replace(':', '-')}_patients": (d, u) for d, u in job.directions.directions().items()}
    titles.update({stem: f"patients: {dname}" for stem, (dname, _) in along.items()})
    directional = (
        (stem, attribute(model, job.volumes[pidx], u, references, **settings)) for stem, (_, u) in along.items()
    )
    # a map outside the brain mask would be smoothed into the background: keep to the brain
    # (or, without a mask, to the voxels where the controls' mean is not zero)
    inside = job.brain if job.brain is not None else job.baseline[0].numpy() != 0
    job.index["group_maps"] = {}
    for stem, group in chain(stems, directional):  # one group in memory at a time
        group = group * inside
        stat = group_stat if len(group) >= 2 else "mean"  # no t from a single member
        if stat != group_stat:
            job.say(f"[yellow]note[/]: {stem} has 1 member: its map is the member's map, not a t-map")
        job.index["group_maps"][stem] = {"members": len(group), "statistic": stat, "fwhm_mm": group_fwhm}
        _write_map(
            group.mean(axis=0), f"{stem}_mean", job.to_img, job.labels, job.regions, job.out, job.index, False, ""
        )
        summary = group_statistic(group, job.pre.grid.affine, statistic=stat, fwhm_mm=group_fwhm, mask=inside)
        _write_map(
            summary,
            stem,
            job.to_img,
            job.labels,
            job.regions,
            job.out,
            job.index,
            job.figures,
            f"{titles[stem]} ({method}, {stat}, {group_fwhm:g} mm)",
            value="t" if stat == "t" else "attribution",
        )
        del group, summary
    for sid in sorted(job.wanted & set(by_subject)):
        map_path, regions_path = _subject_paths(job.out, job.cohort, sid)
        path = save_nifti(_in_input_space(job.to_img(by_subject[sid]), job.cohort, sid), map_path)
        table = region_table(by_subject[sid], job.labels, job.regions)
        sep = "\t" if regions_path.suffix == ".tsv" else ","
        job.index["subjects"][sid] = {
            "map": str(path),
            "regions": str(write_text(regions_path, table.to_csv(index=False, sep=sep))),
        }


def _ablation_maps(job: _Job) -> None:
    """Region ablation: how much each atlas region moves each patient, and each group, along its direction."""
    labels, regions, out, pidx = job.labels, job.regions, job.out, job.pidx
    region_ids = [int(r) for r in regions["id"] if (labels == r).any()]
    changes = region_rep_changes(job.model, job.volumes[pidx], job.baseline, labels, region_ids)
    effects = np.einsum("nrd,nd->nr", changes, job.own[pidx])  # each patient along its own direction
    voxels = np.array([(labels == r).sum() for r in region_ids])
    for name, mask in job.groups.items():
        rows = mask[pidx]  # a group along its shared direction, as the voxel maps
        table = ablation_table(changes[rows] @ job.directions.toward(job.salient[mask]), region_ids, regions, voxels)
        stem = safe_name("ablation_" + name)
        job.index["regions"][f"ablation_{name}"] = str(write_table(out / "regions" / f"{stem}.csv", table))
        painted = np.zeros(labels.shape, np.float32)
        for rid, value in zip(table["region_id"], table["mean_projection_drop"], strict=True):
            painted[labels == rid] = value
        job.index["maps"][f"ablation_{name}"] = str(save_nifti(job.to_img(painted), out / "maps" / f"{stem}.nii.gz"))
    for k, sid in enumerate(job.cohort.subject_ids[i] for i in pidx):
        if sid in job.wanted:
            table = ablation_table(effects[k : k + 1], region_ids, regions, voxels)
            job.index["subjects"][sid] = {
                "regions": str(write_table(out / "subjects" / f"{slug(sid)}_regions.csv", table))
            }


def _clinical_tables(job: _Job, run, n_permutations: int) -> None:
    """Associations of the clinical scores with the label-free salient variables, and with the
    common dimensions as a control (a leak is said); score scatter figures."""
    cohort, patient, salient, common = job.cohort, job.cohort.is_target, job.salient, job.common
    scores = cohort.table[list(cohort.score_columns)].reset_index(drop=True)
    if not len(scores.columns):
        return
    # score directions are fitted on the very scores tested here: their projections would be circular,
    # so only the label-free variables enter the table (score directions keep their CV R^2 above)
    variables = pd.DataFrame(
        {
            "deviation": job.deviation["deviation"],
            **{f"proj_{k}": salient @ u for k, u in job.directions.directions().items() if k.startswith("pc")},
            **{f"salient_{i}": salient[:, i] for i in range(salient.shape[1])},
            **{f"common_{i}": common[:, i] for i in range(common.shape[1])},
        }
    )
    confounds = cohort.table[[c for c in ("age", "sex", "site") if c in cohort.table.columns]].reset_index(drop=True)
    # two families of hypotheses: the salient variables, and the common dimensions as a control
    families = {v: "common" if v.startswith("common_") else "salient" for v in variables.columns}
    clinical = associate(
        scores[patient].reset_index(drop=True),
        variables[patient].reset_index(drop=True),
        confounds[patient].reset_index(drop=True),
        families=families,
        n_permutations=n_permutations,
    ).rename(columns={"family": "space"})
    job.index["tables"]["clinical"] = str(write_table(job.out / "clinical.csv", clinical))
    job.index["checks"]["common_dims_associated"] = _common_associations(clinical)
    leaking = {k: v for k, v in job.index["checks"]["common_dims_associated"].items() if v}
    if leaking:
        from rich.markup import escape

        weight = run.config.loss.lambda_independence
        job.say(
            "[yellow]warning[/]: common dimensions associate with patient-only scores (q < 0.05: "
            + escape(", ".join(f"{k}: {v} dims" for k, v in leaking.items()))
            + f"); the common space carries disease information. This run's leakage penalty is "
            f"lambda_independence = {weight:g}; train with "
            + ("a larger one" if weight > 0 else "the default (300)")
            + " to reduce it (docs/method.md)."
        )
    if job.figures:
        from sepclr_med.explain.figures import score_scatter

        for score in scores.columns:
            path = score_scatter(
                job.deviation["deviation"].to_numpy()[patient],
                pd.to_numeric(scores[score], errors="coerce").to_numpy()[patient],
                job.out / "figures" / f"scatter_{slug(score)}_deviation.png",
                "salient deviation",
                score,
            )
            job.index["figures"].append(str(path))


def _common_associations(clinical: pd.DataFrame, alpha: float = 0.05) -> dict[str, int]:
    """Per score, how many common dimensions associate with it at FDR ``alpha`` (ideally 0)."""
    common = clinical[clinical["space"] == "common"]
    return {str(score): int((part["q_value"] < alpha).sum()) for score, part in common.groupby("score")}


def _subject_paths(out: Path, cohort, subject_id: str) -> tuple[Path, Path]:
    """A subject's map and region table: BIDS-derivatives names when the cohort is BIDS."""
    if cohort.bids_root is None:
        name = slug(subject_id)
        return out / "subjects" / f"{name}_saliency.nii.gz", out / "subjects" / f"{name}_regions.csv"
    from sepclr_med.io.bids import derivative_path, write_dataset_description

    if not (out / "dataset_description.json").is_file():
        write_dataset_description(out, cohort.bids_root)
    image = cohort.table.loc[cohort.table["subject_id"] == subject_id, "image"].iloc[0]
    map_path = derivative_path(out, image, desc="salient", suffix="saliency", extension=".nii.gz")
    map_path.parent.mkdir(parents=True, exist_ok=True)
    return map_path, derivative_path(out, image, desc="salient", suffix="regions", extension=".tsv")


def _in_input_space(img, cohort, subject_id: str):
    """The map on the subject's own image grid when it differs from the run's grid."""
    from sepclr_med.io.nifti import load_image

    path = cohort.table.loc[cohort.table["subject_id"] == subject_id, "image"].iloc[0]
    source = load_image(path)
    if source.shape[:3] == img.shape and np.allclose(source.affine, img.affine, atol=1e-3):
        return img
    from nilearn.image import resample_to_img

    return resample_to_img(img, source, interpolation="continuous", force_resample=True, copy_header=True)


def _write_map(
    data: np.ndarray,
    stem: str,
    to_img,
    labels,
    regions,
    out: Path,
    index: dict,
    figures: bool,
    title: str,
    value: str = "attribution",
) -> None:
    img, name = to_img(data), safe_name(stem)  # the index keeps the readable stem, the file a safe one
    index["maps"][stem] = str(save_nifti(img, out / "maps" / f"{name}.nii.gz"))
    table = region_table(data, labels, regions, value=value)
    index["regions"][stem] = str(write_table(out / "regions" / f"{name}.csv", table))
    if figures:
        from sepclr_med.explain.figures import brain_figures, region_bars

        index["figures"] += [str(p) for p in brain_figures(img, out / "figures", name, title)]
        index["figures"].append(
            str(region_bars(table, out / "figures" / f"{name}_regions.png", title, value=f"mean_{value}"))
        )
