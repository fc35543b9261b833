"""``sepclr-med preprocess``."""

from __future__ import annotations

from pathlib import Path

import typer

from sepclr_med.cli.cohort_options import cohort_options, say_warnings
from sepclr_med.cli.errors import make_console, user_errors


@user_errors
@cohort_options()
def preprocess(
    cohort: Path = typer.Option(..., "--cohort", "-c", help="Raw T1w scans: a cohort CSV/TSV or a BIDS dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="The BIDS-derivatives dataset to write (a rerun resumes it)."),
    transform: str = typer.Option("affine", help="affine (rigid + affine) | syn (then ANTs SyN)."),
    tissue: str = typer.Option(
        "t1", help="t1 | gm: also grey-matter maps (modulated with syn); cohort.csv points at them."
    ),
    voxel_size: float = typer.Option(1.5, "--voxel-size", help="Voxel size (mm) of the template grid."),
    no_n4: bool = typer.Option(False, "--no-n4", help="Skip N4 bias-field correction."),
    jobs: int = typer.Option(1, min=1, help="Subjects registered at once (one process and one thread each)."),
    seed: int = typer.Option(0, help="ANTs' random seed (metric sampling)."),
    *,
    read_options: dict,
) -> None:
    """Raw T1w scans into MNI152 template space (N4, registration, skull stripping) with ANTsPy."""
    from rich.markup import escape
    from rich.progress import Progress

    from sepclr_med.io.reading import read_cohort
    from sepclr_med.registration import RegistrationConfig
    from sepclr_med.registration.batch import preprocess_cohort
    from sepclr_med.report.qc import write_registration_qc

    console = make_console()
    config = RegistrationConfig(transform=transform, resolution=voxel_size, n4=not no_n4, seed=seed, tissue=tissue)
    read_options = {k: v for k, v in read_options.items() if k != "allow_unaligned"}  # raw scans are not aligned
    # images are checked one by one in the batch: a broken scan fails alone instead of stopping all
    data = read_cohort(
        cohort, check_alignment=False, check_images=False, min_per_group=0, require_group=False, **read_options
    )
    say_warnings(data, console)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("registering", total=len(data))
        result = preprocess_cohort(
            data,
            out,
            config,
            jobs=jobs,
            progress=lambda done, total, sid: bar.update(task, completed=done, description=f"registered {escape(sid)}"),
        )
    records = result["records"]
    if records:
        qc = write_registration_qc(data, result, out)
        console.print(f"QC page (worst first): {qc}")
    done = [r for r in records if not r.get("skipped")]
    worst = sorted(records, key=lambda r: r["similarity"])[:3]
    console.print(
        f"Preprocessed {len(done)} subject(s), {len(records) - len(done)} already done, "
        f"{len(result['failures'])} failed; cohort table: {result['cohort']}"
    )
    for record in worst:
        console.print(f"  lowest template similarity: {escape(record['subject_id'])} {record['similarity']:.3f}")
    if result["failures"]:
        for failure in result["failures"]:
            console.print(f"[red]failed[/] {escape(failure['subject_id'])}: {escape(failure['error'])}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(preprocess)
