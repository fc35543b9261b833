"""Cohort tables: read a CSV or a BIDS dataset into a validated :class:`Cohort`.

A cohort lists one subject per row (schema in ``cohorts/README.md``):

``subject_id``
    Unique identifier.
``image``
    Path to a 3D NIfTI image, relative to the table's folder or absolute.
``group``
    ``control`` (background) or ``patient`` (target); both labels can be overridden.
``age``, ``sex``, ``site`` (optional)
    Confounds shared by both groups. Names are matched case-insensitively, with synonyms
    (:data:`CONFOUND_SYNONYMS`: ``Age``, ``age_at_scan``, ``gender``, ``centre`` ...). ``age`` must be
    numeric; ``sex`` takes ``M``/``F`` (also ``male``/``female``/``man``/``woman``, any case), anything
    else is an error; ``site`` is a label.
any other column
    A clinical score when declared (``scores=[...]``) or when most of its non-empty cells are
    numbers; its non-numeric cells are then errors. Empty cells (``""``, ``NA``, ``n/a``) are
    missing values, e.g. a symptom score for controls. Other text columns are kept, unused.

Every problem is collected and raised at once as a :class:`~sepclr_med.errors.CohortError`
naming the file, the spreadsheet row (the header is row 1) and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sepclr_med.errors import CohortError, Problem

REQUIRED_COLUMNS = ("subject_id", "image", "group")
RESERVED_COLUMNS = ("row", "is_target")  # added by sepclr-med; a cohort may not define them
CONFOUND_COLUMNS = ("age", "sex", "site")
NUMERIC_CONFOUNDS = ("age",)
MISSING_TOKENS = {"", "na", "n/a", "nan", "none", "null"}
# header spellings (lower case, spaces and dashes as underscores) read as each confound
CONFOUND_SYNONYMS = {
    "age": (
        "age",
        "age_at_scan",
        "age_at_mri",
        "age_years",
        "age_at_first_scan_years",
        "age_at_baseline",
        "ageatscan",
        "age_yrs",
    ),
    "sex": ("sex", "gender", "biological_sex"),
    "site": ("site", "site_id", "centre", "center", "scanner_site", "acquisition_site"),
}
SEX_VALUES = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}
MIN_PER_GROUP = 2
AGE_RANGE = (0, 130)  # years


@dataclass
class Cohort:
    """A validated table of subjects: background (controls) and target (patients).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per subject with ``subject_id``, ``image`` (absolute path), ``group``,
        ``is_target`` (bool), ``row`` (spreadsheet row in the source file), the confounds
        present and the clinical scores (float, NaN where missing).
    source : pathlib.Path
        The file the cohort was read from.
    control_label, patient_label : str
        The group labels of the background and target groups.
    score_columns : tuple of str
        Clinical-score columns (numeric).
    confound_columns : tuple of str
        Confound columns present among ``age``, ``sex``, ``site``.
    warnings : list of Problem
        Non-fatal problems (e.g. images on another grid, resampled by the pipeline).
    group_column : str
        The source table's column that held the group (``group`` unless named otherwise).
    roles : dict
        The role given to every column of the source table (``id``, ``image``, ``group``,
        ``confound age`` ..., ``score``, ``ignored``), so that nothing is decided silently.
    bids_root : pathlib.Path or None
        The BIDS dataset the cohort was read from (outputs are then named with BIDS entities).
    bids_selection : dict
        How its images were chosen (:meth:`sepclr_med.io.bids.BidsSelection.stored`); a run records it.
    alignment : pandas.DataFrame or None
        Template-space measures per subject (:func:`sepclr_med.io.image_checks.check_alignment`),
        None when not checked.
    """

    table: pd.DataFrame
    source: Path
    control_label: str = "control"
    patient_label: str = "patient"
    score_columns: tuple[str, ...] = ()
    confound_columns: tuple[str, ...] = ()
    warnings: list[Problem] = field(default_factory=list)
    group_column: str = "group"
    roles: dict[str, str] = field(default_factory=dict)
    bids_root: Path | None = None
    alignment: pd.DataFrame | None = None
    bids_selection: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def subject_ids(self) -> list[str]:
        """Subject identifiers in table order."""
        return self.table["subject_id"].tolist()

    @property
    def is_target(self) -> np.ndarray:
        """Boolean array, True for patients (target group)."""
        return self.table["is_target"].to_numpy(dtype=bool)

    def records(self) -> list[dict]:
        """One dictionary per subject, the input of the MONAI data pipeline."""
        return [
            {"image": img, "subject_id": sid, "is_target": int(t)}
            for img, sid, t in zip(self.table["image"], self.table["subject_id"], self.table["is_target"], strict=True)
        ]

    def subset(self, mask: np.ndarray | list[bool]) -> Cohort:
        """Return a new cohort holding the rows where ``mask`` is True."""
        table = self.table.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True)
        return Cohort(
            table,
            self.source,
            self.control_label,
            self.patient_label,
            self.score_columns,
            self.confound_columns,
            list(self.warnings),
            self.group_column,
            dict(self.roles),
            self.bids_root,
            None if self.alignment is None else self.alignment.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True),
            dict(self.bids_selection),
        )


def _is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING_TOKENS


def _to_float(value: str) -> float | None:
    """Parse a cell as a finite-or-NaN float; None if it is not a number."""
    if _is_missing(value):
        return float("nan")
    try:
        return float(value)
    except ValueError:
        return None


def _numeric_column(raw: pd.Series, file: str, column: str, problems: list[Problem], rows: pd.Series) -> pd.Series:
    values = []
    for cell, row in zip(raw, rows, strict=True):
        number = _to_float(cell)
        if number is None or np.isinf(number):
            problems.append(Problem(file, f"not a finite number: {cell!r}", int(row), column))
            number = float("nan")
        values.append(number)
    return pd.Series(values, index=raw.index, dtype=float)


def _canonical_confounds(
    raw: pd.DataFrame, file: str, problems: list[Problem], declared: dict[str, str] | None = None
) -> tuple[pd.DataFrame, dict[str, str], set[str]]:
    """Rename confound columns spelled another way (``Age``, ``gender``) or declared
    (``{"age": "Alter"}``) to their canonical name; two columns naming one confound are an error
    (nothing is chosen silently). Returns the table, ``{canonical: original column}`` and the
    columns left unused because another column was declared for their confound."""
    declared = dict(declared or {})
    for col, names in pd.Series(list(declared)).groupby(pd.Series(list(declared.values()))):
        if len(names) > 1:
            problems.append(
                Problem(file, f"--confounds: column {col!r} is declared as {' and '.join(names)}", None, col)
            )
    for name, col in declared.items():
        if col in REQUIRED_COLUMNS or col == "participant_id":
            problems.append(
                Problem(file, f"--confounds: {col!r} is the table's {col} column, not a confound", None, col)
            )
        elif name not in CONFOUND_COLUMNS:
            problems.append(
                Problem(
                    file,
                    f"--confounds: unknown confound {name!r}; known: "
                    f"{', '.join(CONFOUND_COLUMNS)} (e.g. age=AgeAtScan)",
                    None,
                    col,
                )
            )
        elif col not in raw.columns:
            problems.append(
                Problem(
                    file,
                    f"--confounds: column {col!r} (declared as {name}) is missing (columns: {list(raw.columns)})",
                    None,
                    col,
                )
            )
    declared = {n: c for n, c in declared.items() if n in CONFOUND_COLUMNS and c in raw.columns}
    renames, claimed = {c: n for n, c in declared.items()}, {n: [c] for n, c in declared.items()}
    for col in raw.columns:
        if col in renames:
            continue
        key = col.lower().replace(" ", "_").replace("-", "_")
        for name, spellings in CONFOUND_SYNONYMS.items():
            if key in spellings and name in declared:
                renames[col] = f"{col} (not used: {name} is declared as {declared[name]!r})"
            elif key in spellings:
                claimed.setdefault(name, []).append(col)
                renames[col] = name
    for name, cols in claimed.items():
        if len(cols) > 1:
            problems.append(
                Problem(
                    file,
                    f"columns {cols} all name the confound '{name}'; keep one "
                    "(or rename the others, or declare one with --confounds "
                    f"{name}=COLUMN)",
                    None,
                    cols[1],
                )
            )
            for col in cols:
                renames.pop(col)
    shadowed = {c for c, n in renames.items() if n not in CONFOUND_COLUMNS}  # dropped: they would clash
    for col in shadowed:
        renames.pop(col)
    return raw.drop(columns=sorted(shadowed)).rename(columns=renames), {n: c for c, n in renames.items()}, shadowed


def _sex_column(raw: pd.Series, file: str, problems: list[Problem], rows: pd.Series) -> pd.Series:
    values: list[str | None] = []
    for cell, row in zip(raw, rows, strict=True):
        if _is_missing(cell):
            values.append(None)
        elif cell.strip().lower() in SEX_VALUES:
            values.append(SEX_VALUES[cell.strip().lower()])
        else:
            problems.append(
                Problem(
                    file,
                    f"sex {cell!r} is not one of M, F (male, female, man, woman; any case); leave it empty if unknown",
                    int(row),
                    "sex",
                )
            )
            values.append(None)
    return pd.Series(values, index=raw.index, dtype=object)


def _looks_numeric(raw: pd.Series) -> bool:
    present = [v for v in raw if not _is_missing(v)]
    if not present:
        return False
    numbers = sum(_to_float(v) is not None for v in present)
    return numbers >= len(present) / 2


def build_cohort(
    raw: pd.DataFrame,
    source: Path,
    *,
    image_base: Path,
    control_label: str = "control",
    patient_label: str = "patient",
    scores: list[str] | None = None,
    check_images: bool = True,
    min_per_group: int = MIN_PER_GROUP,
    extra_problems: list[Problem] | None = None,
    group_column: str = "group",
    require_group: bool = True,
    confounds: dict[str, str] | None = None,
    skip_missing: bool = False,
    check_alignment: bool = False,
    allow_unaligned: bool = False,
    progress=None,
) -> Cohort:
    """Validate a raw string table and turn it into a :class:`Cohort`.

    Parameters
    ----------
    raw : pandas.DataFrame
        Cells as strings, as read from the file (``dtype=str``, no NA parsing).
    source : pathlib.Path
        The file the table came from, used in messages.
    image_base : pathlib.Path
        Folder that relative image paths are resolved against.
    control_label, patient_label : str
        Group labels of the background and target groups.
    scores : list of str, optional
        Clinical-score columns to require as numeric. None infers them.
    check_images : bool
        Check that every image exists and open it (readability, 3D, finite voxels, grid
        agreement). False checks the table only (e.g. to report the readable subjects of a batch).
    min_per_group : int
        Subjects required in each group (2 for training; 0 to embed e.g. patients only).
    extra_problems : list of Problem, optional
        Problems found by the caller (e.g. a BIDS reader), reported together.
    group_column : str
        The column holding the group label.
    require_group : bool
        False for subjects whose diagnosis is not known (embedding or reporting new subjects):
        the group column may then be absent, and empty or ``n/a`` cells are read as unknown
        (``group`` = ``""``, never a patient).
    confounds : dict, optional
        Declared confound columns, ``{"age": "AgeAtScan", "site": "scanner"}``; others are found
        by name (:data:`CONFOUND_SYNONYMS`).
    skip_missing : bool
        Drop the rows without a usable image (empty or not found) or without a group (empty or
        ``n/a``) instead of raising; a warning lists them.
    check_alignment : bool
        Also check that every image is in MNI152 template space (needs ``check_images``); the
        measures go to ``Cohort.alignment``.
    allow_unaligned : bool
        Failing that check is then a warning, not an error.
    progress : callable, optional
        ``progress(done, total, what)`` while images are checked (a progress bar).

    Returns
    -------
    Cohort

    Raises
    ------
    CohortError
        With every problem found, when at least one is an error.
    """
    file = str(source)
    problems: list[Problem] = list(extra_problems or [])
    raw = raw.fillna("").astype(str).reset_index(drop=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    raw, renamed, shadowed = _canonical_confounds(raw, file, problems, confounds)
    raw = _group_as_column(raw, file, group_column, require_group, problems)
    rows = pd.Series(np.arange(len(raw)) + 2, index=raw.index)  # header is row 1
    _check_columns(raw, file, group_column, problems)
    if skip_missing:
        raw, rows = _skip_unusable_rows(raw, rows, file, image_base, require_group, problems)
        if len(raw) == 0:
            problems.append(Problem(file, "--skip-missing dropped every row: no subject left"))
            raise CohortError(problems)

    table = pd.DataFrame({"row": rows})
    table["subject_id"] = _subject_ids(raw["subject_id"], rows, file, problems)
    table["group"], table["is_target"] = _groups(
        raw["group"], rows, file, group_column, control_label, patient_label, require_group, min_per_group, problems
    )
    table["image"] = _image_paths(raw["image"], rows, file, image_base, check_images, problems)
    confound_cols = tuple(c for c in CONFOUND_COLUMNS if c in raw.columns)
    for col in confound_cols:
        table[col] = _confound(raw[col], col, file, problems, rows)
    others = [c for c in raw.columns if c not in REQUIRED_COLUMNS + CONFOUND_COLUMNS + RESERVED_COLUMNS]
    score_cols = _score_columns(raw, others, scores, file, problems, rows)
    for col in score_cols:
        table[col] = _numeric_column(raw[col], file, col, problems, rows)
    for col in others:
        if col not in score_cols:
            table[col] = raw[col]

    roles = _roles(raw.columns, renamed, shadowed, score_cols, group_column)
    cohort = Cohort(
        table, source, control_label, patient_label, score_cols, confound_cols, group_column=group_column, roles=roles
    )
    if check_images:
        from sepclr_med.io.image_checks import check_alignment as _aligned
        from sepclr_med.io.image_checks import check_images as _check

        problems += _check(cohort, progress)
        if check_alignment and not any(p.severity == "error" for p in problems):
            cohort.alignment, found = _aligned(cohort, allow_unaligned=allow_unaligned, progress=progress)
            problems += found
    problems = [dataclasses.replace(p, column=renamed[p.column]) if p.column in renamed else p for p in problems]
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise CohortError(sorted(problems, key=lambda p: (p.row or 0, p.column or "")))
    cohort.warnings = [p for p in problems if p.severity != "error"]
    return cohort


def _group_as_column(
    raw: pd.DataFrame, file: str, group_column: str, require_group: bool, problems: list[Problem]
) -> pd.DataFrame:
    """The group under the canonical name ``group`` (or empty when unknown and not required)."""
    if group_column != "group":
        if "group" in raw.columns and group_column in raw.columns:
            raise CohortError(
                [Problem(file, f"both 'group' and '{group_column}' exist; keep one group column", None, "group")]
            )
        raw = raw.rename(columns={group_column: "group"})
    if "group" not in raw.columns and not require_group:
        raw = raw.assign(group="")
    return raw


def _check_columns(raw: pd.DataFrame, file: str, group_column: str, problems: list[Problem]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    for col in missing:
        problems.append(
            Problem(
                file,
                f"required column is missing (columns: {list(raw.columns)})",
                None,
                group_column if col == "group" else col,
            )
        )
    for col in RESERVED_COLUMNS:
        if col in raw.columns:
            problems.append(Problem(file, f"column name '{col}' is reserved by sepclr-med; rename it", None, col))
    if len(raw) == 0:
        problems.append(Problem(file, "the table has no subject rows"))
    if missing or len(raw) == 0:
        raise CohortError(problems)


def _skip_unusable_rows(
    raw: pd.DataFrame, rows: pd.Series, file: str, image_base: Path, require_group: bool, problems: list[Problem]
) -> tuple[pd.DataFrame, pd.Series]:
    """Drop rows without an image file or (where a group is required) a group; one warning lists
    them (``skip_missing``). Rows that already have an error (e.g. an ambiguous BIDS file) stay,
    so that the error is seen."""
    reasons = {}
    erred = {p.row for p in problems if p.severity == "error"}
    for idx, (cell, group) in enumerate(zip(raw["image"], raw["group"], strict=True)):
        if int(rows.iloc[idx]) in erred:
            continue
        kind = _locate(cell.strip(), image_base)[1] if cell.strip() else None
        if kind != "file" and kind != "unusable":  # an unusable name is an error, shown, not dropped
            reasons[idx] = "no image" if kind is None else "image not found"
        elif require_group and _is_missing(group):
            reasons[idx] = "no group"
    if reasons:
        listed = "; ".join(f"row {int(rows.iloc[i])} ({why})" for i, why in list(reasons.items())[:20])
        more = f"; and {len(reasons) - 20} more" if len(reasons) > 20 else ""
        problems.append(
            Problem(file, f"--skip-missing: {len(reasons)} row(s) dropped: {listed}{more}", severity="warning")
        )
    keep = ~np.isin(np.arange(len(raw)), list(reasons))
    return raw.loc[keep].reset_index(drop=True), rows.loc[keep].reset_index(drop=True)


def _subject_ids(raw: pd.Series, rows: pd.Series, file: str, problems: list[Problem]) -> pd.Series:
    ids = raw.str.strip()
    for idx in ids.index[ids == ""]:
        problems.append(Problem(file, "empty subject_id", int(rows[idx]), "subject_id"))
    dup = ids.duplicated(keep=False) & (ids != "")
    for sid, part in rows[dup].groupby(ids[dup]):
        listed = ", ".join(str(r) for r in part)
        for r in part.iloc[1:]:
            problems.append(Problem(file, f"duplicate subject_id {sid!r} (rows {listed})", int(r), "subject_id"))
    return ids


def _groups(
    raw: pd.Series,
    rows: pd.Series,
    file: str,
    column: str,
    control_label: str,
    patient_label: str,
    require_group: bool,
    min_per_group: int,
    problems: list[Problem],
) -> tuple[pd.Series, pd.Series]:
    """Group labels and ``is_target``; unknown labels, and missing ones where required, are errors."""
    labels = raw.str.strip()
    unknown = labels.map(_is_missing).astype(bool)
    if not require_group:
        labels = labels.where(~unknown, "")
    expected = f"expected {control_label!r} or {patient_label!r}"
    for idx in labels.index[~labels.isin({control_label, patient_label}) & (require_group | ~unknown)]:
        message = (
            f"no group label (empty or n/a); {expected} (--skip-missing drops rows without a group)"
            if unknown[idx]
            else f"unknown group label {labels[idx]!r}; {expected}"
        )
        problems.append(Problem(file, message, int(rows[idx]), column))
    counts = Counter(labels)
    for label in (control_label, patient_label):
        if counts.get(label, 0) < min_per_group:
            problems.append(
                Problem(
                    file,
                    f"group {label!r} has {counts.get(label, 0)} subject(s); SepCLR needs at least {min_per_group}",
                    None,
                    column,
                )
            )
    return labels, labels == patient_label


def _image_paths(
    raw: pd.Series, rows: pd.Series, file: str, image_base: Path, check_images: bool, problems: list[Problem]
) -> list[str]:
    images = []
    already_reported = {p.row for p in problems if p.severity == "error" and p.column == "participant_id"}
    for idx, cell in raw.items():
        cell = cell.strip()
        if not cell:
            if int(rows[idx]) not in already_reported:
                problems.append(Problem(file, "empty image path", int(rows[idx]), "image"))
            images.append("")
            continue
        path, kind = _locate(cell, image_base)
        images.append(str(path) if path is not None else "")
        if kind == "unusable" or (check_images and kind != "file"):
            what = {
                "folder": "is a folder, not an image file",
                "other": "is not a regular file (a pipe or a device?)",
                "missing": "image file not found",
            }.get(kind, "cannot be a file name (a NUL byte, a name too long, or a link loop)")
            problems.append(
                Problem(file, f"{what}: {cell!r}" if kind == "unusable" else f"{what}: {cell}", int(rows[idx]), "image")
            )
    shared = pd.Series(images)[pd.Series(images).duplicated(keep=False) & (pd.Series(images) != "")]
    for image, part in rows[shared.index].groupby(shared.values):
        listed = ", ".join(map(str, part.iloc[:10])) + (f" and {len(part) - 10} more" if len(part) > 10 else "")
        problems.append(
            Problem(
                file, f"rows {listed} use the same image file {image}", int(part.iloc[0]), "image", severity="warning"
            )
        )
    return images


def _why_absent(path: Path) -> str:
    """Why nothing can be read at ``path``: not found, or what the operating system said."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, None):
            return f"cannot be reached: {exc.strerror}"  # a link loop, a name too long, a file as a folder
    except ValueError as exc:  # NUL bytes
        return f"cannot be a file name ({exc})"
    return "not found"


