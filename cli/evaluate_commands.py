"""``sepclr-med evaluate``."""

from __future__ import annotations

from pathlib import Path

import typer

from sepclr_med.cli.cohort_options import cohort_options, say_warnings
from sepclr_med.cli.errors import make_console, user_errors
from sepclr_med.cli.outputs import OVERWRITE, refuse_existing_output


@user_errors
@cohort_options(of_run=True)
def evaluate(
    run: Path = typer.Option(..., "--run", "-r", help="Run directory written by `sepclr-med train`."),
    cohort: Path = typer.Option(..., "--cohort", "-c", help="Cohort to embed and probe (ideally held out)."),
    out: Path = typer.Option(Path("evaluation"), "--out", "-o", help="Folder for probes.csv/json."),
    overwrite: bool = OVERWRITE,
    factors: str = typer.Option(
        None,
        help="Comma-separated target-only factors to probe on patients (default: subtype, severity and panss* scores).",
    ),
    truth: Path = typer.Option(None, help="Ground-truth CSV (default: ground_truth.csv beside the cohort)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    *,
    read_options: dict,
) -> None:
    """Probe how well a run separates common from salient variation."""
    refuse_existing_output(out, overwrite)
    from rich.markup import escape

    from sepclr_med.embed import embed
    from sepclr_med.evaluation import evaluate_latents
    from sepclr_med.evaluation.table import cohort_factors, print_evaluation, write_evaluation
    from sepclr_med.run import Run

    console = make_console()
    trained = Run(run)
    warning = trained.verdict_warning()
    if warning:
        console.print(f"[bold red]WARNING[/] (training verdict): {escape(warning)}")
    data = trained.read_cohort(cohort, min_per_group=0, **read_options)
    say_warnings(data, console)
    seen = trained.training_subjects() & set(data.subject_ids)
    if seen:
        console.print(
            f"[yellow]warning: {len(seen)} of {len(data)} subjects were used to train this run; "
            "probes on them measure memorisation, not generalisation[/]"
        )
    table_factors, truth_path = cohort_factors(data, truth)
    if truth_path:
        console.print(f"ground truth: {escape(truth_path)}")
    names = [f.strip() for f in factors.split(",")] if factors else None
    with console.status(f"encoding {len(data)} subjects and probing the latents"):
        latents = embed(trained, data, device=device)
        table = evaluate_latents(
            latents, table_factors, target_factors=names, patient_label=trained.config.patient_label
        )
    print_evaluation(table, console)
    paths = write_evaluation(table, out, verdict=trained.verdict())
    console.print(f"Wrote {paths['csv']}, {paths['json']} and {paths['verdict']}")


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(evaluate)
