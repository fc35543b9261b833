"""Read a BIDS dataset, raw or with its derivatives, into a :class:`~sepclr_med.io.cohort.Cohort`.

Subjects and their columns come from the raw dataset's ``participants.tsv``; each subject's image
is chosen among its files by BIDS entities (:class:`BidsSelection`):

- raw ``sub-X/[ses-Y/]anat/sub-X[_ses-Y][_...]_T1w.nii[.gz]`` (native space: the template-space
  check refuses them unless they were registered; prefer a derivatives dataset);
- ``--derivatives NAME|PATH``: ``DATASET/derivatives/NAME`` or any folder laid out as
  - fMRIPrep: ``sub-X/[ses-Y/]anat/sub-X_[ses-Y_]space-MNI152NLin2009cAsym_desc-preproc_T1w.nii.gz``
    and ``..._space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz`` (``--suffix probseg --label GM``);
  - CAT12: ``sub-X/[ses-Y/][anat/]mri/mwp1sub-X_[ses-Y_]T1w.nii`` (modulated GM, ``--suffix mwp1``);
  - Clinica/ClinicaDL CAPS t1-linear: ``subjects/sub-X/ses-Y/t1_linear/sub-X_ses-Y_T1w_space-
    MNI152NLin2009cSym[_desc-Crop]_res-1x1x1_T1w.nii.gz``.

Rules, in order: suffix (and ``label``, ``desc``) must match; ``space``: the one given, else the
MNI152 space when one exists (an error lists them when several MNI152 spaces remain), else the
files must agree on one space; ``session``: the one given, else the first session in sorted order
(a subject's baseline); ``run``: the lowest run. Files still tied are an error naming them.

Entities are parsed by :func:`parse_entities` (the BIDS file-name grammar, ``key-value`` pairs
joined by ``_`` and a final suffix) rather than by indexing the dataset with pybids'
``BIDSLayout``: a layout of every file of a large derivatives dataset is not needed to find one
image per subject.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sepclr_med.errors import CohortError, Problem
from sepclr_med.io.cohort import Cohort, build_cohort, read_table

BIDS_ID = re.compile(r"(sub-)?[A-Za-z0-9]+")
NIFTI = (".nii", ".nii.gz")
CAT12_PREFIX = re.compile(r"^(m?w?p[0-3])(?=sub-)")  # p1 GM, wp1 warped, mwp1 modulated warped (2 WM, 3 CSF)


def _natural(value: str) -> tuple:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def parse_entities(name: str) -> dict[str, str]:
    """BIDS entities of a file name, plus ``suffix`` and, for CAT12 outputs, ``prefix``.

    ``sub-01_ses-1_space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz`` gives ``sub``, ``ses``,
    ``space``, ``label`` and ``suffix = "probseg"``; ``mwp1sub-01_T1w.nii`` gives ``prefix = "mwp1"``
    (and ``suffix = "T1w"``). Parts that are neither (CAPS repeats ``T1w`` mid-name) are ignored.
    """
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name.rsplit(".", 1)[0]
    out = {}
    prefix = CAT12_PREFIX.match(stem)
    if prefix:
        out["prefix"], stem = prefix.group(1), stem[prefix.end() :]
    parts = stem.split("_")
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if sep and key and value:
            out.setdefault(key, value)
    out["suffix"] = parts[-1]
    return out


@dataclass(frozen=True)
class BidsSelection:
    """Which file of each subject becomes its image (module docstring for the rules).

    Parameters
    ----------
    derivatives : str or None
        A derivatives dataset: a name under ``DATASET/derivatives/`` or a path (relative to the
        current folder or absolute). None reads the raw dataset.
    space : str or None
        The ``space-`` entity; None prefers an MNI152 space.
    desc : str or None
        The ``desc-`` entity (e.g. ``preproc``); None accepts any.
    suffix : str
        ``T1w`` (default), ``probseg`` (with ``label``) or a CAT12 prefix such as ``mwp1``.
    label : str or None
        The ``label-`` entity of a ``probseg`` (e.g. ``GM``).
    session : str or None
        The ``ses-`` entity (without ``ses-``); None takes each subject's first session.
    """

    derivatives: str | None = None
    space: str | None = None
    desc: str | None = None
    suffix: str = "T1w"
    label: str | None = None
    session: str | None = None

    def __post_init__(self) -> None:
        if self.derivatives is not None:
            object.__setattr__(self, "derivatives", self.derivatives.rstrip("/\\") or self.derivatives)
        for key in ("space", "desc", "label", "session"):  # "ses-01" means "01"
            value = getattr(self, key)
            prefix = {"session": "ses-"}.get(key, f"{key}-")
            if value is not None and value.startswith(prefix):
                object.__setattr__(self, key, value[len(prefix) :])

    def stored(self, dataset: Path) -> dict[str, str]:
        """The non-default fields, derivatives as an absolute path: what a run records."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != BidsSelection.suffix}
        if self.derivatives is not None:
            fields["derivatives"] = str(self.image_root(dataset))
        return fields

    def image_root(self, dataset: Path) -> Path:
        """The folder whose files are searched."""
        if self.derivatives is None:
            return dataset
        named = dataset / "derivatives" / self.derivatives
        path = named if named.is_dir() and os.sep not in self.derivatives else Path(self.derivatives)
        path = path.expanduser().resolve()
        if not path.is_dir():
            raise CohortError(
                [Problem(str(path), f"--derivatives {self.derivatives!r}: no such folder (neither {named} nor a path)")]
            )
        return path

    def candidates(self, root: Path, subject: str) -> list[Path]:
        """Every NIfTI file of ``subject`` in the layouts the module docstring lists, sorted."""
        patterns = [
            f"{subject}/anat/*",
            f"{subject}/ses-*/anat/*",
            f"subjects/{subject}/ses-*/t1_linear/*",
            f"{subject}/mri/*",
            f"{subject}/anat/mri/*",
            f"{subject}/ses-*/mri/*",
            f"{subject}/ses-*/anat/mri/*",
        ]
        found = {p for pattern in patterns for p in root.glob(pattern)}
        return sorted(p for p in found if p.name.endswith(NIFTI) and f"{subject}_" in p.name + "_")

    def choose(self, files: list[Path], subject: str) -> tuple[Path | None, str | None, str | None]:
        """``(file, error, warning)`` for one subject's candidate ``files``; ``file`` None and
        ``error`` None when no file matches at all (a missing image, which ``skip_missing`` drops)."""
        entities = {f: parse_entities(f.name) for f in files}
        keep = [f for f, e in entities.items() if e.get("sub") == subject[4:] and self._matches(e)]
        if not keep:
            return None, None, None
        # the space is the cohort's (read_bids_cohort sets it for everyone); files of another space are
        # not this subject's image: none left is a missing image (skip_missing drops it)
        keep = [f for f in keep if self.space is None or entities[f].get("space", "") == self.space]
        if not keep:
            return None, None, None
        sessions = sorted({entities[f].get("ses", "") for f in keep}, key=_natural)
        keep = [f for f in keep if entities[f].get("ses", "") == sessions[0]]
        runs = sorted({entities[f].get("run", "") for f in keep}, key=_natural)
        keep = [f for f in keep if entities[f].get("run", "") == runs[0]]
        if len(keep) > 1:
            differ = sorted({k for f in keep for k in entities[f] if len({entities[g].get(k) for g in keep}) > 1})
            return (
                None,
                (
                    f"{len(keep)} files fit {self.describe()} and differ in {', '.join(differ)}: "
                    f"{', '.join(f.name for f in keep)}; --desc, --label, --space and --session choose among "
                    "them; for other entities give a cohort table whose image column names the files"
                ),
                None,
            )
        notes = [
            f"{len(sessions)} sessions, ses-{sessions[0]} used" if len(sessions) > 1 else "",
            f"{len(runs)} runs, run-{runs[0]} used" if len(runs) > 1 else "",
        ]
        return keep[0], None, "; ".join(n for n in notes if n) or None

    def spaces(self, files: list[Path], subject: str) -> set[str]:
        """The ``space-`` values ("" for none) of the files that match everything but the space."""
        entities = [parse_entities(f.name) for f in files]
        return {e.get("space", "") for e in entities if e.get("sub") == subject[4:] and self._matches(e)}

    def _matches(self, e: dict[str, str]) -> bool:
        if CAT12_PREFIX.match(self.suffix + "sub-"):
            ok = e.get("prefix") == self.suffix
        else:
            ok = e.get("prefix") is None and e["suffix"] == self.suffix
        return (
            ok
            and (self.desc is None or e.get("desc") == self.desc)
            and (self.label is None or e.get("label") == self.label)
            and (self.session is None or e.get("ses") == self.session)
        )

    def describe(self) -> str:
        """The selection in words, for messages."""
        parts = [f"suffix {self.suffix}"] + [
            f"{k} {v}"
            for k, v in (("space", self.space), ("desc", self.desc), ("label", self.label), ("ses", self.session))
            if v is not None
        ]
        return ", ".join(parts)