def _locate(cell: str, image_base: Path) -> tuple[Path | None, str]:
    """The absolute path a table cell names and what is there: ``file``, ``folder``, ``other``,
    ``missing``, or ``unusable`` (no path can be made of it: NUL bytes, too long, a link loop)."""
    try:
        path = Path(os.path.expanduser(cell))
        path = (path if path.is_absolute() else image_base / path).resolve()
        if path.is_file():
            return path, "file"
        return path, "folder" if path.is_dir() else "other" if path.exists() else "missing"
    except (ValueError, OSError, RuntimeError):
        return None, "unusable"


def _confound(raw: pd.Series, col: str, file: str, problems: list[Problem], rows: pd.Series) -> pd.Series:
    if col == "age":
        values = _numeric_column(raw, file, col, problems, rows)
        lo, hi = AGE_RANGE
        for idx in values.index[(values < lo) | (values > hi)]:
            problems.append(
                Problem(file, f"age {raw[idx].strip()} is not a human age in years ({lo}-{hi})", int(rows[idx]), col)
            )
        return values
    if col in NUMERIC_CONFOUNDS:
        return _numeric_column(raw, file, col, problems, rows)
    if col == "sex":
        return _sex_column(raw, file, problems, rows)
    return raw.str.strip().where(~raw.map(_is_missing), None)


