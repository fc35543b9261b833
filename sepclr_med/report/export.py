"""``sepclr-med export``: a run directory into one shareable model file without per-subject rows.

The file (:mod:`sepclr_med.exported`) holds what ``embed`` and ``report`` need: the weights, the
configuration and preprocessing, the verdict, the controls' mean image and the report reference
(deviation distributions, patient clusters, control composites, the calibrated display
threshold). It holds no subject id, path, clinical score or single subject's scan.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from sepclr_med.atomic import atomic_path
from sepclr_med.exported import FORMAT, FORMAT_VERSION, MASK_MEMBER
from sepclr_med.report.report_reference import REPORT_STEPS, ReportReference

INTENDED_USE = (
    "Research use: place new subjects' brain MRI (registered to MNI152, preprocessed as the "
    "training cohort) in the common and salient spaces of this SepCLR model and write batch "
    "reports. Not validated for diagnosis or treatment decisions."
)


def export_model(run, out, *, device: str = "cpu", n_steps: int = REPORT_STEPS) -> dict:
    """Write ``out``, the exported model of ``run`` (atomically: a temporary file, then renamed).

    Parameters
    ----------
    run : Run
        A finished run directory whose training scans are still readable (the control
        composites and the display calibration are computed from them here).
    out : path-like
        The model file to write (e.g. ``model.sepclr``).
    device : str
        Where the calibration maps are computed.
    n_steps : int
        Attribution budget of the calibration (``report`` uses the same).

    Returns
    -------
    dict
        ``path``, ``model_id``, ``members`` (name -> SHA-256), ``notes`` (the reference's caveats).
    """
    from sepclr_med.errors import SepclrError
    from sepclr_med.report.composites import COMPOSITE_SIZE
    from sepclr_med.run import sha256
    from sepclr_med.training.distributed import resolve_device

    n_controls = len(run.scans("train", run.config.control_label))
    if n_controls < COMPOSITE_SIZE:
        raise SepclrError(
            f"{run.path}: {n_controls} training control(s) on record (inputs.tsv); the exported controls' mean "
            f"image would average fewer than {COMPOSITE_SIZE} people, close to a personal scan. Export a run "
            f"trained on at least {COMPOSITE_SIZE} controls."
        )
    dev = resolve_device(device)
    reference = ReportReference.from_run(run, run.load_model(dev), dev, n_steps)
    model_id = f"{Path(run.path).name}:{sha256(run.weights_path)[:10]}"
    members = _members(run, reference, model_id)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "members": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
    }
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        for name, data in members.items():
            archive.writestr(name, data)
    return {"path": str(out), "model_id": model_id, "members": manifest["members"], "notes": reference.notes}


def _members(run, reference: ReportReference, model_id: str) -> dict[str, bytes]:
    """Every member but the manifest, as bytes."""
    import dataclasses

    import torch

    config = run.config
    pre = config.preprocess
    members: dict[str, bytes] = {}
    if pre.mask not in ("mni152", "nonzero"):  # the user's mask travels in the archive, with a clean header
        members[MASK_MEMBER] = _clean_nifti(pre.mask)
        pre = dataclasses.replace(pre, mask=MASK_MEMBER, _mask_cache={})
    selection = dict(config.bids_selection or {})
    if selection.get("derivatives"):  # a location on the training machine: keep the folder's name only
        selection["derivatives"] = Path(selection["derivatives"]).name
    shared = dataclasses.replace(config, preprocess=pre, bids_selection=selection, cache_dir=None)
    weights = io.BytesIO()
    torch.save({k: v.cpu() for k, v in run.load_model("cpu").state_dict().items()}, weights)
    state = io.BytesIO()
    np.savez_compressed(state, **reference.state())  # type: ignore[arg-type]  # numpy stubs type **kwds as bool
    members["config.toml"] = shared.to_toml().encode()
    members["model.pt"] = weights.getvalue()
    members["versions.json"] = (run.path / "versions.json").read_bytes()
    members["verdict.json"] = json.dumps(run.verdict(), indent=2).encode()
    members["reference_control_mean.nii.gz"] = (run.path / "reference_control_mean.nii.gz").read_bytes()
    members["report_reference.npz"] = state.getvalue()
    members["MODEL_CARD.md"] = exported_card(run, reference, model_id, members).encode()
    return members


def _clean_nifti(path) -> bytes:
    """A NIfTI file's data and affine in a fresh header (no description, intent or file names)."""
    import gzip

    import nibabel as nib

    img: nib.Nifti1Image = nib.load(path)  # type: ignore[assignment]  # a mask is NIfTI
    clean = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
    return gzip.compress(clean.to_bytes(), mtime=0)


def exported_card(run, reference: ReportReference, model_id: str, members: dict[str, bytes]) -> str:
    """The model card: YAML metadata (intended use, training cohort summary, versions, hashes)
    then the run's own card, whose personal-data paragraph no longer applies."""
    import yaml

    metadata = {
        "model_id": model_id,
        "format": f"{FORMAT} {FORMAT_VERSION}",
        "intended_use": INTENDED_USE,
        "method": "SepCLR (Louiset, Duchesnay, Grigis, Gori, ICLR 2024, arXiv 2402.11928)",
        "training_cohort": _cohort_summary(run),
        "verdict": {k: run.verdict().get(k) for k in ("status", "val_auc", "epoch", "message")},
        "preprocessing": {
            "grid": run.config.preprocess.grid.describe(),
            "intensity": run.config.preprocess.intensity,
            "mask": run.config.preprocess.mask if run.config.preprocess.mask in ("mni152", "nonzero") else "file",
        },
        "report_reference": {
            "attribution": reference.describe_method(),
            "display_threshold": reference.display.describe() if reference.display else "not calibrated",
            "notes": reference.notes,
        },
        "versions": json.loads(members["versions.json"]),
        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()},
        "personal_data": "none: no subject id, path, clinical score, per-subject latent or single subject's scan",
    }
    return (
        "---\n"
        + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True, width=100)
        + "---\n\n# sepclr-med exported model\n\n"
        f"{INTENDED_USE}\n\n"
        "Use it in place of a run directory: `sepclr-med embed --run THIS_FILE --cohort NEW.csv` and "
        "`sepclr-med report --run THIS_FILE --cohort NEW.csv`.\n\n"
        "It holds the weights, the configuration and preprocessing, the training verdict, the training "
        "controls' mean image, anonymous reference distributions (sorted deviations, the training patients' "
        "2D positions in shuffled order), control composites (each the mean of 5 or more training controls, "
        "every training control in one) and the display threshold calibrated on held-out controls. It holds "
        "no per-subject row.\n"
        + (f"\n**Warning (training verdict)**: {run.verdict_warning()}\n" if run.verdict_warning() else "")
    )


def _cohort_summary(run) -> dict:
    """Counts per group and split; age mean and SD, and the number of sites, where recorded."""
    import pandas as pd

    split = pd.read_csv(run.path / "split.csv", dtype=str, keep_default_na=False)
    summary: dict = {
        "subjects": int(len(split)),
        "by_group_and_split": {f"{g}/{s}": int(n) for (g, s), n in split.groupby(["group", "split"]).size().items()},
    }
    inputs = run.path / "inputs.tsv"
    if inputs.is_file():
        table = pd.read_csv(inputs, sep="\t", keep_default_na=False, dtype=str)
        if "age" in table.columns:
            age = pd.to_numeric(table["age"], errors="coerce").dropna()
            if len(age) >= 5:
                summary["age"] = {"mean": round(float(age.mean()), 1), "sd": round(float(age.std()), 1)}
        if "site" in table.columns:
            summary["sites"] = int(table["site"].replace("", np.nan).dropna().nunique())
    return summary
