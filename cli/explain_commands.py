"""``sepclr-med explain``."""

from __future__ import annotations

from pathlib import Path

import typer

from sepclr_med.cli.cohort_options import cohort_options, say_warnings
from sepclr_med.cli.errors import make_console, user_errors
from sepclr_med.cli.outputs import OVERWRITE, refuse_existing_output


@user_errors
@cohort_options(of_run=True)
def explain(
    run: Path = typer.Option(..., "--run", "-r", help="Run directory written by `sepclr-med train`."),
    cohort: Path = typer.Option(..., "--cohort", "-c", help="Cohort with controls and patients."),
    out: Path = typer.Option(Path("explain"), "--out", "-o", help="Output folder."),
    overwrite: bool = OVERWRITE,
    atlas: str = typer.Option("AAL", help="AAL | AAL3 | HCPEx, or a labels NIfTI (with --atlas-lut)."),
    atlas_lut: Path = typer.Option(None, help="Lookup table 'id name' of a custom labels NIfTI."),
    method: str = typer.Option(
        "eg",
        help="eg (expected gradients, controls as baselines) | ig (integrated "
        "gradients from the controls' mean) | grad | ablation (regions)",
    ),
    subjects: str = typer.Option(None, help="Comma-separated subjects with own maps (default: all patients)."),
    steps: int = typer.Option(24, min=2, help="Attribution budget per subject: eg samples or ig steps."),
    group_stat: str = typer.Option(
        None,
        help="Group maps: t (one-sample t of the members' maps) | mean "
        "(default: t for eg, mean for ig and grad; not used by ablation).",
    ),
    group_fwhm: float = typer.Option(
        None,
        min=0.0,
        help="Smoothing of members' maps before the group statistic, "
        "FWHM in mm (default: 8 for eg, 0 for ig and grad).",
    ),
    truth: Path = typer.Option(None, help="Ground-truth CSV with subtypes (default: beside the cohort)."),
    permutations: int = typer.Option(0, min=0, help="Max-T permutations for clinical p-values (0 = off)."),
    no_figures: bool = typer.Option(False, "--no-figures", help="Skip PNG figures."),
    device: str = typer.Option("auto", help="auto | cpu | cuda: where the encoders and the maps run."),
    precision: str = typer.Option(
        "float32", help="float32 | bfloat16: attribution passes under bf16 autocast (docs/explain.md: how close)."
    ),
    *,
    read_options: dict,
) -> None:
    """Map salient directions to voxels, atlas regions and clinical scores."""
    refuse_existing_output(out, overwrite)
    import pandas as pd
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from sepclr_med.explain.pipeline import explain as run_explain
    from sepclr_med.run import Run

    console = make_console()
    trained = Run(run)
    data = trained.read_cohort(cohort, **read_options)
    say_warnings(data, console)
    truth_path = truth or Path(data.source).parent / "ground_truth.csv"
    table = pd.read_csv(truth_path, keep_default_na=False) if truth_path.is_file() else None
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("explain", total=None)
        run_explain(
            trained,
            data,
            out,
            atlas=atlas,
            atlas_lut=atlas_lut,
            method=method,
            subjects=[s.strip() for s in subjects.split(",")] if subjects else None,
            n_steps=steps,
            group_stat=group_stat,
            group_fwhm=group_fwhm,
            truth=table,
            n_permutations=permutations,
            figures=not no_figures,
            console=console,
            device=device,
            precision=precision,
            progress=lambda name: bar.update(task, description=escape(name)),
        )


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(explain)