def _score_columns(
    raw: pd.DataFrame, others: list[str], scores: list[str] | None, file: str, problems: list[Problem], rows: pd.Series
) -> tuple[str, ...]:
    """The clinical-score columns: those declared, or else every all-numeric extra column.

    Undeclared, a column mixing numbers and text (``12``, ``16``, ``university``) can be a score
    with typing errors or a text column: it is an error naming its text cells, never dropped
    without a word. Declaring the scores (``--scores``) keeps every other column as text.
    """
    for col in scores or []:
        if col not in raw.columns:
            problems.append(Problem(file, "declared clinical-score column is missing", None, col))
    if scores is not None:
        return tuple(c for c in scores if c in raw.columns)
    found = tuple(c for c in others if _looks_numeric(raw[c]))
    for col in others:
        present = raw[col][~raw[col].map(_is_missing)]
        text = present[present.map(lambda v: _to_float(v) is None)]
        if col in found or len(text) == len(present):
            continue
        cells = ", ".join(f"row {rows[i]}: {v.strip()!r}" for i, v in text.head(5).items())
        more = f" and {len(text) - 5} more" if len(text) > 5 else ""
        problems.append(
            Problem(
                file,
                f"{len(present) - len(text)} number(s) and {len(text)} text cell(s) "
                f"({cells}{more}): a clinical score with typing errors? Fix those cells, "
                "or list the clinical scores with --scores (other columns are then "
                "kept as text)",
                None,
                col,
            )
        )
    return found


