"""``sepclr-med benchmark``."""

from __future__ import annotations

from pathlib import Path

import typer

from sepclr_med.cli.errors import make_console, user_errors
from sepclr_med.cli.outputs import OVERWRITE, refuse_existing_output

DEFAULT_METHODS = "sepclr,sepclr-paper,sepclr-no-jem,sepclr-no-infoless,simclr,untrained,cpca,cvae,mm-cvae"


@user_errors
def benchmark(
    out: Path = typer.Option(Path("benchmark"), "--out", "-o", help="Output folder."),
    overwrite: bool = OVERWRITE,
    recipe: str = typer.Option("schizophrenia", help="Recipe name or .toml path of the simulated cohort."),
    methods: str = typer.Option(DEFAULT_METHODS, help="Comma-separated methods."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated seeds."),
    epochs: int = typer.Option(20, help="Training epochs of every deep method (the same budget for all)."),
    n_controls: int = typer.Option(None, "--n-controls", help="Controls in the training cohort (default: recipe)."),
    n_patients: int = typer.Option(None, "--n-patients", help="Patients in the training cohort (default: recipe)."),
    n: int = typer.Option(None, "--n", help="Both --n-controls and --n-patients (the old name).", hidden=True),
    n_test: int = typer.Option(None, help="Subjects per group in the held-out cohort (default: recipe)."),
    resolution: float = typer.Option(
        None,
        "--voxel-size",
        "--resolution",
        help="Voxel size of the simulated cohorts (mm; --resolution: the old name).",
    ),
) -> None:
    """Train every method on the same simulated cohort and probe held-out subjects."""
    refuse_existing_output(out, overwrite)

    from sepclr_med.errors import SepclrError
    from sepclr_med.simulate import load_recipe
    from sepclr_med.workflows.benchmark import run_benchmark

    console = make_console()
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise SepclrError(f"--seeds must be comma-separated integers, not {seeds!r}") from None
    spec = load_recipe(recipe).replace(
        n_controls=n_controls if n_controls is not None else n,
        n_patients=n_patients if n_patients is not None else n,
        resolution_mm=resolution,
    )
    summary = run_benchmark(
        out,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        seeds=seed_list,
        recipe=spec,
        epochs=epochs,
        n_test=n_test,
        console=console,
    )
    console.print(summary.to_markdown(index=False))
    console.print(f"Wrote {out / 'results.csv'}, {out / 'summary.csv'} and {out / 'summary.md'}")


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(benchmark)
