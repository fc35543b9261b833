"""``sepclr-med report``."""

from __future__ import annotations

from pathlib import Path

import typer

from sepclr_med.cli.cohort_options import cohort_options
from sepclr_med.cli.errors import make_console, user_errors
from sepclr_med.cli.outputs import OVERWRITE, refuse_existing_output


@user_errors
@cohort_options(of_run=True)
def report(
    run: Path = typer.Option(
        ..., "--run", "-r", help="Run directory (`sepclr-med train`) or exported model file (`sepclr-med export`)."
    ),
    cohort: Path = typer.Option(..., "--cohort", "-c", help="The batch of subjects to report (e.g. new patients)."),
    out: Path = typer.Option(Path("reports"), "--out", "-o", help="Output folder."),
    overwrite: bool = OVERWRITE,
    explain_dir: Path = typer.Option(None, "--explain", help="An `explain` output folder (cohort associations)."),
    include: str = typer.Option(None, help="Comma-separated cohort columns to show on each page (default none)."),
    atlas: str = typer.Option("AAL", help="AAL | AAL3 | HCPEx: the atlas naming each page's regions."),
    steps: int = typer.Option(
        None,
        min=2,
        help="Attribution budget per subject (expected-gradient samples; default 16). A run directory's display "
        "threshold is calibrated with it; an exported model's was calibrated at export (another value voids it).",
    ),
    no_pdf: bool = typer.Option(False, "--no-pdf", help="Skip the PDF pages."),
    no_viewer: bool = typer.Option(False, "--no-viewer", help="Skip the interactive viewer pages."),
    full_paths: bool = typer.Option(False, "--full-paths", help="Show full scan paths (default: file names)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda: where the encoders and the maps run."),
    *,
    read_options: dict,
) -> None:
    """One page per subject (HTML + PDF, and an offline interactive viewer), an index sortable by deviation,
    and summary.csv."""
    refuse_existing_output(out, overwrite)
    from rich.markup import escape
    from rich.progress import Progress

    from sepclr_med.exported import open_model
    from sepclr_med.report.batch import make_reports

    console = make_console()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(
            "the reference (computed once per run and budget, then read from RUN/report_cache)", total=None
        )
        result = make_reports(
            open_model(run),
            cohort,
            out,
            explain_dir=explain_dir,
            include=tuple(c.strip() for c in include.split(",")) if include else (),
            atlas=atlas,
            n_steps=steps,
            pdf=not no_pdf,
            full_paths=full_paths,
            read_options=read_options,
            device=device,
            viewer=not no_viewer,
            progress=lambda done, total, sid: bar.update(
                task, completed=done, total=total, description=f"rendering {escape(sid)}"
            ),
        )
    for warning in result["cohort_warnings"][:20]:
        console.print(f"[yellow]cohort warning[/]: {escape(warning)}")
    for note in result["notes"]:
        console.print(f"[yellow]note[/] (repeated on every page): {escape(note)}")
    if result["warning"]:
        console.print(f"[bold red]WARNING[/] (training verdict, repeated on every page): {escape(result['warning'])}")
    console.print(
        f"Reported {len(result['rows'])} subject(s): {result['index']} ({result['seconds_per_page']:.2f} s per page)"
    )
    if result["failures"]:
        for failure in result["failures"]:
            console.print(f"[red]failed[/] {escape(failure['subject_id'])}: {escape(failure['error'])}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(report)
    app.command()(export)


@user_errors
def export(
    run: Path = typer.Option(..., "--run", "-r", help="Run directory written by `sepclr-med train`."),
    out: Path = typer.Option(..., "--out", "-o", help="The model file to write (e.g. model.sepclr)."),
    overwrite: bool = OVERWRITE,
    device: str = typer.Option(
        "auto",
        help="auto | cpu | cuda: where the display calibration's maps run (report on the same kind of device "
        "for identical numbers).",
    ),
    steps: int = typer.Option(
        16, min=2, help="Attribution budget per subject that the display threshold is calibrated with."
    ),
) -> None:
    """One shareable model file without per-subject rows: weights, configuration, verdict and the
    reference `report` needs; `embed --run FILE` and `report --run FILE` take it."""
    refuse_existing_output(out, overwrite)
    from rich.markup import escape

    from sepclr_med.report.export import export_model
    from sepclr_med.run import Run

    console = make_console()
    with console.status("computing the report reference (control composites, display calibration)"):
        source = Run(run)
        result = export_model(source, out, device=device, n_steps=steps)
    for note in result["notes"]:
        console.print(f"[yellow]note[/]: {escape(note)}")
    warning = source.verdict_warning()
    if warning:
        console.print(f"[bold red]WARNING[/] (training verdict, exported with the model): {escape(warning)}")
    console.print(
        f"Wrote {escape(str(out))} (model {escape(result['model_id'])}, {len(result['members'])} members "
        "and their manifest)"
    )