def _roles(columns, renamed: dict[str, str], shadowed: set[str], score_cols, group_column: str) -> dict[str, str]:
    """The role of every source column, under its original name."""
    roles = {}
    for col in columns:
        name = renamed.get(col, col)
        if col == "subject_id":
            roles[name] = "id"
        elif col == "image":
            roles[name] = "image"
        elif col == "group":
            roles[group_column] = "group"
        elif col in CONFOUND_COLUMNS:
            roles[name] = f"confound {col}"
        elif col in score_cols:
            roles[name] = "clinical score"
        else:
            roles[name] = "ignored (text, not used)"
    for col in sorted(shadowed):
        roles[col] = "ignored (another column is declared for this confound)"
    return roles


def read_csv_cohort(path: str | os.PathLike, *, group_column: str = "group", **kwargs) -> Cohort:
    """Read and validate a cohort CSV (or TSV). See :func:`build_cohort` for options.

    ``group_column`` names the column holding the group when it is not ``group``.
    """
    path = Path(path)
    raw, problems = read_table(path, "\t" if path.suffix.lower() == ".tsv" else ",")
    problems += kwargs.pop("extra_problems", None) or []
    return build_cohort(raw, path, image_base=path.parent, group_column=group_column, extra_problems=problems, **kwargs)