SAFE_VALUE = re.compile(r"[A-Za-z0-9]+")
OUTPUT_ENTITIES = ("sub", "ses", "space", "res")  # kept from the input's name, in BIDS order


def derivative_path(out: Path, image: str | os.PathLike, *, desc: str, suffix: str, extension: str) -> Path:
    """Where an output about ``image`` goes in a BIDS-derivatives dataset rooted at ``out``.

    ``sub-01_ses-2_space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz`` with ``desc="salient"``,
    ``suffix="saliency"`` gives
    ``out/sub-01/ses-2/anat/sub-01_ses-2_space-MNI152NLin2009cAsym_desc-salient_saliency.nii.gz``.
    Entity values that are not alphanumeric (a file name can hold anything) are an error: they
    would make paths outside ``out``.
    """
    entities = parse_entities(Path(image).name)
    kept = [(k, entities[k]) for k in OUTPUT_ENTITIES if k in entities]
    bad = [f"{k}-{v}" for k, v in kept if not SAFE_VALUE.fullmatch(v)]
    if bad or not kept or kept[0][0] != "sub":
        from sepclr_med.errors import SepclrError

        raise SepclrError(f"{image}: cannot name a BIDS output from this file name (entities {bad or 'no sub-'}) ")
    folder = out / f"sub-{entities['sub']}" / (f"ses-{entities['ses']}" if "ses" in entities else "") / "anat"
    name = "_".join(f"{k}-{v}" for k, v in kept) + f"_desc-{desc}_{suffix}{extension}"
    return folder / name


