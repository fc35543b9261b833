"""The template-space QC of a cohort: ``alignment.tsv`` and ``qc.html`` (mid-slice montages of
every scan on the MNI152 grid with the template brain's outline, worst first).

Written by ``sepclr-med validate --qc-out DIR``; the measures are those of
:func:`sepclr_med.io.image_checks.check_alignment`.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from sepclr_med.atomic import write_table, write_text

MEASURES = ("template_r", "rotation_deg", "shift_mm", "outside_fraction", "centroid_offset_mm")


def worst_first(measures: pd.DataFrame) -> pd.DataFrame:
    """Failing scans first, then by increasing correlation with the template."""
    order = measures.assign(_failed=~measures["aligned"].astype(bool), _r=measures["template_r"].fillna(-1.0))
    return order.sort_values(["_failed", "_r"], ascending=[False, True]).drop(columns=["_failed", "_r"])


@lru_cache(maxsize=1)
def _template_mask():
    from nilearn.datasets import load_mni152_brain_mask

    return load_mni152_brain_mask(resolution=2)


def montage_png(image_path: str) -> str:
    """Axial, coronal and sagittal mid-slices of the scan resampled onto the 2 mm MNI152 grid,
    with the template brain mask's outline in red (a ``data:`` URI)."""
    import nibabel as nib
    from nilearn.image import resample_to_img

    from sepclr_med.report.figures import png_data_uri, pyplot

    mask = _template_mask()
    img = resample_to_img(nib.load(image_path), mask, interpolation="continuous", force_resample=True, copy_header=True)
    data, outline = np.asarray(img.dataobj, dtype=np.float32), np.asarray(mask.dataobj) > 0
    top = np.percentile(data[data > 0], 99) if (data > 0).any() else 1.0
    centre = [s // 2 for s in data.shape]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(6.0, 2.1), dpi=60)
    for axis, ax in enumerate(axes):
        take = [slice(None)] * 3
        take[2 - axis] = centre[2 - axis]
        ax.imshow(np.rot90(data[tuple(take)]), cmap="gray", vmin=0, vmax=top)
        ax.contour(np.rot90(outline[tuple(take)].astype(float)), levels=[0.5], colors="red", linewidths=0.6)
        ax.set_axis_off()
    fig.subplots_adjust(0, 0, 1, 1, 0.02, 0)
    return png_data_uri(fig)


def _before(registration: dict | None, subject_id: str) -> dict:
    """The input's montage and the registration similarity of a preprocessed subject."""
    if registration is None or subject_id not in registration:
        return {}
    entry = registration[subject_id]
    return {"before_png": montage_png(entry["source"]), "similarity": float(entry["similarity"])}


def write_qc(measures: pd.DataFrame, cohort, out: str | Path, registration: dict | None = None) -> dict[str, Path]:
    """Write ``alignment.tsv`` and ``qc.html`` into ``out`` (created); return their paths.

    Parameters
    ----------
    measures : pandas.DataFrame
        ``Cohort.alignment``: ``subject_id``, the measures, ``aligned``, ``problem``.
    cohort : Cohort
        The cohort the measures belong to (for the image paths).
    out : path-like
        Output folder.
    registration : dict, optional
        ``subject_id -> {"source": raw scan path, "similarity": float}`` from ``preprocess``: the
        page then shows the input before registration beside the output, and the similarity.
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    from sepclr_med import __version__
    from sepclr_med.errors import SepclrError
    from sepclr_med.io.template_space import (
        MAX_CENTROID_OFFSET_MM,
        MAX_OUTSIDE_FRACTION,
        MAX_ROTATION_DEG,
        MAX_SHIFT_MM,
        MIN_TEMPLATE_R,
    )

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SepclrError(f"--qc-out {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepclrError(f"--qc-out {out}: cannot create the folder ({exc.strerror})") from None
    ordered = worst_first(measures)
    tsv = write_table(out / "alignment.tsv", ordered, float_format="%.4g")
    images = dict(zip(cohort.subject_ids, cohort.table["image"], strict=True))
    rows = [
        {
            "subject_id": r["subject_id"],
            "aligned": bool(r["aligned"]),
            "problem": r["problem"],
            "figures": {m: r[m] for m in MEASURES if m in r},
            "png": montage_png(images[r["subject_id"]]),
            **_before(registration, r["subject_id"]),
        }
        for _, r in ordered.iterrows()
    ]
    env = Environment(
        loader=PackageLoader("sepclr_med.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
    )
    thresholds = {
        "template_r": f"≥ {MIN_TEMPLATE_R:g}",
        "rotation_deg": f"≤ {MAX_ROTATION_DEG:g}°",
        "shift_mm": f"≤ {MAX_SHIFT_MM:g} mm",
        "outside_fraction": f"≤ {MAX_OUTSIDE_FRACTION:g}",
        "centroid_offset_mm": f"≤ {MAX_CENTROID_OFFSET_MM:g} mm",
    }
    html = env.get_template("qc.html.j2").render(
        rows=rows,
        thresholds=thresholds,
        source=str(cohort.source),
        n_failed=sum(not r["aligned"] for r in rows),
        registered=registration is not None,
        version=__version__,
        generated=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    return {"tsv": tsv, "html": write_text(out / "qc.html", html)}


def write_registration_qc(raw, result: dict, out: str | Path) -> Path:
    """``qc.html`` and ``alignment.tsv`` of a ``preprocess`` batch, every registered subject
    included (those whose output fails the template-space check too: they are shown first).

    Parameters
    ----------
    raw : Cohort
        The cohort of raw scans that was preprocessed.
    result : dict
        What :func:`sepclr_med.registration.batch.preprocess_cohort` returned.
    out : path-like
        The derivatives folder it wrote.
    """
    import dataclasses

    from sepclr_med.io.image_checks import check_alignment
    from sepclr_med.registration.batch import model_input, output_paths
    from sepclr_med.registration.scan import RegistrationConfig
    from sepclr_med.registration.template import Template

    records = {r["subject_id"]: r for r in result["records"]}
    table = raw.table[raw.table["subject_id"].isin(list(records))].copy()
    config = RegistrationConfig(**next(iter(records.values()))["settings"])
    template = Template(config.resolution)
    table["image"] = [
        str(model_input(output_paths(Path(out), sid, img, template, config)))
        for sid, img in zip(table["subject_id"], table["image"], strict=True)
    ]
    registered = dataclasses.replace(raw, table=table.reset_index(drop=True), warnings=[])
    measures, _ = check_alignment(registered, allow_unaligned=True)
    sources = {sid: {"source": r["source"], "similarity": r["similarity"]} for sid, r in records.items()}
    return write_qc(measures, registered, out, registration=sources)["html"]
