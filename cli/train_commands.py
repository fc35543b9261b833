"""``sepclr-med train`` and ``sepclr-med embed``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from sepclr_med.cli.cohort_options import cohort_argv, cohort_options, say_warnings
from sepclr_med.cli.errors import make_console, user_errors
from sepclr_med.cli.outputs import OVERWRITE, refuse_existing_output

COHORT_HELP = "Cohort CSV/TSV, a BIDS dataset folder, or its participants.tsv."


@user_errors
@cohort_options()
def train(
    cohort: Path = typer.Option(..., "--cohort", "-c", help=COHORT_HELP),
    out: Path = typer.Option(Path("sepclr_run"), "--out", "-o", help="Run directory to write."),
    config: Path = typer.Option(
        None, "--config", help="TOML file with any hyper-parameter; options below override it."
    ),
    epochs: int = typer.Option(None, help="Training epochs."),
    batch_size: int = typer.Option(None, help="Subjects per batch (per process under DDP)."),
    lr: float = typer.Option(None, help="Adam learning rate."),
    seed: int = typer.Option(None, help="Seed of weights, split, batches and augmentations."),
    device: str = typer.Option(None, help="auto | cpu | cuda"),
    num_workers: int = typer.Option(
        None, help="Threads decoding images into the cache (and reading disk batches ahead)."
    ),
    beta_salient: float = typer.Option(None, help="Weight of the salient contrastive term."),
    beta_infoless: float = typer.Option(None, help="Weight of the information-less term (controls' salient to 0)."),
    lambda_jem: float = typer.Option(None, help="Weight of the k-JEM independence term."),
    lambda_independence: float = typer.Option(
        None,
        help="Weight of the leakage penalty (dCor² of patients' common reps with their fixed "
        "salient reps; default 300); 0 = the paper's objective.",
    ),
    paper: bool = typer.Option(
        False,
        "--paper",
        help="Start from the paper's exact objective and weights "
        "(1, 10, 10), no leakage penalty, instead of the defaults.",
    ),
    backbone: str = typer.Option(None, help="small | resnet10 | resnet18 | densenet121"),
    voxel_size: float = typer.Option(None, help="Resample inputs to this isotropic voxel size (mm)."),
    val_fraction: float = typer.Option(None, help="Fraction of each group held out for validation."),
    cache: str = typer.Option(None, help="memory | disk | none"),
    cache_dir: Path = typer.Option(None, help="Disk cache root (with --cache disk)."),
    tracking: str = typer.Option(
        None,
        help="tensorboard (always written) | mlflow (also: to MLFLOW_TRACKING_URI, else RUN/mlflow.db; "
        "pip install 'sepclr-med\\[mlflow]').",  # \\[ : Rich markup would eat [mlflow]
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Processes on this machine (DDP via torchrun)."),
    *,
    read_options: dict,
) -> None:
    """Train SepCLR (controls = background, patients = target) into a run directory."""
    # Long only by its signature: Typer declares every option there.
    options = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "device": device,
        "num_workers": num_workers,
        "beta_salient": beta_salient,
        "beta_infoless": beta_infoless,
        "lambda_jem": lambda_jem,
        "lambda_independence": lambda_independence,
        "backbone": backbone,
        "voxel_size": voxel_size,
        "val_fraction": val_fraction,
        "cache": cache,
        "cache_dir": cache_dir,
        "config": config,
        "paper": True if paper else None,
        "tracking": tracking,
    }
    if resume:
        _refuse_changes_on_resume(options)
    if nproc > 1:
        _relaunch_under_torchrun(cohort, out, read_options, resume, options, nproc)

    from sepclr_med.estimator import SepCLR
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training import TrainConfig

    if paper and config is not None:
        from sepclr_med.errors import SepclrError

        raise SepclrError("--paper and --config both choose the starting configuration: give one")
    base = TrainConfig.load(config) if config is not None else TrainConfig.paper() if paper else TrainConfig()
    resolved = base.override(
        **{
            "optim.epochs": epochs,
            "optim.batch_size": batch_size,
            "optim.lr": lr,
            "seed": seed,
            "device": device,
            "num_workers": num_workers,
            "loss.beta_salient": beta_salient,
            "loss.beta_infoless": beta_infoless,
            "loss.lambda_jem": lambda_jem,
            "loss.lambda_independence": lambda_independence,
            "model.backbone": backbone,
            "preprocess.voxel_size": voxel_size,
            "val_fraction": val_fraction,
            "cache": cache,
            "cache_dir": str(cache_dir) if cache_dir is not None else None,
            "allow_unaligned": True if read_options.get("allow_unaligned") else None,
            "tracking": tracking,
        }
    )
    data = read_cohort(cohort, check_alignment=not resume, **read_options)
    main = int(os.environ.get("RANK", "0")) == 0
    console = make_console() if main else None
    if console is not None:
        say_warnings(data, console)
    model = SepCLR(resolved, epochs=epochs, run_dir=out).fit(data, resume=resume, console=console)
    if console is not None:
        console.print(f"[green]Trained[/]: run directory {model.run_.path}")


def _refuse_changes_on_resume(options: dict) -> None:
    """``--resume`` keeps the run's configuration: only epochs, device and workers may change."""
    fixed = [
        k for k, v in options.items() if v is not None and k not in ("epochs", "device", "num_workers", "tracking")
    ]
    if fixed:
        from sepclr_med.errors import SepclrError

        raise SepclrError(
            "--resume continues a run with the configuration stored in its config.toml; "
            "only --epochs, --device, --num-workers and --tracking can change, not: "
            + ", ".join("--" + k.replace("_", "-") for k in fixed)
        )


