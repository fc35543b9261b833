"""Scans not in template space are refused by validate and train (one message naming file, row
and column, nothing written), accepted with --allow-unaligned (and recorded), and listed worst
first by validate --qc-out."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from sepclr_med.cli.main import app

runner = CliRunner()


@pytest.fixture()
def rotated_cohort(simulated, tmp_path):
    """The simulated cohort (6 mm, 12 + 12) with subject row 5's scan rotated by 10 degrees."""
    table = pd.read_csv(simulated.cohort_csv)
    table["image"] = [str(simulated.root / p) for p in table["image"]]
    img = nib.load(table.loc[3, "image"])
    data = ndimage.rotate(np.asarray(img.dataobj, dtype=np.float32), 10.0, axes=(1, 2), reshape=False, order=1)
    table.loc[3, "image"] = str(tmp_path / "rotated.nii.gz")
    nib.save(nib.Nifti1Image(data, img.affine), table.loc[3, "image"])
    path = tmp_path / "cohort.csv"
    table.to_csv(path, index=False)
    return path, table.loc[3, "subject_id"]


def test_every_simulated_scan_passes(simulated):
    from sepclr_med.io.reading import read_cohort

    cohort = read_cohort(simulated.cohort_csv, check_alignment=True)
    assert cohort.alignment["aligned"].all() and len(cohort.alignment) == 24


def test_validate_and_train_refuse_a_rotated_scan(rotated_cohort, tmp_path):
    path, sid = rotated_cohort
    result = runner.invoke(app, ["validate", "--cohort", str(path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{sid} is not in MNI152 template space" in result.output
    assert "row 5" in result.output and "column 'image'" in result.output and str(path) in result.output
    result = runner.invoke(
        app, ["train", "--cohort", str(path), "--out", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu"]
    )
    assert result.exit_code == 1 and "not in MNI152 template space" in result.output
    assert not (tmp_path / "run").exists()  # nothing written


def test_allow_unaligned_goes_on_and_is_recorded(rotated_cohort, tmp_path):
    from sepclr_med.run import Run

    path, sid = rotated_cohort
    result = runner.invoke(
        app, ["validate", "--cohort", str(path), "--allow-unaligned", "--qc-out", str(tmp_path / "qc")]
    )
    assert result.exit_code == 0, result.output
    assert "23 of 24 scans in MNI152 space" in result.output
    measures = pd.read_csv(tmp_path / "qc" / "alignment.tsv", sep="\t")
    assert measures["subject_id"].iloc[0] == sid and not measures["aligned"].iloc[0]  # worst first
    assert measures["aligned"].iloc[1:].all()
    html = (tmp_path / "qc" / "qc.html").read_text()
    assert html.count("data:image/png;base64,") == 24 and html.index(sid) < html.index('<span class="ok">')
    result = runner.invoke(
        app,
        [
            "train",
            "--cohort",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--allow-unaligned",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 scan(s) are not in MNI152 template space" in result.output
    run = Run(tmp_path / "run")
    assert run.config.allow_unaligned
    assert (
        f"not in MNI152 template space**, trained on anyway (`allow_unaligned`): {sid}"
        in (tmp_path / "run" / "MODEL_CARD.md").read_text()
    )


def test_the_qc_page_is_written_when_scans_fail(rotated_cohort, tmp_path):
    path, sid = rotated_cohort
    result = runner.invoke(app, ["validate", "--cohort", str(path), "--qc-out", str(tmp_path / "qc")])
    assert result.exit_code == 1 and f"{sid} is not in MNI152 template space" in result.output
    assert "OK" not in result.output and (tmp_path / "qc" / "qc.html").is_file()
    (tmp_path / "a_file").write_text("x")
    result = runner.invoke(app, ["validate", "--cohort", str(path), "--qc-out", str(tmp_path / "a_file")])
    assert result.exit_code == 1 and "is a file; give a folder" in result.output and "Traceback" not in result.output
