"""A cohort of raw scans into a BIDS-derivatives dataset of template-space images, resumable.

For each subject (``OUT/sub-X[/ses-Y]/anat/``):

* ``..._space-<template>_desc-preproc_T1w.nii.gz``: the scan in template space (brain median 1);
* ``..._space-<template>_desc-brain_mask.nii.gz``: its brain mask;
* ``..._from-T1w_to-<template>_mode-image_xfm.mat`` (and ``..._xfm.nii.gz``, the SyN warp);
* ``..._space-<template>_desc-preproc_T1w.json``: input digest, settings, similarity, seconds.
  Written last: a subject is finished when its sidecar is there, the outputs exist and the
  input digest and settings match; a rerun skips it.

Then ``OUT/cohort.csv``: the cohort's columns with ``image`` pointing at the new images (only the
subjects that succeeded), and ``dataset_description.json``. Every file is written under a temporary
name and renamed; a failing subject does not stop the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from sepclr_med.errors import SepclrError
from sepclr_med.io.cohort import Cohort
from sepclr_med.registration.scan import RegistrationConfig, register_scan
from sepclr_med.registration.template import Template

WORK_PREFIX = ".sepclr-reg-"  # a subject's ANTs work folder, beside its outputs


def subject_stem(subject_id: str, image: str) -> tuple[Path, str]:
    """``(folder, stem)`` of a subject's outputs, relative to the dataset root.

    BIDS entities of the input name (``sub``, ``ses``, ``acq``, ``run``) are kept; a file name
    without them is named from the subject id, letters and digits only.
    """
    from sepclr_med.io.bids import parse_entities

    entities = parse_entities(Path(image).name)
    if "sub" not in entities:
        label = re.sub(r"[^A-Za-z0-9]", "", str(subject_id).removeprefix("sub-"))
        if not label:
            raise SepclrError(f"subject {subject_id!r}: no letter or digit to name its outputs")
        entities = {"sub": label}
    kept = [(k, entities[k]) for k in ("sub", "ses", "acq", "run") if k in entities]
    bad = [f"{k}-{v}" for k, v in kept if not re.fullmatch(r"[A-Za-z0-9]+", v)]
    if bad:
        raise SepclrError(f"{image}: entities {bad} cannot name an output file")
    folder = Path(f"sub-{entities['sub']}") / (f"ses-{entities['ses']}" if "ses" in entities else "") / "anat"
    return folder, "_".join(f"{k}-{v}" for k, v in kept)


def output_paths(
    out: Path, subject_id: str, image: str, template: Template, config: RegistrationConfig
) -> dict[str, Path]:
    """Every file one subject gets (see the module docstring)."""
    folder, stem = subject_stem(subject_id, image)
    space = template.space
    paths = {
        "image": out / folder / f"{stem}_space-{space}_desc-preproc_T1w.nii.gz",
        "mask": out / folder / f"{stem}_space-{space}_desc-brain_mask.nii.gz",
        "affine": out / folder / f"{stem}_from-T1w_to-{space}_mode-image_xfm.mat",
        "sidecar": out / folder / f"{stem}_space-{space}_desc-preproc_T1w.json",
    }
    if config.transform == "syn":
        paths["warp"] = out / folder / f"{stem}_from-T1w_to-{space}_mode-image_xfm.nii.gz"
    if config.tissue == "gm":
        desc = "_desc-modulated" if config.transform == "syn" else ""
        paths["gm"] = out / folder / f"{stem}_space-{space}_label-GM{desc}_probseg.nii.gz"
    return paths


def model_input(paths: dict[str, Path]) -> Path:
    """The file ``cohort.csv`` points at: the grey-matter map when made, else the T1w."""
    return paths.get("gm", paths["image"])


def is_finished(paths: dict[str, Path], digest: str, config: RegistrationConfig) -> bool:
    """True when the subject's outputs exist and were made from this input with these settings."""
    try:
        record = json.loads(paths["sidecar"].read_text())
    except (OSError, ValueError):
        return False
    return (
        record.get("input_sha256") == digest
        and record.get("settings") == config.to_dict()
        and all(p.is_file() for k, p in paths.items() if k != "sidecar")
    )


