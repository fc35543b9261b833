"""``sepclr-med tune``."""

from __future__ import annotations

from pathlib import Path

import typer

from sepclr_med.cli.cohort_options import cohort_options, say_warnings
from sepclr_med.cli.errors import make_console, user_errors
from sepclr_med.cli.outputs import OVERWRITE, refuse_existing_output


@user_errors
@cohort_options()
def tune(
    cohort: Path = typer.Option(..., "--cohort", "-c", help="Training cohort CSV/TSV or BIDS folder."),
    out: Path = typer.Option(Path("sepclr_tune"), "--out", "-o", help="Folder for tune.csv and tuned.toml."),
    overwrite: bool = OVERWRITE,
    config: Path = typer.Option(None, "--config", help="Base TOML config (epochs, batch size, ...)."),
    epochs: int = typer.Option(None, help="Epochs of each fold run (default: the base config's)."),
    folds: int = typer.Option(2, min=2, help="Validation folds per setting."),
    seed: int = typer.Option(None, help="Seed of the folds and of every run."),
    device: str = typer.Option(None, help="auto | cpu | cuda"),
    keep_runs: bool = typer.Option(False, "--keep-runs", help="Keep each fold's run directory."),
    *,
    read_options: dict,
) -> None:
    """Try a small grid of loss weights on validation folds; write the best as a config for `train --config`."""
    refuse_existing_output(out, overwrite)
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.tune import GRID, summarise
    from sepclr_med.training.tune import tune as run_tune

    console = make_console()
    base = (TrainConfig.load(config) if config is not None else TrainConfig()).override(
        **{
            "optim.epochs": epochs,
            "seed": seed,
            "device": device,
            "allow_unaligned": True if read_options.get("allow_unaligned") else None,
        }
    )
    data = read_cohort(cohort, check_alignment=True, **read_options)
    say_warnings(data, console)
    console.print(
        f"tune: {len(GRID)} settings x {folds} folds = {len(GRID) * folds} runs of "
        f"{base.optim.epochs} epochs on {len(data)} subjects"
    )
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} runs"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("tuning", total=len(GRID) * folds)
        table, _ = run_tune(
            data,
            out,
            base,
            grid=GRID,
            n_folds=folds,
            keep_runs=keep_runs,
            progress=lambda done, total, label: bar.update(task, completed=done, description=f"done: {escape(label)}"),
        )
    summary = summarise(table)
    view = Table(title="Loss weights on validation folds (score: validation salient AUC at the kept epoch)")
    for name in ("rank", "weights", "score", "worst fold", "norm ratio", "separated"):
        view.add_column(name)
    for rank, row in enumerate(summary.itertuples(), start=1):
        view.add_row(
            str(rank), row.weights, f"{row.score:.3f}", f"{row.worst_fold:.3f}", f"{row.norm_ratio:.2f}", row.separated
        )
    console.print(view)
    if summary.loc[0, "separated"].startswith("0/"):
        console.print(
            "[bold red]WARNING[/]: no setting separated validation patients from controls on any "
            "fold; the best is written anyway, but check the cohort (registration, labels, effect size)."
        )
    console.print(
        f"Wrote {out / 'tune.csv'} and {out / 'tuned.toml'}: "
        f"sepclr-med train --cohort {escape(str(cohort))} --config {escape(str(out / 'tuned.toml'))}"
    )


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(tune)