def write_dataset_description(out: Path, source: Path) -> Path:
    """``dataset_description.json`` of a sepclr-med derivatives dataset built from ``source``."""
    import json

    from sepclr_med import __version__
    from sepclr_med.atomic import write_text
    from sepclr_med.errors import SepclrError

    path = Path(out) / "dataset_description.json"
    if Path(out).resolve() == Path(source).resolve():
        raise SepclrError(
            f"--out {out} is the input BIDS dataset itself; give e.g. {Path(source) / 'derivatives' / 'sepclr-med'}"
        )
    if path.is_file():
        try:
            owner = json.loads(path.read_text())["GeneratedBy"][0]["Name"]
        except (ValueError, KeyError, IndexError, TypeError):
            owner = None
        if owner != "sepclr-med":
            raise SepclrError(
                f"--out {out} holds another dataset ({path} is not sepclr-med's); give a folder of its "
                f"own, e.g. {Path(source) / 'derivatives' / 'sepclr-med'}"
            )
    description = {
        "Name": "sepclr-med outputs",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "sepclr-med", "Version": __version__}],
        "SourceDatasets": [{"URL": Path(source).resolve().as_uri()}],
    }
    return write_text(path, json.dumps(description, indent=2))


def read_bids_cohort(
    path: str | os.PathLike, *, group_column: str = "group", selection: BidsSelection | None = None, **kwargs
) -> Cohort:
    """Read a BIDS dataset into a :class:`~sepclr_med.io.cohort.Cohort`.

    Parameters
    ----------
    path : path-like
        The dataset folder or its ``participants.tsv`` (relative or absolute).
    group_column : str
        Column of ``participants.tsv`` holding the group label.
    selection : BidsSelection, optional
        Which file becomes each subject's image (default: raw ``T1w``).
    **kwargs
        Passed to :func:`~sepclr_med.io.cohort.build_cohort`.

    Notes
    -----
    ``participant_id`` becomes ``subject_id``. A subject without a matching file is an error on
    its row (``skip_missing=True`` drops it); the chosen file, session and run are listed as a
    warning when a rule had to choose. Raw ``T1w`` images are native-space: a warning says so.
    """
    selection = selection or BidsSelection()
    path = Path(path)
    root = (path if path.is_dir() else path.parent).resolve()  # found images are then absolute
    tsv = root / "participants.tsv"
    if not tsv.is_file():
        hint = (
            f"; this folder holds {', '.join(p.name for p in sorted(root.glob('*.csv'))[:3])}: give the table itself"
            if any(root.glob("*.csv"))
            else ""
        )
        raise CohortError([Problem(str(tsv), f"BIDS participants.tsv not found{hint}")])
    raw, layout = read_table(tsv, "\t")
    for clash in ("subject_id", "image"):
        if clash in raw.columns:
            raise CohortError(
                [
                    Problem(
                        str(tsv),
                        f"column '{clash}' clashes with the BIDS mapping "
                        "(participant_id -> subject_id, the chosen file -> image)",
                        None,
                        clash,
                    )
                ]
            )
    if "participant_id" not in raw.columns:
        raise CohortError([Problem(str(tsv), "required column is missing", None, "participant_id")])
    image_root = selection.image_root(root)
    ids = raw["participant_id"].str.strip()
    subjects = [pid if pid.startswith("sub-") else f"sub-{pid}" for pid in ids]
    files = {
        sub: selection.candidates(image_root, sub) if BIDS_ID.fullmatch(pid) else []
        for pid, sub in zip(ids, subjects, strict=True)
    }
    if selection.space is None:
        selection = dataclasses.replace(selection, space=_cohort_space(files, selection, tsv))
    problems, images = _choose_images(ids, tsv, image_root, selection, files, kwargs)
    problems = layout + problems
    if selection.derivatives is None and selection.suffix == "T1w":
        problems.append(
            Problem(
                str(tsv),
                "raw BIDS T1w images are in the scanner's (native) space; the model needs "
                "template-space images: give --derivatives (fMRIPrep, CAT12, CAPS)",
                severity="warning",
            )
        )
    table = raw.rename(columns={"participant_id": "subject_id"})
    table["subject_id"] = [sub if BIDS_ID.fullmatch(pid) else pid for pid, sub in zip(ids, subjects, strict=True)]
    table["image"] = images
    try:
        cohort = build_cohort(table, tsv, image_base=root, extra_problems=problems, group_column=group_column, **kwargs)
    except CohortError as exc:
        raise CohortError(_as_participant_problems(exc.problems)) from None
    cohort.bids_root = root
    cohort.bids_selection = selection.stored(root)
    cohort.warnings = _as_participant_problems(cohort.warnings)
    cohort.roles = {
        ("participant_id" if c == "subject_id" else c): (
            "image, chosen by " + selection.describe() if c == "image" else r
        )
        for c, r in cohort.roles.items()
    }
    return cohort