def _relaunch_under_torchrun(
    cohort: Path, out: Path, read_options: dict, resume: bool, options: dict, nproc: int
) -> None:
    """Run this same command under ``torch.distributed.run`` with ``nproc`` processes; exit with its code."""
    argv = ["--cohort", str(cohort), "--out", str(out), *cohort_argv(read_options)] + (["--resume"] if resume else [])
    for key, value in options.items():
        if value is True:
            argv += [f"--{key.replace('_', '-')}"]
        elif value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "sepclr_med.cli.main",
        "train",
        *argv,
    ]
    from sepclr_med.cores import available_cores

    threads = (
        os.environ["OMP_NUM_THREADS"]
        if os.environ.get("SEPCLR_THREADS_FROM_USER") == "1"
        else str(max(1, available_cores() // nproc))
    )
    raise typer.Exit(subprocess.call(command, env={**os.environ, "OMP_NUM_THREADS": threads}))


@user_errors
@cohort_options(of_run=True)
def embed(
    run: Path = typer.Option(
        ..., "--run", "-r", help="Run directory (`sepclr-med train`) or exported model file (`sepclr-med export`)."
    ),
    cohort: Path = typer.Option(..., "--cohort", "-c", help=COHORT_HELP),
    out: Path = typer.Option(
        Path("latents.csv"),
        "--out",
        "-o",
        help="Latents CSV/TSV to write; for a BIDS cohort, "
        "a folder (no .csv/.tsv suffix) gets BIDS derivatives, one latents TSV per subject.",
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    batch_size: int = typer.Option(16, min=1, help="Volumes per forward pass."),
    overwrite: bool = OVERWRITE,
    *,
    read_options: dict,
) -> None:
    """Write common and salient reps of every subject of a cohort (seen or unseen) to CSV."""
    refuse_existing_output(out, overwrite)
    from sepclr_med.embed import write_latents, write_latents_bids
    from sepclr_med.estimator import SepCLR

    model = SepCLR.load(run, device=device)
    data = model.run_.read_cohort(cohort, min_per_group=0, require_group=False, **read_options)
    say_warnings(data)
    with make_console().status(f"encoding {len(data)} subjects"):
        latents = model.latents(data, batch_size=batch_size)
    if out.suffix.lower() in (".csv", ".tsv"):
        write_latents(latents, out)
    else:
        write_latents_bids(latents, data, out)
    make_console().print(f"Wrote {len(latents)} subjects x {latents.shape[1] - 2} latent columns to {out}")


def register(app: typer.Typer) -> None:
    """Add the commands of this module to ``app``."""
    app.command()(train)
    app.command()(embed)
