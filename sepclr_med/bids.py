"""Read a BIDS dataset (``participants.tsv`` + ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from sepclr_med.cohort import Cohort, build_cohort
from sepclr_med.errors import CohortError, Problem

BIDS_ID = re.compile(r"(sub-)?[A-Za-z0-9]+")


def find_t1w(root: Path, subject: str) -> list[Path]:
    """T1-weighted images of ``subject`` (with or without sessions), sorted."""
    sub = subject if subject.startswith("sub-") else f"sub-{subject}"
    patterns = [f"{sub}/anat/{sub}*_T1w.nii*", f"{sub}/ses-*/anat/{sub}*_T1w.nii*"]
    found = {p for pattern in patterns for p in root.glob(pattern)}
    return sorted(p for p in found if p.name.endswith((".nii", ".nii.gz")))


def read_bids_cohort(path: str | os.PathLike, *, group_column: str = "group", **kwargs) -> Cohort:
    """Read a BIDS dataset into a :class:`~sepclr_med.cohort.Cohort`.

    Parameters
    ----------
    path : path-like
        The dataset folder or its ``participants.tsv``.
    group_column : str
        Column of ``participants.tsv`` holding the group label.
    **kwargs
        Passed to :func:`~sepclr_med.cohort.build_cohort`.

    Notes
    -----
    ``participant_id`` becomes ``subject_id``; the image is the subject's first T1w file in
    sorted order (a warning names the others when a subject has several).
    """
    path = Path(path)
    root = (path if path.is_dir() else path.parent).resolve()  # found images are then absolute
    tsv = root / "participants.tsv"
    if not tsv.is_file():
        raise CohortError([Problem(str(tsv), "BIDS participants.tsv not found")])
    try:
        raw = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CohortError([Problem(str(tsv), f"cannot parse the table: {exc}")]) from None
    problems: list[Problem] = []
    for clash in ("subject_id", *(["group"] if group_column != "group" else [])):
        if clash in raw.columns:
            raise CohortError([Problem(str(tsv), f"column '{clash}' clashes with the BIDS mapping "
                                                 f"(participant_id -> subject_id, {group_column} -> group)",
                                       None, clash)])
    if "participant_id" not in raw.columns:
        raise CohortError([Problem(str(tsv), "required column is missing", None, "participant_id")])
    if group_column not in raw.columns:
        raise CohortError([Problem(str(tsv), "group column is missing", None, group_column)])
    images = []
    for i, pid in enumerate(raw["participant_id"].str.strip()):
        if not BIDS_ID.fullmatch(pid):
            problems.append(Problem(str(tsv), f"participant_id {pid!r} is not a BIDS label (sub-<alphanumeric>)",
                                    i + 2, "participant_id"))
            images.append("")
            continue
        found = find_t1w(root, pid)
        if not found:
            problems.append(Problem(str(tsv), f"no {pid}/anat/*_T1w.nii[.gz] image found",
                                    i + 2, "participant_id"))
            images.append("")
            continue
        if len(found) > 1:
            problems.append(Problem(str(tsv), f"{len(found)} T1w images; using {found[0].name}",
                                    i + 2, "participant_id", severity="warning"))
        images.append(str(found[0]))
    table = raw.rename(columns={"participant_id": "subject_id", group_column: "group"})
    table["image"] = images
    return build_cohort(table, tsv, image_base=root, extra_problems=problems, **kwargs)
