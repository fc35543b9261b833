"""The options that say how to read a cohort, shared by every command that reads one.

``@cohort_options()`` adds them to a command (``--group-column``, ``--control-label``,
``--patient-label``, ``--confounds``, ``--skip-missing``, ``--allow-unaligned`` and the BIDS file selection
``--derivatives``, ``--space``, ``--desc``, ``--suffix``, ``--label``, ``--session``) and hands the
command one ``read_options`` dictionary for :func:`sepclr_med.io.reading.read_cohort` (or
:meth:`sepclr_med.run.Run.read_cohort`). With ``of_run=True`` the group column and labels
default to the ones the run stored.
"""

from __future__ import annotations

import functools
import inspect

import typer


def _parse_confounds(value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    out: dict[str, str] = {}
    for item in value.split(","):
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            from sepclr_med.errors import SepclrError

            raise SepclrError(f"--confounds takes NAME=COLUMN pairs, e.g. age=AgeAtScan,site=scanner (got {item!r})")
        key = name.strip().lower()
        if key in out:
            from sepclr_med.errors import SepclrError

            raise SepclrError(f"--confounds names {key!r} twice ({out[key]!r} and {column.strip()!r}): give one column")
        out[key] = column.strip()
    return out


def _options(of_run: bool) -> list[inspect.Parameter]:
    run = " (default: the run's)" if of_run else ""
    spec = {
        "group_column": (str, None if of_run else "group", f"Column holding the group label{run}."),
        "control_label": (str, None if of_run else "control", f"Group label of controls (background){run}."),
        "patient_label": (str, None if of_run else "patient", f"Group label of patients (target){run}."),
        "confounds": (
            str,
            None,
            "Declare confound columns: age=COL,sex=COL,site=COL (others are found by "
            "name: Age, age_at_scan, gender, centre ...).",
        ),
        "skip_missing": (
            bool,
            False,
            "Drop rows without an image or a group (listed in one warning) instead of stopping.",
        ),
        "allow_unaligned": (
            bool,
            False,
            "Go on with scans that fail the MNI152 template-space check (they are "
            "listed, recorded in the run and shown on reports).",
        ),
        "derivatives": (
            str,
            None,
            "BIDS: take images from this derivatives dataset (a name under "
            "DATASET/derivatives/ or a path): fMRIPrep, CAT12, Clinica CAPS.",
        ),
        "space": (str, None, "BIDS: the space- entity (default: the MNI152 space when one exists)."),
        "desc": (str, None, "BIDS: the desc- entity (e.g. preproc)."),
        "suffix": (str, "T1w", "BIDS: T1w, probseg (with --label GM) or a CAT12 prefix such as mwp1."),
        "label": (str, None, "BIDS: the label- entity of a probseg (e.g. GM)."),
        "session": (str, None, "BIDS: the ses- entity (default: each subject's first session)."),
    }
    params = []
    for name, (kind, default, help_text) in spec.items():
        flag = "--" + name.replace("_", "-")
        option = typer.Option(default, flag, help=help_text, rich_help_panel="Reading the cohort")
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
    return params


def cohort_options(of_run: bool = False):
    """Decorator: add the cohort-reading options to a Typer command, passed as ``read_options``."""

    def decorate(command):
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != "read_options"]
        added = _options(of_run)
        names = [p.name for p in added]

        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            from sepclr_med.io.bids import BidsSelection

            values = {n: kwargs.pop(n) for n in names}
            selection = BidsSelection(
                **{k: values.pop(k) for k in ("derivatives", "space", "desc", "suffix", "label", "session")}
            )
            values["confounds"] = _parse_confounds(values["confounds"])
            read = {k: v for k, v in values.items() if v is not None}
            read["selection"] = selection
            return command(*args, read_options=read, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=own + added)
        return wrapper

    return decorate


def cohort_argv(read_options: dict) -> list[str]:
    """The command-line flags that give ``read_options`` again (to re-launch a command under torchrun)."""
    import dataclasses

    argv = []
    flat = {k: v for k, v in read_options.items() if k != "selection"}
    flat.update({k: v for k, v in dataclasses.asdict(read_options["selection"]).items() if v is not None})
    for key, value in flat.items():
        flag = "--" + key.replace("_", "-")
        if key == "confounds":
            argv += [flag, ",".join(f"{n}={c}" for n, c in value.items())]
        elif value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return argv


def say_warnings(cohort, console=None) -> None:
    """Print a cohort's warnings (dropped rows, resampled grids, BIDS choices, unaligned scans ...)."""
    if not cohort.warnings:
        return
    from rich.markup import escape

    from sepclr_med.cli.errors import make_console

    console = console or make_console(stderr=True)
    shown = cohort.warnings[:20]
    console.print(f"[yellow]{len(cohort.warnings)} warning(s) about the cohort:[/]")
    for problem in shown:
        console.print(f"  [yellow]{escape(str(problem))}[/]")
    if len(cohort.warnings) > len(shown):
        console.print(f"  [yellow]... and {len(cohort.warnings) - len(shown)} more (sepclr-med validate lists all)[/]")