def read_table(path: Path, sep: str) -> tuple[pd.DataFrame, list[Problem]]:
    """Cells of a CSV/TSV as strings, exactly as written (no NA parsing, no renamed headers),
    and the problems of its layout, for :func:`build_cohort` to report with the others.

    Two columns whose names differ only in case or spaces are an error (the later one is
    dropped so that validation goes on); so is a row whose number of fields differs from the
    header's (a trailing comma shifts every cell after it). Raises :class:`CohortError` for a
    file that cannot be read, naming why (missing, a folder, permission, not UTF-8), or is empty.
    """
    file = str(path)
    if not path.exists():
        raise CohortError([Problem(file, f"cohort file {_why_absent(path)}")])
    if not path.is_file():
        raise CohortError([Problem(file, "is a folder or a device, not a cohort table")])
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = [row for row in csv.reader(f, delimiter=sep) if row]
    except PermissionError:
        raise CohortError([Problem(file, "cannot read the table: permission denied")]) from None
    except UnicodeDecodeError as exc:
        raise CohortError([Problem(file, f"not UTF-8 text (byte {exc.start}); save the table as UTF-8 CSV")]) from None
    except (OSError, csv.Error) as exc:
        raise CohortError([Problem(file, f"cannot read the table: {exc}")]) from None
    if not lines:
        raise CohortError([Problem(file, "the table is empty")])
    header, rows = lines[0], lines[1:]
    problems: list[Problem] = []
    seen: dict[str, tuple[int, str]] = {}
    keep: list[int] = []
    for i, name in enumerate(header):
        key = name.strip().lower()
        if not key and all(len(r) <= i or not r[i].strip() for r in rows):
            continue  # an unnamed, empty column (trailing separators): nothing to read
        if key in seen:
            problems.append(
                Problem(
                    file,
                    f"columns {seen[key][1]!r} (column {seen[key][0] + 1}) and {name!r} "
                    f"(column {i + 1}) have the same name; keep one",
                    None,
                    name.strip(),
                )
            )
        else:
            seen[key] = (i, name)
            keep.append(i)
    bad = [(n + 2, len(r)) for n, r in enumerate(rows) if len(r) != len(header)]
    for row, count in bad[:20]:
        problems.append(
            Problem(
                file,
                f"{count} fields where the header has {len(header)} (a trailing comma, or an "
                "unquoted comma inside a cell?)",
                row,
            )
        )
    if len(bad) > 20:
        problems.append(Problem(file, f"... and {len(bad) - 20} more rows with the wrong number of fields"))
    width = len(header)
    cells = [[(r + [""] * width)[i] for i in keep] for r in rows]  # ragged rows padded: reported above
    return pd.DataFrame(cells, columns=[header[i] for i in keep], dtype=str), problems
