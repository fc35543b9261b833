"""Render a batch of subjects: one HTML page (and PDF) each, ``index.html`` and ``summary.csv``.

A subject that fails (unreadable image, ...) is listed, the others are still reported.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sepclr_med.atomic import atomic_path, write_table, write_text
from sepclr_med.errors import is_data_error
from sepclr_med.locking import locks_output
from sepclr_med.naming import slug
from sepclr_med.run import sha256

log = logging.getLogger(__name__)

CAVEAT = (
    "These figures compare one scan with the research cohort the model was trained on. They are "
    "not validated for diagnosis or treatment decisions and must be interpreted by a qualified "
    "clinician together with all other information."
)


REPORT_CHUNK = 16  # subjects whose volumes and maps are in memory at once
REFERENCE_SUBJECTS = {  # Reference.reference_split_ -> who the percentiles are among, for the pages
    "validation": "the run's validation subjects, not used to fit the encoders",
    "training": "all the run's subjects, training and validation",
}


def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("sepclr_med.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
    )


def _associations(explain_dir) -> dict[str, str]:
    if explain_dir is None or not (Path(explain_dir) / "clinical.csv").is_file():
        return {}
    table = pd.read_csv(Path(explain_dir) / "clinical.csv")
    rows = table[table["variable"] == "deviation"]
    return {
        r.score: f"standardised effect {r.adjusted_beta:.2f} (adjusted for confounds), q = {r.q_value:.3g}, "
        f"Pearson r = {r.pearson_r:.2f}, n = {r.n}"
        for r in rows.itertuples()
    }


def _quality(image_path: str, volume: np.ndarray, mask, pre, reference_mean: float) -> dict:
    import nibabel as nib

    from sepclr_med.io.grid import Grid
    from sepclr_med.io.nifti import load_image

    img = load_image(image_path)
    grid = Grid.of(img)
    codes = "".join(nib.aff2axcodes(img.affine))
    inside = volume[mask] if mask is not None else volume[volume != 0]
    warnings = []
    resampled = grid != pre.grid
    if codes != "RAS":
        warnings.append(f"scan stored as {codes}; reoriented to RAS before analysis")
    ratio = float(inside.mean()) / reference_mean if reference_mean else float("nan")
    if not 0.6 <= ratio <= 1.4:
        warnings.append(f"mean intensity is {ratio:.2f} x the training controls' mean: check the scan's preprocessing")
    from sepclr_med.io.image_checks import alignment_measures
    from sepclr_med.io.template_space import alignment_errors

    measures = alignment_measures(image_path)
    warnings += [f"not in MNI152 template space: {e}" for e in alignment_errors(measures)]
    return {
        "orientation": codes,
        "grid": grid.describe(),
        "template_space": f"correlation with the template {measures['template_r']:.2f}, residual rotation "
        f"{measures['rotation_deg']:.1f}°, shift {measures['shift_mm']:.1f} mm, "
        f"{100 * measures['outside_fraction']:.0f} % of the intensity outside the brain",
        "resampling": "resampled onto the model's grid" if resampled else "none (already on the model's grid)",
        "intensity": f"mean {inside.mean():.3f}, 1st-99th percentile {np.percentile(inside, 1):.3f}-"
        f"{np.percentile(inside, 99):.3f} (training controls' mean {reference_mean:.3f})",
        "warnings": warnings,
    }


REFERENCE_CACHE = "report_cache"  # in a run directory: references computed by earlier batches


def _report_reference(run, model, device, n_steps: int | None):
    """The run's :class:`~sepclr_med.report.report_reference.ReportReference` and its id: loaded
    from an exported model (calibrated at export), or, for a run directory, computed and
    calibrated with ``n_steps`` (default ``REPORT_STEPS``) once per weights, budget and kind of
    device, then read from ``RUN/report_cache/`` by later batches."""
    from sepclr_med.exported import FORMAT_VERSION, ExportedModel
    from sepclr_med.report.report_reference import REPORT_STEPS, ReportReference

    if isinstance(run, ExportedModel):
        return ReportReference.from_state(run.report_reference_state()), run.model_id
    digest = sha256(run.weights_path)
    steps = n_steps or REPORT_STEPS
    cached = Path(run.path) / REFERENCE_CACHE / f"reference-{digest[:16]}-{steps}-{device.type}-v{FORMAT_VERSION}.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as data:
            return ReportReference.from_state(dict(data)), f"{Path(run.path).name}:{digest[:10]}"
    basis = ReportReference.from_run(run, model, device, steps)
    _cache_reference(basis, cached)
    return basis, f"{Path(run.path).name}:{digest[:10]}"


def _cache_reference(basis, path: Path) -> None:
    """Keep a computed reference for the next batch (atomic); a read-only run directory only
    costs the next batch the same computation, so it is a warning, not an error."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **basis.state())
    try:
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
    except OSError as exc:
        log.warning("the report reference could not be kept in %s (%s): the next batch computes it again", path, exc)


