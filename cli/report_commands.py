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
    run: Path = typer.Option(..., "--run", "-r", help="Run directory written by `sepclr-med train`."),
    cohort: Path = typer.Option(..., "--cohort", "-c", help="The batch of subjects to report (e.g. new patients)."),
    out: Path = typer.Option(Path("reports"), "--out", "-o", help="Output folder."),
    overwrite: bool = OVERWRITE,
    explain_dir: Path = typer.Option(None, "--explain", help="An `explain` output folder (cohort associations)."),
    include: str = typer.Option(None, help="Comma-separated cohort columns to show on each page (default none)."),
    atlas: str = typer.Option("AAL", help="AAL | AAL3 | HCPEx: the atlas naming each page's regions."),
    steps: int = typer.Option(16, min=2, help="Attribution budget per subject (integrated-gradient steps)."),
    no_pdf: bool = typer.Option(False, "--no-pdf", help="Skip the PDF pages."),
    full_paths: bool = typer.Option(False, "--full-paths", help="Show full scan paths (default: file names)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda: where the encoders and the maps run."),
    *,
    read_options: dict,
) -> None:
    """One page per subject (HTML + PDF), an index sortable by deviation, and summary.csv."""
    refuse_existing_output(out, overwrite)
    from rich.markup import escape
    from rich.progress import Progress

    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run

    console = make_console()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("rendering", total=None)
        result = make_reports(
            Run(run),
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
            progress=lambda done, total, sid: bar.update(
                task, completed=done, total=total, description=f"rendering {escape(sid)}"
            ),
        )
    for warning in result["cohort_warnings"][:20]:
        console.print(f"[yellow]cohort warning[/]: {escape(warning)}")
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
