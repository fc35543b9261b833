"""BIDS as BIDS users expect: raw and derivatives side by side, spaces, sessions, runs, n/a
groups, CAT12 and CAPS layouts, relative paths, and the file-selection options on the CLI."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import make_image
from sepclr_med.cli.main import app
from sepclr_med.errors import CohortError
from sepclr_med.io.bids import BidsSelection, parse_entities
from sepclr_med.io.reading import read_cohort

runner = CliRunner()
MNI = "MNI152NLin2009cAsym"


def _dataset(root, rng, n=4, groups=None, sessions=("",)):
    """Raw dataset + an fMRIPrep-like derivatives dataset with native and MNI files side by side."""
    groups = groups or ["control"] * (n // 2) + ["patient"] * (n - n // 2)
    for i in range(n):
        sub = f"sub-{i:02d}"
        for ses in sessions:
            folder, stem = (f"{sub}/ses-{ses}/anat", f"{sub}_ses-{ses}") if ses else (f"{sub}/anat", sub)
            make_image(root / folder / f"{stem}_T1w.nii.gz", rng=rng)
            fmriprep = root / "derivatives" / "fmriprep" / folder
            make_image(fmriprep / f"{stem}_desc-preproc_T1w.nii.gz", rng=rng)  # native
            make_image(fmriprep / f"{stem}_space-{MNI}_desc-preproc_T1w.nii.gz", rng=rng)
            make_image(fmriprep / f"{stem}_space-{MNI}_desc-brain_mask.nii.gz", rng=rng)
            make_image(fmriprep / f"{stem}_space-{MNI}_label-GM_probseg.nii.gz", rng=rng)
    pd.DataFrame(
        {"participant_id": [f"sub-{i:02d}" for i in range(n)], "group": groups, "Age": [30 + i for i in range(n)]}
    ).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root


def test_entities_of_bids_cat12_and_caps_names():
    assert parse_entities(f"sub-01_ses-2_space-{MNI}_label-GM_probseg.nii.gz") == {
        "sub": "01",
        "ses": "2",
        "space": MNI,
        "label": "GM",
        "suffix": "probseg",
    }
    assert parse_entities("mwp1sub-01_ses-1_T1w.nii") == {"prefix": "mwp1", "sub": "01", "ses": "1", "suffix": "T1w"}
    caps = parse_entities("sub-01_ses-M000_T1w_space-MNI152NLin2009cSym_desc-Crop_res-1x1x1_T1w.nii.gz")
    assert caps["space"] == "MNI152NLin2009cSym" and caps["desc"] == "Crop" and caps["suffix"] == "T1w"


def test_derivatives_prefer_the_mni_file_over_the_native_one(tmp_path, rng):
    root = _dataset(tmp_path / "ds", rng)
    cohort = read_cohort(root, selection=BidsSelection(derivatives="fmriprep", desc="preproc"))
    assert all(f"space-{MNI}_desc-preproc_T1w" in p for p in cohort.table["image"])
    assert cohort.confound_columns == ("age",)  # "Age" read as the age confound
    gm = read_cohort(root, selection=BidsSelection(derivatives="fmriprep", suffix="probseg", label="GM"))
    assert all(p.endswith("label-GM_probseg.nii.gz") for p in gm.table["image"])
    # the native file on its own: --space T1w style selection of the file without a space entity
    with pytest.raises(CohortError) as info:
        read_cohort(root, selection=BidsSelection(derivatives="fmriprep", space="MNI152NLin6Asym"))
    assert "no image matches suffix T1w, space MNI152NLin6Asym" in str(info.value) and info.value.problems[0].row == 2


def test_several_mni_spaces_are_an_error_listing_them(tmp_path, rng):
    root = _dataset(tmp_path / "ds", rng, n=2, groups=["control", "patient"])
    make_image(root / "derivatives/fmriprep/sub-00/anat/sub-00_space-MNI152NLin6Asym_desc-preproc_T1w.nii.gz", rng=rng)
    with pytest.raises(CohortError) as info:
        read_cohort(root, selection=BidsSelection(derivatives="fmriprep", desc="preproc"), min_per_group=1)
    message = str(info.value)
    assert "several spaces" in message and MNI in message and "MNI152NLin6Asym" in message and "--space" in message
    chosen = read_cohort(
        root, selection=BidsSelection(derivatives="fmriprep", desc="preproc", space=MNI), min_per_group=1
    )
    assert len(chosen) == 2


def test_sessions_and_runs_follow_the_documented_rule(tmp_path, rng):
    root = _dataset(tmp_path / "ds", rng, sessions=("2", "10"))
    make_image(root / "sub-00/ses-2/anat/sub-00_ses-2_run-2_T1w.nii.gz", rng=rng)
    (root / "sub-00/ses-2/anat/sub-00_ses-2_T1w.nii.gz").rename(
        root / "sub-00/ses-2/anat/sub-00_ses-2_run-10_T1w.nii.gz"
    )
    cohort = read_cohort(root)
    assert cohort.table["image"].iloc[0].endswith("sub-00_ses-2_run-2_T1w.nii.gz")  # ses 2 < 10, run 2 < 10
    assert all("ses-2" in p for p in cohort.table["image"])
    notes = " ".join(p.message for p in cohort.warnings)
    assert "2 sessions, ses-2 used" in notes and "2 runs, run-2 used" in notes and "native" in notes
    later = read_cohort(root, selection=BidsSelection(session="ses-10"))  # the prefix is optional
    assert all("ses-10" in p for p in later.table["image"])


def test_na_groups_and_missing_images_are_listed_at_once_or_skipped(tmp_path, rng):
    root = _dataset(tmp_path / "ds", rng, n=6, groups=["control", "control", "n/a", "patient", "patient", "control"])
    (root / "sub-05/anat/sub-05_T1w.nii.gz").unlink()
    with pytest.raises(CohortError) as info:
        read_cohort(root)
    found = {(p.row, p.column) for p in info.value.problems if p.severity == "error"}
    assert found == {(4, "group"), (7, "participant_id")}
    cohort = read_cohort(root, skip_missing=True)
    assert cohort.subject_ids == ["sub-00", "sub-01", "sub-03", "sub-04"]
    dropped = next(p for p in cohort.warnings if "--skip-missing" in p.message)
    assert (
        "2 row(s) dropped" in dropped.message
        and "row 4 (no group)" in dropped.message
        and "row 7 (no image)" in dropped.message
    )
    assert cohort.table["row"].tolist() == [2, 3, 5, 6]  # rows still name the spreadsheet's


def test_cat12_and_caps_layouts(tmp_path, rng):
    cat = tmp_path / "ds" / "derivatives" / "CAT12.8"
    caps = tmp_path / "caps"
    for i in range(4):
        sub = f"sub-{i:02d}"
        make_image(cat / sub / "anat" / "mri" / f"mwp1{sub}_T1w.nii", rng=rng)
        make_image(cat / sub / "anat" / "mri" / f"p1{sub}_T1w.nii", rng=rng)
        make_image(
            caps
            / "subjects"
            / sub
            / "ses-M000"
            / "t1_linear"
            / f"{sub}_ses-M000_T1w_space-MNI152NLin2009cSym_desc-Crop_res-1x1x1_T1w.nii.gz",
            rng=rng,
        )
    pd.DataFrame(
        {"participant_id": [f"sub-{i:02d}" for i in range(4)], "group": ["control", "control", "patient", "patient"]}
    ).to_csv(tmp_path / "ds" / "participants.tsv", sep="\t", index=False)
    gm = read_cohort(tmp_path / "ds", selection=BidsSelection(derivatives="CAT12.8", suffix="mwp1"))
    assert all(p.endswith(f"mri/mwp1{s}_T1w.nii") for p, s in zip(gm.table["image"], gm.subject_ids, strict=True))
    crop = read_cohort(tmp_path / "ds", selection=BidsSelection(derivatives=str(caps), desc="Crop"))
    assert all("t1_linear" in p and "desc-Crop" in p for p in crop.table["image"])


def test_cli_reads_derivatives_by_relative_path_and_refuses_bids_options_on_a_table(tmp_path, rng, monkeypatch):
    _dataset(tmp_path / "ds", rng)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "validate",
            "--cohort",
            "ds",
            "--derivatives",
            "ds/derivatives/fmriprep",
            "--suffix",
            "probseg",
            "--label",
            "GM",
            "--allow-unaligned",
        ],
    )  # random volumes
    assert result.exit_code == 0, result.output
    assert "0 of 4 scans in MNI152 space" in result.output and "is not in MNI152 template space" in result.output
    assert "Age: confound age" in result.output and "participant_id: id" in result.output
    pd.DataFrame({"subject_id": ["a"], "image": ["x.nii"], "group": ["control"]}).to_csv("t.csv", index=False)
    result = runner.invoke(app, ["validate", "--cohort", "t.csv", "--space", MNI])
    assert result.exit_code == 1 and "select files of a BIDS dataset" in result.output


def test_outputs_are_bids_derivatives_for_a_bids_cohort(tiny_cohort, tmp_path):
    """Train on a BIDS derivatives dataset, then explain and embed write BIDS-named outputs."""
    import json
    import shutil

    table = pd.read_csv(tiny_cohort.cohort_csv)
    ds = tmp_path / "ds"
    for sid, image in zip(table["subject_id"], table["image"], strict=True):
        target = (
            ds / "derivatives" / "cat" / sid / "ses-1" / "anat" / f"{sid}_ses-1_space-{MNI}_label-GM_probseg.nii.gz"
        )
        target.parent.mkdir(parents=True)
        shutil.copyfile(tiny_cohort.root / image, target)
    table.rename(columns={"subject_id": "participant_id"}).drop(columns=["image"]).to_csv(
        ds / "participants.tsv", sep="\t", index=False
    )
    select = ["--derivatives", "cat", "--suffix", "probseg", "--label", "GM"]
    result = runner.invoke(
        app,
        [
            "train",
            "--cohort",
            str(ds),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            *select,
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "explain",
            "--run",
            str(tmp_path / "run"),
            "--cohort",
            str(ds),
            "--out",
            str(tmp_path / "explain"),
            "--steps",
            "2",
            "--no-figures",
            *select,
        ],
    )
    assert result.exit_code == 0, result.output
    patient = table.loc[table["group"] == "patient", "subject_id"].iloc[0]
    stem = tmp_path / "explain" / patient / "ses-1" / "anat" / f"{patient}_ses-1_space-{MNI}_desc-salient"
    assert (stem.parent / (stem.name + "_saliency.nii.gz")).is_file()
    assert "region" in (stem.parent / (stem.name + "_regions.tsv")).read_text().split("\n")[0]
    description = json.loads((tmp_path / "explain" / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "sepclr-med"
    from sepclr_med.run import Run

    assert Run(tmp_path / "run").config.bids_selection == {
        "derivatives": str(ds / "derivatives" / "cat"),
        "space": MNI,
        "suffix": "probseg",
        "label": "GM",
    }
    assert "image" in pd.read_csv(tmp_path / "run" / "cohort.csv").columns  # the run keeps the chosen images
    result = runner.invoke(
        app,
        [
            "embed",
            "--run",
            str(tmp_path / "run"),
            "--cohort",
            str(ds),
            "--out",
            str(tmp_path / "latents"),
            "--device",
            "cpu",
        ],
    )  # the run's selection is reused
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "latents").glob("sub-*/ses-1/anat/*_desc-sepclr_latents.tsv"))
    assert len(files) == len(table) and "salient_0" in files[0].read_text()


def test_output_names_never_leave_the_output_folder(tmp_path):
    from sepclr_med.errors import SepclrError
    from sepclr_med.io.bids import derivative_path

    good = derivative_path(
        tmp_path, "/x/sub-01_ses-2_acq-fast_T1w.nii.gz", desc="salient", suffix="saliency", extension=".nii.gz"
    )
    assert good == tmp_path / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_desc-salient_saliency.nii.gz"
    with pytest.raises(SepclrError):
        derivative_path(tmp_path, "/x/sub-01_ses-.._T1w.nii.gz", desc="salient", suffix="saliency", extension=".nii.gz")


def test_review_findings_on_bids_reading(tmp_path, rng, monkeypatch):
    """Session-6 review: one space per cohort, ids with and without sub-, normalised options,
    --skip-missing that leaves nobody, foreign datasets as --out."""
    from sepclr_med.errors import SepclrError
    from sepclr_med.io.bids import write_dataset_description

    root = _dataset(tmp_path / "ds", rng)
    fmriprep = root / "derivatives" / "fmriprep"
    for p in (fmriprep / "sub-02" / "anat").glob(f"*space-{MNI}*"):  # sub-02 only in another MNI space
        p.rename(p.with_name(p.name.replace(MNI, "MNI152NLin6Asym")))
    with pytest.raises(CohortError) as info:
        read_cohort(root, selection=BidsSelection(derivatives="fmriprep/", desc="preproc"))  # trailing slash ok
    assert "several spaces" in str(info.value) and "MNI152NLin6Asym (1 subjects)" in str(info.value)
    with pytest.raises(CohortError) as info:  # one space for all: sub-02 has none in it
        read_cohort(root, selection=BidsSelection(derivatives="fmriprep", desc="preproc", space=f"space-{MNI}"))
    assert [p.row for p in info.value.problems if p.severity == "error"] == [4]
    with pytest.raises(CohortError) as info:  # nobody left
        read_cohort(root, selection=BidsSelection(derivatives="fmriprep", space="nowhere"), skip_missing=True)
    assert "dropped every row" in str(info.value)

    table = pd.read_csv(root / "participants.tsv", sep="\t")
    table.loc[1, "participant_id"] = "00"  # the same participant as sub-00
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    with pytest.raises(CohortError) as info:
        read_cohort(root)
    assert any(
        p.column == "participant_id" and "duplicate subject_id 'sub-00'" in p.message for p in info.value.problems
    )

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "dataset_description.json").write_text(
        '{"Name": "fmriprep", "GeneratedBy": [{"Name": "fMRIPrep"}]}'
    )
    with pytest.raises(SepclrError, match="holds another dataset"):
        write_dataset_description(tmp_path / "foreign", root)
    with pytest.raises(SepclrError, match="the input BIDS dataset itself"):
        write_dataset_description(root, root)
    assert write_dataset_description(tmp_path / "ours", root).is_file()
    assert write_dataset_description(tmp_path / "ours", root).is_file()  # ours: rewritten


def test_skip_missing_keeps_subjects_without_a_diagnosis_where_none_is_needed(tmp_path):
    from conftest import write_cohort

    path = write_cohort(tmp_path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[1, "group"] = "n/a"
    table.loc[2, "image"] = "img/gone.nii.gz"
    table.to_csv(path, index=False)
    cohort = read_cohort(path, require_group=False, min_per_group=0, skip_missing=True)
    assert len(cohort) == 5 and cohort.table["group"].iloc[1] == ""  # only the subject without an image left
    with pytest.raises(CohortError):
        read_cohort(path, confounds={"age": "age", "site": "age"})
