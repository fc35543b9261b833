"""One rule for every command that writes: an output that already holds something is refused
unless ``--overwrite`` says to write over it (``train`` has ``--resume`` instead)."""

from __future__ import annotations

from pathlib import Path

import typer

OVERWRITE = typer.Option(
    False, "--overwrite", help="Write into an output that already holds files (they are replaced, others kept)."
)


def refuse_existing_output(out: Path, overwrite: bool) -> None:
    """Raise :class:`~sepclr_med.errors.SepclrError` when ``out`` is a non-empty folder or an
    existing file and ``overwrite`` is False."""
    from sepclr_med.errors import SepclrError
    from sepclr_med.locking import LOCK_NAME

    # a writer's lock alone is not content: the command then says who is writing (sepclr_med.locking)
    holds = out.is_file() or (out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()))
    if holds and not overwrite:
        what = "file" if out.is_file() else "folder"
        raise SepclrError(f"{out} is an existing {what}: pass --overwrite to write over it, or choose another --out")
