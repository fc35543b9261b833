"""Entry point of ``sepclr-med``. Commands live in one small module each and import the
library (torch, monai, nilearn) only when they run, so ``sepclr-med --help`` is instant."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # the command line draws only into files; a library user's backend is theirs

import typer

from sepclr_med.cli import (
    benchmark_commands,
    data_commands,
    evaluate_commands,
    explain_commands,
    preprocess_commands,
    report_commands,
    simulate_commands,
    train_commands,
    tune_commands,
)
from sepclr_med.cli.errors import STATE, set_verbosity
from sepclr_med.cores import share_cores_politely

share_cores_politely()  # before any command imports torch (nothing above does; OpenMP reads these once)

app = typer.Typer(
    name="sepclr-med",
    help="Contrastive Analysis (SepCLR) for 3D brain MRI: separate patient-specific (salient) "
    "from shared (common) anatomical variation.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from sepclr_med import __version__

        typer.echo(f"sepclr-med {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print the library's debug messages."),
) -> None:
    STATE["debug"] = debug
    set_verbosity(-1 if quiet else 1 if verbose else 0)


simulate_commands.register(app)
data_commands.register(app)
preprocess_commands.register(app)
train_commands.register(app)
tune_commands.register(app)
evaluate_commands.register(app)
benchmark_commands.register(app)
explain_commands.register(app)
report_commands.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