def _cohort_space(files: dict[str, list[Path]], selection: BidsSelection, tsv: Path) -> str | None:
    """One space for the whole cohort: the MNI152 one when one exists, else the only one."""
    counts: dict[str, int] = {}
    for subject, found in files.items():
        for space in selection.spaces(found, subject):
            counts[space] = counts.get(space, 0) + 1
    mni = sorted(s for s in counts if s.startswith("MNI152"))
    if len(mni) == 1 or (not mni and len(counts) == 1):
        return (mni or list(counts))[0]
    if not counts:
        return None  # no file at all: each subject's row says so
    listed = ", ".join(f"{s or '(none: native)'} ({n} subjects)" for s, n in sorted(counts.items()))
    raise CohortError(
        [
            Problem(
                str(tsv),
                f"images exist in several spaces: {listed}; choose one with --space "
                "(every subject must be in the same space)",
            )
        ]
    )


def _as_participant_problems(problems: list[Problem]) -> list[Problem]:
    """Problems of the cohort table named by the columns of ``participants.tsv``."""
    out, flagged = [], {p.row for p in problems if p.column == "participant_id" and p.severity == "error"}
    for p in problems:
        if p.column == "subject_id" and p.message == "empty subject_id" and p.row in flagged:
            continue  # already said: not a BIDS label
        out.append(dataclasses.replace(p, column="participant_id") if p.column in ("subject_id", "image") else p)
    return out


def _choose_images(
    ids: pd.Series, tsv: Path, root: Path, selection: BidsSelection, files: dict[str, list[Path]], kwargs: dict
) -> tuple[list[Problem], list[str]]:
    """One image path per participant ("" when none) and the problems met."""
    problems, images = [], []
    skip = kwargs.get("skip_missing", False)
    for i, pid in enumerate(ids):
        row = i + 2
        if not BIDS_ID.fullmatch(pid):
            problems.append(
                Problem(
                    str(tsv), f"participant_id {pid!r} is not a BIDS label (sub-<alphanumeric>)", row, "participant_id"
                )
            )
            images.append("")
            continue
        subject = pid if pid.startswith("sub-") else f"sub-{pid}"
        chosen, error, note = selection.choose(files[subject], subject)
        if chosen is None and error is None and not skip:  # skip_missing: the row is dropped, listed once
            error = f"no image matches {selection.describe()} ({len(files[subject])} NIfTI file(s) of {subject} seen)"
        if error:
            problems.append(Problem(str(tsv), f"{subject}: {error} (in {root})", row, "participant_id"))
        if note:
            problems.append(Problem(str(tsv), f"{subject}: {note}", row, "participant_id", severity="warning"))
        images.append(str(chosen) if chosen else "")
    return problems, images
