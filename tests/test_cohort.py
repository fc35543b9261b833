"""Cohort reading and validation: every broken kind is named with file, row and column."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import make_image, write_cohort
from sepclr_med.cli.main import app
from sepclr_med.errors import CohortError
from sepclr_med.io.reading import read_cohort

runner = CliRunner()


def problems_of(path, **kwargs):
    with pytest.raises(CohortError) as info:
        read_cohort(path, **kwargs)
    return info.value.problems


def test_valid_cohort_is_read(tmp_path):
    cohort = read_cohort(write_cohort(tmp_path))
    assert len(cohort) == 6
    assert cohort.is_target.tolist() == [False] * 3 + [True] * 3
    assert cohort.confound_columns == ("age", "sex", "site")
    assert cohort.score_columns == ("panss_positive",)
    assert np.isnan(cohort.table["panss_positive"].iloc[0])  # empty for controls is allowed
    assert cohort.table["panss_positive"].iloc[5] == 15
    assert all(p.startswith(str(tmp_path)) for p in cohort.table["image"])
    assert cohort.warnings == []


def test_custom_group_labels(tmp_path):
    path = write_cohort(tmp_path)
    table = pd.read_csv(path)
    table["group"] = table["group"].map({"control": "HC", "patient": "SCZ"})
    table.to_csv(path, index=False)
    cohort = read_cohort(path, control_label="HC", patient_label="SCZ")
    assert cohort.is_target.sum() == 3


CELL_EDITS = {  # kinds made by writing one cell: (column, value)
    "negative_age": ("age", "-3"),
    "huge_age": ("age", "1e308"),
    "nul_in_path": ("image", "img/a\x00b.nii.gz"),
    "unknown_group": ("group", "patinet"),
    "score": ("panss_positive", "severe"),
    "age": ("age", "old"),
}


@pytest.mark.parametrize(
    "kind, row, column, words",
    [
        ("missing", 3, "image", "not found"),
        ("corrupt", 4, "image", "corrupt"),
        ("not3d", 5, "image", "4D"),
        ("nan", 6, "image", "NaN or Inf"),
        ("blank", 4, "image", "every voxel is 0: a blank image"),
        ("constant", 5, "image", "every voxel is 3: a constant image"),
        ("overflow", 6, "image", "exceed the float32 range"),
        ("complex", 7, "image", "not a real number"),
        ("analyze", 3, "image", "not a NIfTI file"),
        ("nifti_pair", 4, "image", "not a NIfTI file"),
        ("mgz", 5, "image", "not a NIfTI file"),
        ("mgz_renamed", 6, "image", "corrupt or not NIfTI"),
        ("voxel", 7, "image", "voxel size shape 7x8x9, voxels 25x4x4 mm is outside"),
        ("fov", 2, "image", "field of view"),
        ("lying_header", 3, "image", "refused before reading"),
        ("same_name_column", None, "Age", "have the same name; keep one"),
        ("trailing_comma", 4, None, "8 fields where the header has 7"),
        ("negative_age", 5, "age", "age -3 is not a human age"),
        ("huge_age", 6, "age", "age 1e308 is not a human age"),
        ("image_is_folder", 7, "image", "is a folder, not an image file"),
        ("nul_in_path", 3, "image", "cannot be a file name (a NUL byte"),
        ("duplicate", 3, "subject_id", "duplicate subject_id"),
        ("unknown_group", 7, "group", "unknown group label 'patinet'"),
        ("score", 6, "panss_positive", "not a finite number: 'severe'"),
        ("age", 2, "age", "not a finite number: 'old'"),
    ],
)
def test_each_broken_kind_names_row_and_column(tmp_path, kind, row, column, words):
    path = write_cohort(tmp_path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    i = (row or 2) - 2  # data index of spreadsheet row ``row``
    if kind == "missing":
        table.loc[i, "image"] = "img/nowhere.nii.gz"
    elif kind == "corrupt":
        (tmp_path / table.loc[i, "image"]).write_bytes(gzip.compress(b"not a nifti at all"))
    elif kind == "not3d":
        make_image(tmp_path / table.loc[i, "image"], np.ones((7, 8, 9, 2), np.float32))
    elif kind == "nan":
        data = np.ones((7, 8, 9), np.float32)
        data[1, 2, 3] = np.nan
        make_image(tmp_path / table.loc[i, "image"], data)
    elif kind in ("blank", "constant", "overflow", "complex"):
        value = {"blank": 0.0, "constant": 3.0, "overflow": 1e300, "complex": 1 + 1j}[kind]
        data = np.full((7, 8, 9), value, np.complex64 if kind == "complex" else np.float64)
        data[0, 0, 0] = 0 if kind != "blank" else data[0, 0, 0]  # not constant, except the blank one
        if kind == "constant":
            data[0, 0, 0] = 3.0
        make_image(tmp_path / table.loc[i, "image"], data)
    elif kind in ("analyze", "nifti_pair", "mgz", "mgz_renamed"):
        import nibabel as nib

        data = np.random.default_rng(0).uniform(0.1, 1, (7, 8, 9)).astype(np.float32)
        cls, name = {
            "analyze": (nib.AnalyzeImage, "x.img"),
            "nifti_pair": (nib.Nifti1Pair, "x.img"),
            "mgz": (nib.MGHImage, "x.mgz"),
            "mgz_renamed": (nib.MGHImage, "x.mgz"),
        }[kind]
        nib.save(cls(data, np.diag([4.0, 4, 4, 1])), str(tmp_path / name))
        if kind == "mgz_renamed":  # an .mgz renamed to .nii.gz: the content decides
            (tmp_path / name).rename(tmp_path / "x.nii.gz")
            name = "x.nii.gz"
        table.loc[i, "image"] = name
    elif kind == "voxel":
        make_image(tmp_path / table.loc[i, "image"], affine=np.diag([25.0, 4, 4, 1]))
    elif kind == "fov":
        make_image(tmp_path / table.loc[i, "image"], np.ones((700, 2, 2), np.float32) + np.arange(2)[None, None])
    elif kind == "lying_header":
        import nibabel as nib

        header = nib.Nifti1Header()
        header.set_data_shape((800, 800, 800))
        header.set_data_dtype(np.float32)
        header.set_zooms((0.3, 0.3, 0.3))
        header.set_sform(np.diag([0.3, 0.3, 0.3, 1]), code=1)
        target = tmp_path / "liar.nii"
        target.write_bytes(header.binaryblock + b"\0" * (352 - 348) + b"\0" * 4096)  # 4 KB of "voxels"
        table.loc[i, "image"] = "liar.nii"
    elif kind == "image_is_folder":
        (tmp_path / "a_folder").mkdir()
        table.loc[i, "image"] = "a_folder"
    elif kind == "duplicate":
        table.loc[i, "subject_id"] = table.loc[0, "subject_id"]
    elif kind in CELL_EDITS:
        cell_column, value = CELL_EDITS[kind]
        table.loc[i, cell_column] = value
    table.to_csv(path, index=False)
    if kind == "same_name_column":
        text = path.read_text().splitlines()
        path.write_text("\n".join([text[0] + ", Age "] + [line + ",40" for line in text[1:]]) + "\n")
    elif kind == "trailing_comma":
        text = path.read_text().splitlines()
        text[row - 1] += ","
        path.write_text("\n".join(text) + "\n")

    problems = [p for p in problems_of(path) if p.severity == "error"]
    assert any(p.row == row and p.column == column and words in p.message and p.file == str(path) for p in problems), (
        problems
    )

    result = runner.invoke(app, ["validate", "--cohort", str(path)])
    assert result.exit_code == 1
    assert (row is None or f"row {row}" in result.output) and (column is None or f"column '{column}'" in result.output)
    assert words in result.output
    assert "Traceback" not in result.output


def test_group_with_fewer_than_two_subjects(tmp_path):
    path = write_cohort(tmp_path, n_controls=4, n_patients=1)
    problems = problems_of(path)
    assert any(p.column == "group" and "'patient' has 1 subject" in p.message for p in problems)


def test_all_problems_are_listed_at_once(tmp_path):
    path = write_cohort(tmp_path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[0, "image"] = "img/missing.nii.gz"
    table.loc[1, "group"] = "other"
    table.loc[4, "panss_positive"] = "n.d."
    table.to_csv(path, index=False)
    found = {(p.row, p.column) for p in problems_of(path)}
    assert {(2, "image"), (3, "group"), (6, "panss_positive")} <= found


def test_missing_required_column(tmp_path):
    path = write_cohort(tmp_path)
    pd.read_csv(path).drop(columns=["group"]).to_csv(path, index=False)
    problems = problems_of(path)
    assert problems[0].column == "group" and "required column" in problems[0].message


def test_grid_mismatch_is_a_warning_not_an_error(tmp_path):
    path = write_cohort(tmp_path)
    make_image(tmp_path / "img" / "s04.nii.gz", shape=(9, 8, 7), affine=np.diag([3.0, 3.0, 3.0, 1.0]))
    cohort = read_cohort(path)
    assert len(cohort.warnings) == 1
    warning = cohort.warnings[0]
    assert warning.row == 6 and warning.column == "image" and "resample" in warning.message
    result = runner.invoke(app, ["validate", "--cohort", str(path), "--allow-unaligned"])  # random tiny volumes
    assert result.exit_code == 0
    assert "resample" in result.output


def test_declared_scores_must_exist_and_be_numeric(tmp_path):
    path = write_cohort(tmp_path, extra={"note": ["a", "b", "c", "d", "e", "f"]})
    cohort = read_cohort(path)
    assert "note" not in cohort.score_columns  # text columns are kept, not scores
    problems = problems_of(path, scores=["note", "panss_negative"])
    assert any(p.column == "note" and "not a finite number" in p.message for p in problems)
    assert any(p.column == "panss_negative" and "missing" in p.message for p in problems)


def test_bids_dataset(tmp_path, rng):
    rows = []
    for i in range(4):
        sub = f"sub-{i:02d}"
        make_image(tmp_path / sub / "anat" / f"{sub}_T1w.nii.gz", rng=rng)
        rows.append(
            {
                "participant_id": sub,
                "group": "control" if i < 2 else "patient",
                "age": 40 + i,
                "panss_positive": "n/a" if i < 2 else 20,
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "participants.tsv", sep="\t", index=False)
    cohort = read_cohort(tmp_path)
    assert cohort.subject_ids == ["sub-00", "sub-01", "sub-02", "sub-03"]
    assert cohort.table["image"].iloc[3].endswith("sub-03_T1w.nii.gz")
    assert cohort.score_columns == ("panss_positive",)

    (tmp_path / "sub-03" / "anat" / "sub-03_T1w.nii.gz").unlink()
    problems = problems_of(tmp_path / "participants.tsv")
    assert any(p.row == 5 and p.column == "participant_id" and "T1w" in p.message for p in problems)


def test_group_column_can_be_named(tmp_path):
    path = write_cohort(tmp_path)
    pd.read_csv(path).rename(columns={"group": "diagnosis"}).to_csv(path, index=False)
    assert read_cohort(path, group_column="diagnosis").is_target.sum() == 3
    result = runner.invoke(app, ["validate", "--cohort", str(path), "--group-column", "diagnosis", "--allow-unaligned"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["validate", "--cohort", str(path)])
    assert result.exit_code == 1 and "column 'group'" in result.output


def test_bids_dataset_given_by_a_relative_path(tmp_path, rng, monkeypatch):
    for i in range(4):
        make_image(tmp_path / "ds" / f"sub-{i:02d}" / "anat" / f"sub-{i:02d}_T1w.nii.gz", rng=rng)
    pd.DataFrame(
        {"participant_id": [f"sub-{i:02d}" for i in range(4)], "group": ["control", "control", "patient", "patient"]}
    ).to_csv(tmp_path / "ds" / "participants.tsv", sep="\t", index=False)
    monkeypatch.chdir(tmp_path)
    cohort = read_cohort("ds")
    assert cohort.table["image"].iloc[0] == str(tmp_path / "ds" / "sub-00" / "anat" / "sub-00_T1w.nii.gz")


def test_confounds_are_matched_by_meaning_not_spelling(tmp_path):
    path = write_cohort(tmp_path)
    table = pd.read_csv(path).rename(columns={"age": "Age_at_Scan", "sex": "Gender", "site": " Centre"})
    table["Gender"] = ["male", "F", "Woman", "m", "", "f"]
    table.to_csv(path, index=False)
    cohort = read_cohort(path)
    assert cohort.confound_columns == ("age", "sex", "site")
    assert cohort.table["sex"].tolist() == ["M", "F", "F", "M", None, "F"]
    assert "Age_at_Scan" not in cohort.score_columns and cohort.table["age"].dtype.kind == "f"


def test_unknown_sex_value_and_two_age_columns_are_errors(tmp_path):
    path = write_cohort(tmp_path)
    table = pd.read_csv(path)
    table["sex"] = ["M", "M,", "F", "F", "M", "2"]
    table["Age"] = table["age"]
    table.to_csv(path, index=False)
    problems = problems_of(path)
    assert {(p.row, p.column) for p in problems if "sex" in p.message and "is not one of" in p.message} == {
        (3, "sex"),
        (7, "sex"),
    }
    assert any("'age'" in p.message and "keep one" in p.message for p in problems)


def test_declared_confounds_and_the_role_of_every_column(tmp_path):
    path = write_cohort(
        tmp_path, extra={"Alter": [50, 51, 52, 53, 54, 55], "scanner": list("XYXYXY"), "note": list("abcdef")}
    )
    table = pd.read_csv(path).drop(columns=["site"])
    table.to_csv(path, index=False)
    cohort = read_cohort(path, confounds={"age": "Alter", "site": "scanner"})
    assert cohort.table["age"].tolist() == [50, 51, 52, 53, 54, 55] and cohort.table["site"].tolist() == list("XYXYXY")
    assert cohort.roles["Alter"] == "confound age" and cohort.roles["scanner"] == "confound site"
    assert cohort.roles["age"].startswith("ignored") and "age" not in cohort.score_columns  # shadowed, not a score
    assert cohort.roles["note"].startswith("ignored") and cohort.roles["panss_positive"] == "clinical score"
    problems = problems_of(path, confounds={"age": "Alter", "handedness": "note", "sex": "Geschlecht"})
    assert any("unknown confound 'handedness'" in p.message for p in problems)
    assert any(p.column == "Geschlecht" and "is missing" in p.message for p in problems)
    result = runner.invoke(
        app, ["validate", "--cohort", str(path), "--confounds", "age=Alter,site=scanner", "--allow-unaligned"]
    )
    assert result.exit_code == 0, result.output
    assert "Alter: confound age" in result.output and "subject_id: id" in result.output
    result = runner.invoke(app, ["validate", "--cohort", str(path), "--confounds", "age"])
    assert result.exit_code == 1 and "NAME=COLUMN" in result.output


def test_shared_images_are_a_warning_and_mixed_columns_an_error(tmp_path):
    path = write_cohort(tmp_path, extra={"education": ["12", "university", "n/a", "college", "high", "16"]})
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[4, "image"] = table.loc[1, "image"]
    table.to_csv(path, index=False)
    with pytest.raises(CohortError) as info:
        read_cohort(path)
    problems = {(p.row, p.column): p for p in info.value.problems}
    mixed = problems[(None, "education")]
    assert mixed.severity == "error" and "2 number(s) and 3 text cell(s)" in mixed.message
    assert "row 3: 'university'" in mixed.message and "row 6: 'high'" in mixed.message and "--scores" in mixed.message
    cohort = read_cohort(path, scores=["panss_positive"])  # scores declared: education is text
    assert "education" not in cohort.score_columns and list(cohort.table["education"])[1] == "university"
    messages = {(p.row, p.column): p.message for p in cohort.warnings}
    assert "rows 3, 6 use the same image file" in messages[(3, "image")]
    text_only = write_cohort(tmp_path / "t", extra={"scanner": ["1.5T", "3T", "3T", "n/a", "1.5T", "3T"]})
    assert "scanner" not in read_cohort(text_only).score_columns  # all text: a text column, no error


def test_csv_outputs_neutralise_formulas(tmp_path):
    from sepclr_med.atomic import write_table

    table = pd.DataFrame(
        {
            "subject_id": ['=HYPERLINK("http://x","y")', "+1", "@SUM(A1)", "-2", "\t=1", "\r=2", "ok"],
            "value": [-1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    written = pd.read_csv(write_table(tmp_path / "t.csv", table), keep_default_na=False)
    assert written["subject_id"].tolist() == [
        '\'=HYPERLINK("http://x","y")',
        "'+1",
        "'@SUM(A1)",
        "'-2",
        "'\t=1",
        "'\r=2",
        "ok",
    ]
    assert written["value"].tolist() == [-1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # numbers untouched
    exact = pd.read_csv(write_table(tmp_path / "t.tsv", table, safe=False), sep="\t", keep_default_na=False)
    assert exact["subject_id"].tolist() == table["subject_id"].tolist()
