"""Errors a user can act on.

Every error raised for bad *input* (a cohort file, a recipe, a config) derives from
:class:`SepclrError`. The command line prints its message and exits non-zero without a
traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class SepclrError(Exception):
    """An error caused by user input, with a message that says what to fix."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a cohort, located by file, row and column.

    Parameters
    ----------
    file : str
        The file the problem was found in (the cohort table or an image).
    message : str
        What is wrong, in words a user can act on.
    row : int or None
        Spreadsheet row number in the cohort table (the header is row 1), or None when the
        problem concerns the whole file or a whole column.
    column : str or None
        Column name, or None when the problem concerns a whole row.
    severity : {"error", "warning"}
        Errors stop a run; warnings are reported and handled (e.g. images resampled).
    """

    file: str
    message: str
    row: int | None = None
    column: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{self.severity}: {', '.join(where)}: {self.message}"


class CohortError(SepclrError):
    """A cohort failed validation; holds every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        lines = [f"cohort is invalid ({len(errors)} error(s)):"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def is_data_error(exc: BaseException) -> bool:
    """True when ``exc`` is a problem of one subject's data, to be listed as that subject's failure.

    A file that cannot be read or written (``OSError``, a truncated gzip, nibabel's
    ``ImageFileError``), values that are not a scan (``ValueError``) or a refused input
    (:class:`SepclrError`), also when MONAI's transforms re-raise one as the cause of their
    ``RuntimeError``. Anything else (``TypeError``, ``KeyError``, out of memory, ...) is a bug or a
    resource problem: batches (``report``, ``preprocess``) stop on it instead of turning it into
    per-subject failures.
    """
    import zlib

    from nibabel.filebasedimages import ImageFileError

    errors = (OSError, EOFError, zlib.error, ImageFileError, ValueError, SepclrError)
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, errors):
            return True
        seen = seen.__cause__
    return False
