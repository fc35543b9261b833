"""Atomic file writes: write to a temporary file in the target folder, then rename.

A crash or an error never leaves a half-written file under the final name.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".sepclr-tmp-"  # in every temporary name: orphans of killed runs are recognised (locking.py)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``, ``.csv``) so that
    writers choosing a format from the extension keep working.

    Parameters
    ----------
    path : path-like
        The final destination.

    Yields
    ------
    pathlib.Path
        Where to write. Removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp's 0600 would make run files private
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        if exc.filename is not None and os.fsdecode(exc.filename) == str(tmp_path):
            # name the file the user asked for, not a temporary name that no longer exists
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (best effort: not every filesystem allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection


def spreadsheet_safe(table):
    """A copy of ``table`` whose text cells cannot run as spreadsheet formulas.

    A text cell starting with ``= + - @``, a tab or a carriage return gets a leading ``'``
    (OWASP's advice for CSV injection); numbers are untouched.
    """
    from pandas.api.types import is_numeric_dtype

    out = table.copy()
    for column in out.columns:
        if not is_numeric_dtype(out[column]):
            out[column] = out[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v
            )
    return out


def write_table(path: str | os.PathLike, table, *, float_format: str | None = None, safe: bool = True) -> Path:
    """Write a DataFrame as CSV (TSV for ``.tsv``) atomically and return the path.

    ``safe`` (default) neutralises formula-like text cells (:func:`spreadsheet_safe`): for
    tables people open in a spreadsheet. Files sepclr-med reads back keep their text exact
    (``safe=False``).
    """
    sep = "\t" if str(path).lower().endswith(".tsv") else ","
    table = spreadsheet_safe(table) if safe else table
    # the csv module quotes "\n" but not a lone "\r", which readers take for a line end
    text = table.select_dtypes(include=["object", "string"])
    quoting = (
        csv.QUOTE_NONNUMERIC if text.map(lambda v: isinstance(v, str) and "\r" in v).any().any() else csv.QUOTE_MINIMAL
    )
    return write_text(path, table.to_csv(index=False, sep=sep, float_format=float_format, quoting=quoting))


def save_nifti(img, path: str | os.PathLike) -> Path:
    """Save a nibabel image to ``path`` atomically and return the path."""
    import nibabel as nib

    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