def process_subject(subject_id: str, image: str, out: Path, config: RegistrationConfig) -> dict:
    """Register one subject and write its files; returns its sidecar record (``skipped`` when its
    outputs were already there)."""
    from sepclr_med import __version__
    from sepclr_med.atomic import save_nifti, write_text
    from sepclr_med.io.image_checks import alignment_measures, check_image
    from sepclr_med.io.template_space import alignment_errors

    errors, _ = check_image(image) if Path(image).is_file() else ([f"image file not found: {image}"], None)
    if errors:
        raise SepclrError("; ".join(errors))
    template = Template(config.resolution)
    paths = output_paths(out, subject_id, image, template, config)
    with open(image, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if is_finished(paths, digest, config):
        return {**json.loads(paths["sidecar"].read_text()), "skipped": True}
    _clear_leftovers(paths["image"].parent)
    with tempfile.TemporaryDirectory(prefix=WORK_PREFIX, dir=paths["image"].parent) as work:
        result = register_scan(image, template, config, Path(work))
        save_nifti(result.image, paths["image"])
        save_nifti(result.brain_mask, paths["mask"])
        if result.grey_matter is not None:
            save_nifti(result.grey_matter, paths["gm"])
        for source in result.transforms:
            key = (
                "affine"
                if source.suffix == ".mat"
                else "warp"
                if "Warp" in source.name and "Inverse" not in source.name
                else None
            )
            if key is not None:
                _move_atomically(source, paths[key])
    record = {
        "template_space_errors": alignment_errors(alignment_measures(model_input(paths))),
        "subject_id": subject_id,
        "source": str(image),
        "input_sha256": digest,
        "settings": config.to_dict(),
        "space": template.space,
        "template_to_scan": np.round(result.template_to_scan, 6).tolist(),
        "similarity": round(result.similarity, 4),
        "seconds": round(result.seconds, 2),
        "sepclr_med": __version__,
    }
    write_text(paths["sidecar"], json.dumps(record, indent=2) + "\n")  # last: marks the subject finished
    return record


def _clear_leftovers(folder: Path) -> None:
    """Remove what a killed earlier run left in a subject's folder (its ANTs work folder, temporary
    files of interrupted writes); the output lock makes this process the folder's only writer."""
    from sepclr_med.locking import remove_orphan_temps

    folder.mkdir(parents=True, exist_ok=True)
    for work in folder.glob(WORK_PREFIX + "*"):
        shutil.rmtree(work, ignore_errors=True)
    remove_orphan_temps(folder)


def _move_atomically(source: Path, target: Path) -> None:
    from sepclr_med.atomic import atomic_path

    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def preprocess_cohort(
    cohort: Cohort,
    out: str | os.PathLike,
    config: RegistrationConfig | None = None,
    *,
    jobs: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict:
    """Every subject of ``cohort`` into template space under ``out`` (module docstring).

    Parameters
    ----------
    cohort : Cohort
        Raw scans (any orientation and voxel size).
    out : path-like
        The derivatives dataset to write (created; a rerun resumes it).
    config : RegistrationConfig, optional
        Registration settings (affine, 1.5 mm by default).
    jobs : int
        Subjects registered at once, each in its own process with one ITK thread.
    progress : callable, optional
        ``progress(done, total, subject_id)`` after each subject.

    Returns
    -------
    dict
        ``records`` (one per registered subject, ``skipped`` for those already done), ``failures``
        (``subject_id``, ``error``: the scans that could not be registered, and those whose output
        fails the template-space check of ``validate``, which are left out of ``cohort.csv``) and
        ``cohort`` (the path of the new ``cohort.csv``, or None when no subject succeeded).
    """
    from sepclr_med.locking import output_lock

    config = config or RegistrationConfig()
    out = Path(out)
    subjects = list(zip(cohort.subject_ids, cohort.table["image"], strict=True))
    _refuse_name_clashes(out, subjects, config)
    records, failures = {}, []
    with output_lock(out):
        for done, (sid, outcome) in enumerate(_run_all(subjects, out, config, jobs), start=1):
            if isinstance(outcome, BaseException):
                failures.append({"subject_id": sid, "error": f"{type(outcome).__name__}: {outcome}"})
            else:
                records[sid] = outcome
            if not isinstance(outcome, BaseException) and outcome["template_space_errors"]:
                why = "; ".join(outcome["template_space_errors"])
                failures.append(
                    {"subject_id": sid, "error": f"registered, but the output fails the template-space check: {why}"}
                )
            if progress is not None:
                progress(done, len(subjects), sid)
        table = _write_outputs(cohort, out, records, config)
    return {"records": [records[s] for s, _ in subjects if s in records], "failures": failures, "cohort": table}


def _refuse_name_clashes(out: Path, subjects, config: RegistrationConfig) -> None:
    seen: dict[Path, str] = {}
    template = Template(config.resolution)
    for sid, image in subjects:
        target = output_paths(out, sid, image, template, config)["image"]
        if target in seen:
            raise SepclrError(f"subjects {seen[target]!r} and {sid!r} would write the same file {target}")
        seen[target] = sid


def _run_all(subjects, out: Path, config: RegistrationConfig, jobs: int):
    """``(subject_id, record or exception)`` as each subject finishes."""
    if jobs <= 1:
        for sid, image in subjects:
            yield sid, _guarded(sid, image, out, config)
        return
    with ProcessPoolExecutor(max_workers=jobs, initializer=_one_thread) as pool:
        futures = {pool.submit(_guarded, sid, image, out, config): sid for sid, image in subjects}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _one_thread() -> None:
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"


def _guarded(sid: str, image: str, out: Path, config: RegistrationConfig):
    """:func:`process_subject`, a subject's failure returned instead of raised.

    A subject fails for its data (unreadable file, values that are not a scan, a refused input)
    or when ITK cannot register it (ITK raises ``RuntimeError``); anything else is a bug and
    stops the batch.
    """
    from sepclr_med.errors import is_data_error

    try:
        return process_subject(sid, image, out, config)
    except Exception as exc:
        if is_data_error(exc) or isinstance(exc, RuntimeError):
            return exc
        raise


def _write_outputs(cohort: Cohort, out: Path, records: dict, config: RegistrationConfig) -> Path | None:
    """``cohort.csv`` of the subjects that succeeded and ``dataset_description.json``."""
    from sepclr_med import __version__
    from sepclr_med.atomic import write_table, write_text

    template = Template(config.resolution)
    description = {
        "Name": "sepclr-med preprocess",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {"Name": "sepclr-med", "Version": __version__, "Description": f"preprocess {config.to_dict()}"}
        ],
        "SourceDatasets": [{"URL": str(cohort.source)}],
        "Template": template.space,
    }
    write_text(out / "dataset_description.json", json.dumps(description, indent=2) + "\n")
    if not records:
        return None
    good = [sid for sid, r in records.items() if not r["template_space_errors"]]  # a misregistered scan trains nothing
    if not good:
        return None
    table = cohort.table[cohort.table["subject_id"].isin(good)].copy()
    table["image"] = [
        str(model_input(output_paths(out, sid, img, template, config)).relative_to(out))
        for sid, img in zip(table["subject_id"], table["image"], strict=True)
    ]
    has_group = cohort.group_column in cohort.roles
    columns = [
        "subject_id",
        "image",
        *(["group"] if has_group else []),
        *cohort.confound_columns,
        *cohort.score_columns,
    ]
    table = table[columns].rename(columns={"group": cohort.group_column})
    return write_table(out / "cohort.csv", table)