def _group_of(row: pd.Series) -> str:
    """The subject's group as the cohort table gives it, or "not given"."""
    group = row.get("group")
    return "not given" if group is None or pd.isna(group) or str(group).strip() == "" else str(group)


@locks_output("out")
def make_reports(
    run,
    cohort_path,
    out,
    *,
    explain_dir=None,
    include: tuple[str, ...] = (),
    atlas: str = "AAL",
    n_steps: int | None = None,
    pdf: bool = True,
    full_paths: bool = False,
    progress=None,
    read_options: dict | None = None,
    device: str = "cpu",
    viewer: bool = True,
) -> dict:
    """Render reports for every subject of a cohort file (typically new patients).

    Parameters
    ----------
    run : Run or ExportedModel
        A trained run directory (:class:`~sepclr_med.run.Run`: the reference is computed from its
        files and training scans) or an exported model (:func:`~sepclr_med.exported.open_model`).
    cohort_path : path-like
        The batch's cohort table.
    out : path-like
        Output folder.
    explain_dir : path-like, optional
        An ``explain`` output folder whose ``clinical.csv`` gives the cohort's score associations.
    include : tuple of str
        Extra cohort columns to show in the identification block (none by default).
    atlas : str
        Packaged atlas for the region table.
    n_steps : int, optional
        Expected-gradient samples per subject (default ``REPORT_STEPS``). A run directory's display
        threshold is calibrated with the same budget; an exported model's was calibrated at export,
        and another value voids that calibration (the pages say so).
    pdf : bool
        Also write one PDF per subject.
    full_paths : bool
        Show the scan's full path (default: its file name only; paths often hold names or ids).
    progress : callable, optional
        ``progress(done, total, subject_id)``.
    read_options : dict, optional
        How to read the cohort (:meth:`~sepclr_med.run.Run.read_cohort`: group column, labels,
        BIDS selection); the run's group column and labels by default. A group column is optional.
    device : str
        ``cpu``, ``cuda`` or ``auto``: where the encoders run and the maps are computed.
    viewer : bool
        Also write each subject's interactive viewer page (offline, linked from its page).

    Returns
    -------
    dict
        ``rows`` (reported subjects), ``failures`` (subject_id, error), ``seconds_per_page``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cohort, batch, failures = _reportable(run, cohort_path, read_options)
    reporter = _Reporter.start(run, out, atlas, device, explain_dir, include, full_paths, pdf, n_steps)
    reporter.viewer = viewer
    if progress is not None:
        progress(0, len(batch), "the reference is ready")
    rows, timings = [], []
    positions = np.arange(len(batch))
    for first in range(0, len(batch), REPORT_CHUNK):  # bounded memory: a chunk of subjects at a time
        chunk = batch.subset((positions >= first) & (positions < first + REPORT_CHUNK))
        chunk, (volumes, placed, maps) = reporter.process_chunk(chunk, failures)
        for k, sid in enumerate(chunk.subject_ids):
            tic = time.perf_counter()
            try:
                rows.append(reporter.page(chunk, k, volumes[k, 0].numpy(), placed.iloc[k], maps[k]))
                timings.append(time.perf_counter() - tic)
            except Exception as exc:
                if not is_data_error(exc):
                    raise  # a bug stops the batch; it is not one subject's failure
                failures.append({"subject_id": sid, "error": f"{type(exc).__name__}: {exc}"})
            if progress is not None:
                progress(first + k + 1, len(batch), sid)
    rows.sort(key=lambda r: -r["deviation"])
    reporter.write_index(rows, failures, cohort_path, [str(w) for w in cohort.warnings])
    return {
        "rows": rows,
        "failures": failures,
        "index": str(out / "index.html"),
        "warning": reporter.meta["verdict_warning"],
        "notes": list(reporter.meta["reference_notes"]),
        "cohort_warnings": [str(w) for w in cohort.warnings],
        "seconds_per_page": float(np.mean(timings)) if timings else float("nan"),
    }


def _reportable(run, cohort_path, read_options: dict | None):
    """The cohort, the subjects whose scans can be reported, and why each other one cannot."""
    from sepclr_med.io.image_checks import alignment_measures, check_image
    from sepclr_med.io.template_space import alignment_errors

    cohort = run.read_cohort(
        cohort_path,
        check_images=False,
        min_per_group=0,
        require_group=False,
        **{k: v for k, v in (read_options or {}).items() if k != "allow_unaligned"},
    )
    failures, ok = [], []
    allow_unaligned = run.config.allow_unaligned or bool((read_options or {}).get("allow_unaligned"))
    for i, (sid, path) in enumerate(zip(cohort.subject_ids, cohort.table["image"], strict=True)):
        errors, _ = check_image(path) if Path(path).is_file() else ([f"image file not found: {path}"], None)
        if not errors and not allow_unaligned:
            errors = [
                f"not in MNI152 template space: {e} (--allow-unaligned reports it anyway)"
                for e in alignment_errors(alignment_measures(path))
            ]
        (failures.append({"subject_id": sid, "error": "; ".join(errors)}) if errors else ok.append(i))
    return cohort, cohort.subset(np.isin(np.arange(len(cohort)), ok)), failures


@dataclass
class _Reporter:
    """What every page of one batch shares: the model, the training reference, the atlas, the
    page metadata and templates, and the rendering options."""

    out: Path
    pre: Any
    device: Any
    model: Any
    basis: Any  # ReportReference
    mask: np.ndarray | None
    labels_atlas: Any
    meta: dict
    env: Any
    associations: Any
    include: tuple[str, ...]
    full_paths: bool
    pdf: bool
    n_steps: int
    reference_mean: float
    viewer: bool = True

    @classmethod
    def start(
        cls, run, out: Path, atlas: str, device: str, explain_dir, include, full_paths: bool, pdf: bool,
        n_steps: int | None,
    ) -> _Reporter:  # fmt: skip
        from sepclr_med import __version__
        from sepclr_med.explain.pipeline import load_atlas
        from sepclr_med.report.reference import SMALL_REFERENCE
        from sepclr_med.training.distributed import resolve_device

        pre = run.config.preprocess
        dev = resolve_device(device)
        model = run.load_model(dev)
        basis, run_id = _report_reference(run, model, dev, n_steps)
        steps = n_steps or basis.n_steps
        notes = list(basis.notes)
        if basis.display is not None and steps != basis.n_steps:
            notes.append(
                f"the display threshold was calibrated with {basis.n_steps} attribution steps and these maps use "
                f"{steps}: the stated false-positive rate does not hold"
            )
        reference = basis.reference
        if reference.reference_split_ == "training":
            notes.append(
                "percentiles are among all the run's subjects, most of whom trained the encoders (the run has "
                "fewer than 5 validation controls or patients): trained-on subjects sit closer to the controls "
                "than new scans do, so a new scan's percentile overstates how unusual it is. Train on more "
                "subjects or with a larger --val-fraction"
            )
        labels_atlas = load_atlas(atlas, run.reference_control_mean())
        mask = pre.mask_array() if pre.mask != "nonzero" else None
        meta = {
            "version": __version__,
            "run_id": run_id,
            "reference_split": REFERENCE_SUBJECTS[reference.reference_split_],
            "n_reference_controls": len(reference.control_deviation_),
            "n_reference_patients": len(reference.patient_deviation_),
            "generated": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "caveat": CAVEAT,
            "atlas": labels_atlas.name,
            "verdict_warning": run.verdict_warning(),
            "verdict_status": run.verdict().get("status", "unchecked"),
            "small_reference": SMALL_REFERENCE,
            "attribution": basis.describe_method(steps),
            "display": basis.display.describe() if basis.display is not None else None,
            "reference_notes": notes,
        }
        inside = basis.control_mean[mask] if mask is not None else basis.control_mean
        return cls(
            out, pre, dev, model, basis, mask, labels_atlas, meta, _environment(), _associations(explain_dir),
            include, full_paths, pdf, steps, float(inside.mean()),
        )  # fmt: skip

    @property
    def reference(self):
        """The run's :class:`~sepclr_med.report.reference.Reference`."""
        return self.basis.reference

    def process(self, sub):
        """Volumes, placement and maps of a sub-cohort (encoders batched, maps seeded per subject)."""
        import torch

        from sepclr_med.data import cached_dataset

        data = cached_dataset(sub.records(), self.pre, cache="none")
        volumes = torch.stack([data[i]["image"] for i in range(len(data))]).float()
        with torch.no_grad():
            salient = self.model.salient_encoder(volumes.to(self.device)).cpu().numpy()
        own = self.reference.directions_.deviation_directions(salient)
        maps = self.basis.attribute(self.model, volumes, own, list(sub.subject_ids), self.n_steps)
        return volumes, self.reference.place(salient), maps * self.mask if self.mask is not None else maps

    def process_chunk(self, chunk, failures: list[dict]):
        """:meth:`process` of a chunk; when it fails, subject by subject, the failing ones listed."""
        import torch

        try:
            return chunk, self.process(chunk)
        except Exception as exc:  # find the subject that breaks the chunk; report the others
            if not is_data_error(exc):
                raise
            parts, keep = [], []
            for k, sid in enumerate(chunk.subject_ids):
                try:
                    parts.append(self.process(chunk.subset(np.arange(len(chunk)) == k)))
                    keep.append(k)
                except Exception as exc:
                    if not is_data_error(exc):
                        raise
                    failures.append({"subject_id": sid, "error": f"{type(exc).__name__}: {exc}"})
            chunk = chunk.subset(np.isin(np.arange(len(chunk)), keep))
            volumes = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0)
            placed = pd.concat([p[1] for p in parts], ignore_index=True) if parts else pd.DataFrame()
            maps = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
            return chunk, (volumes, placed, maps)

    def page(self, chunk, k: int, volume: np.ndarray, p: pd.Series, attribution: np.ndarray) -> dict:
        """Write subject ``k`` of ``chunk``'s HTML (and PDF) page; return its index row."""
        from sepclr_med.explain.regions import region_table
        from sepclr_med.io.region_names import readable_region_name
        from sepclr_med.report import figures

        row, sid, reference = chunk.table.iloc[k], chunk.subject_ids[k], self.reference
        shown, threshold = self._display(attribution)
        overlays = figures.brain_overlays(
            self.pre.grid.image(shown), scan=self.pre.grid.image(volume), threshold=threshold,
            calibrated=self.basis.display is not None,
        )  # fmt: skip
        peak = float(np.abs(shown).max()) / threshold if threshold > 0 else float("nan")
        page = f"subject-{slug(sid)}.html"
        viewer = f"subject-{slug(sid)}-viewer.html" if self.viewer else None
        if viewer is not None:
            write_text(
                self.out / viewer,
                figures.interactive_viewer(
                    self.pre.grid.image(shown), self.pre.grid.image(volume), threshold, page,
                    calibrated=self.basis.display is not None, warning=self.meta["verdict_warning"],
                    title=f"Subject {sid}: salient deviation map", lines=self._viewer_lines(row, peak),
                ),
            )  # fmt: skip
        s = {
            "subject_id": sid,
            "group": _group_of(row),
            "image": row["image"] if self.full_paths else Path(row["image"]).name,
            **p.to_dict(),
            "map_peak": peak,
            "map_lit": bool(peak >= 1.0),
            "viewer": viewer,
            "extra": {c: row[c] for c in self.include if c in chunk.table.columns},
            "scores": {c: row[c] for c in chunk.score_columns if pd.notna(row[c])},
            "deviation_png": figures.deviation_plot(
                reference.control_deviation_, reference.patient_deviation_, p["deviation"]
            ),
            "position_png": figures.position_plot(
                reference.patient_points_, reference.patient_clusters_, (p["x"], p["y"])
            ),
            "glass_png": overlays["glass"],
            "slices_png": overlays["slices"],
            "scan_png": overlays["scan"],
            "input_png": figures.input_picture(row["image"]),
            "regions": [
                {**r, "label": readable_region_name(r["name"])}
                for r in region_table(attribution, self.labels_atlas.data, self.labels_atlas.regions)
                .head(8)
                .to_dict("records")
            ],
            "quality": _quality(row["image"], volume, self.mask, self.pre, self.reference_mean),
        }
        html = self.env.get_template("subject.html.j2").render(s=s, associations=self.associations, **self.meta)
        write_text(self.out / page, html)
        if self.pdf:
            from sepclr_med.report.pdf import subject_pdf

            subject_pdf(s, self.meta, self.out / f"subject-{slug(sid)}.pdf")
        return {
            "subject_id": sid,
            "group": s["group"],
            "page": page,
            "deviation": float(p["deviation"]),
            "percentile_controls": float(p["percentile_controls"]),
            "percentile_patients": float(p["percentile_patients"]),
            "cluster": p["cluster"],
            "top_region": s["regions"][0]["label"] if s["regions"] else "",
            "map_peak": peak,
            "map_lit": s["map_lit"],
            "warnings": len(s["quality"]["warnings"]),
        }

    def _viewer_lines(self, row: pd.Series, peak: float) -> tuple[str, ...]:
        """The viewer page's sentences: group, model, what a colour means and whether this map has any."""
        from sepclr_med.report import figures

        lines = [
            f"Group: {_group_of(row)} · model {self.meta['run_id']} · training verdict: {self.meta['verdict_status']}"
        ]
        lines.append(figures.map_sentence(peak >= 1.0, peak, self.meta["display"]))
        return (*lines, *(f"Note: {note}" for note in self.meta["reference_notes"]))

    def _display(self, attribution: np.ndarray) -> tuple[np.ndarray, float]:
        """The map as drawn and its threshold: smoothed, in units of the calibrated threshold (1),
        or, with no calibration, the raw map and its own 90th percentile."""
        from sepclr_med.explain.figures import display_threshold

        display = self.basis.display
        if display is None:
            return attribution, display_threshold(attribution)
        return display.transform(attribution[None], self.mask)[0], 1.0

    def write_index(
        self, rows: list[dict], failures: list[dict], cohort_path, cohort_warnings: list[str] | None = None
    ) -> None:
        """``summary.csv`` (every subject, failures included) and the sortable ``index.html``,
        which lists the cohort's warnings (dropped rows, resampled grids ...) too."""
        summary = pd.DataFrame(
            rows + [{"subject_id": f["subject_id"], "status": "failed: " + f["error"]} for f in failures]
        )
        if "status" not in summary.columns:
            summary["status"] = "ok"
        summary["status"] = summary["status"].fillna("ok")
        write_table(self.out / "summary.csv", summary)
        cohort = Path(cohort_path).name if not self.full_paths else str(cohort_path)
        html = self.env.get_template("index.html.j2").render(
            rows=rows, failures=failures, cohort=cohort, cohort_warnings=cohort_warnings or [], **self.meta
        )
        write_text(self.out / "index.html", html)
