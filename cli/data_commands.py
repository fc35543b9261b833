"""``sepclr-med validate``, ``sepclr-med pipeline`` and ``sepclr-med demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from sepclr_med.cli.cohort_options import cohort_options, say_warnings
from sepclr_med.cli.errors import make_console, user_errors
from sepclr_med.cli.outputs import OVERWRITE, refuse_existing_output

COHORT_HELP = "Cohort CSV/TSV, a BIDS dataset folder, or its participants.tsv."


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@user_errors
@cohort_options()
def validate(
    cohort: Path = typer.Option(..., "--cohort", "-c", help=COHORT_HELP),
    scores: str = typer.Option(None, help="Comma-separated clinical-score columns (default: inferred)."),
    qc_out: Path = typer.Option(
        None,
        "--qc-out",
        help="Write the template-space measures (alignment.tsv) and a "
        "page of mid-slice montages of every scan, worst first (qc.html) here.",
    ),
    *,
    read_options: dict,
) -> None:
    """Check a cohort before any training; list every problem with file, row and column."""
    from rich.markup import escape

    from sepclr_med.io.image_checks import reference_grid
    from sepclr_med.io.reading import read_cohort

    allowed = bool(read_options.get("allow_unaligned"))
    # with --qc-out the page is written first, also when scans fail (it is where they are shown)
    from rich.progress import Progress

    with Progress(console=make_console(stderr=True), transient=True) as bar:
        task = bar.add_task("reading the cohort", total=None)
        result = read_cohort(
            cohort,
            scores=_split(scores),
            check_alignment=True,
            progress=lambda done, total, what: bar.update(task, completed=done, total=total, description=what),
            **{**read_options, "allow_unaligned": allowed or qc_out is not None},
        )
    console = make_console()
    if qc_out is not None:
        from sepclr_med.errors import CohortError
        from sepclr_med.io.image_checks import alignment_problems
        from sepclr_med.report.qc import write_qc

        paths = write_qc(result.alignment, result, qc_out)
        console.print(f"QC: {escape(str(paths['tsv']))}, {escape(str(paths['html']))}")
        failing = alignment_problems(result, result.alignment)
        if failing and not allowed:
            raise CohortError(failing)
    n_target = int(result.is_target.sum())
    console.print(
        f"[green]OK[/] {escape(str(cohort))}: {len(result)} subjects "
        f"({len(result) - n_target} {escape(result.control_label)}, {n_target} "
        f"{escape(result.patient_label)})"
    )
    console.print("  columns:")
    for column, role in result.roles.items():
        console.print(f"    {escape(column)}: {escape(role)}")
    console.print(f"  confounds: {', '.join(result.confound_columns) or 'none'}")
    console.print(f"  clinical scores: {', '.join(escape(c) for c in result.score_columns) or 'none'}")
    console.print(f"  reference grid: {reference_grid(result.table['image'].tolist()).describe()}")
    if result.alignment is not None:
        aligned = int(result.alignment["aligned"].sum())
        console.print(f"  template space: {aligned} of {len(result)} scans in MNI152 space")
    for problem in result.warnings:
        console.print(f"  [yellow]{escape(str(problem))}[/]")


@user_errors
@cohort_options()
def pipeline(
    cohort: Path = typer.Option(..., "--cohort", "-c", help=COHORT_HELP),
    epochs: int = typer.Option(2, min=1, help="Passes over the cohort (the first fills the cache)."),
    batch_size: int = typer.Option(16, min=4, help="Subjects per batch."),
    cache: str = typer.Option("memory", help="memory | disk | none"),
    cache_dir: Path = typer.Option(None, help="Disk cache root (for --cache disk)."),
    voxel_size: float = typer.Option(None, help="Resample to this isotropic voxel size (mm)."),
    *,
    read_options: dict,
) -> None:
    """Run the data pipeline (preprocess, cache, two views, stratified batches) and time it."""

    from sepclr_med.data.preprocess import PreprocessConfig
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.workflows.timing import timed_passes

    data = read_cohort(cohort, **read_options)
    say_warnings(data)
    timings = timed_passes(
        data,
        PreprocessConfig(voxel_size=voxel_size),
        epochs=epochs,
        batch_size=batch_size,
        cache=cache,
        cache_dir=cache_dir,
    )
    console = make_console()
    for t in timings:
        console.print(
            f"{t.label}: {t.seconds:.2f} s, {t.volumes_per_second:.1f} subjects/s, "
            f"{t.batches} batches of {t.batch_shape}"
        )


@user_errors
def demo(
    out: Path = typer.Option(Path("sepclr_demo"), "--out", "-o", help="Folder for everything the demo writes."),
    overwrite: bool = OVERWRITE,
    quick: bool = typer.Option(False, help="40 subjects, 2 epochs: a fast smoke run (numbers mean nothing)."),
    epochs: int = typer.Option(None, min=1, help="Training epochs (default 40; 2 with --quick)."),
) -> None:
    """End-to-end demo on embedded default data: simulate, validate, train, evaluate, explain, report."""
    refuse_existing_output(out, overwrite)

    from sepclr_med.workflows.demo import run_demo

    run_demo(out, quick=quick, epochs=epochs, console=make_console())


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(validate)
    app.command()(pipeline)
    app.command()(demo)
