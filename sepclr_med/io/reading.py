"""Read a cohort from wherever it is kept: a CSV/TSV table or a BIDS dataset.

Above both readers (:mod:`sepclr_med.io.cohort` for tables, :mod:`sepclr_med.io.bids` for datasets,
which builds on the first): the one entry point users and every command call.
"""

from __future__ import annotations

import os
from pathlib import Path

from sepclr_med.errors import CohortError, Problem
from sepclr_med.io.bids import BidsSelection, read_bids_cohort
from sepclr_med.io.cohort import Cohort, read_csv_cohort


def read_cohort(path: str | os.PathLike, *, selection: BidsSelection | None = None, **kwargs) -> Cohort:
    """Read a cohort from a CSV/TSV table or a BIDS dataset and validate it.

    Parameters
    ----------
    path : path-like
        A CSV (``.csv``) or TSV table in the sepclr-med schema, a BIDS dataset folder, or
        its ``participants.tsv``.
    selection : BidsSelection, optional
        For a BIDS dataset: which file becomes each subject's image (derivatives, space, ...).
    **kwargs
        ``group_column`` (default ``group``) and the options of ``build_cohort``
        (:func:`sepclr_med.io.cohort.build_cohort`: ``control_label``, ``patient_label``, ``scores``,
        ``confounds``, ``check_images``, ``min_per_group``, ``require_group``, ``skip_missing``).

    Returns
    -------
    Cohort
    """
    path = Path(path)
    if path.is_dir() or path.name == "participants.tsv":
        return read_bids_cohort(path, selection=selection, **kwargs)
    if selection is not None and selection != type(selection)():
        raise CohortError(
            [
                Problem(
                    str(path),
                    "--derivatives, --space, --desc, --suffix, --label and --session "
                    "select files of a BIDS dataset; this is a table (give the dataset "
                    "folder, or put the chosen images in the table's image column)",
                )
            ]
        )
    return read_csv_cohort(path, **kwargs)
