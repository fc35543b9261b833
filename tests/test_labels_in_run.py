"""Labels travel with the run: a run trained with its own group column and labels is used by
``embed``, ``explain`` and ``report`` without repeating them, and new subjects need no group."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from sepclr_med.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def hc_sz(tiny_cohort, tmp_path_factory):
    """The tiny cohort with its group as ``diagnosis`` = HC / SZ, and a run trained on it (1 epoch)."""
    root = tmp_path_factory.mktemp("labels")
    table = pd.read_csv(tiny_cohort.cohort_csv)
    table["image"] = [str(tiny_cohort.root / p) for p in table["image"]]
    table = table.rename(columns={"group": "diagnosis"})
    table["diagnosis"] = table["diagnosis"].map({"control": "HC", "patient": "SZ"})
    path = root / "cohort.csv"
    table.to_csv(path, index=False)
    result = runner.invoke(
        app,
        [
            "train",
            "--cohort",
            str(path),
            "--out",
            str(root / "run"),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--val-fraction",
            "0.25",
            "--group-column",
            "diagnosis",
            "--control-label",
            "HC",
            "--patient-label",
            "SZ",
        ],
    )
    assert result.exit_code == 0, result.output
    return root, path, table, result.output


def test_the_run_stores_its_group_column_and_labels(hc_sz):
    from sepclr_med.run import Run

    root, _, _, output = hc_sz
    config = Run(root / "run").config
    assert (config.group_column, config.control_label, config.patient_label) == ("diagnosis", "HC", "SZ")
    assert "validation: 2 HC + 2 SZ" in output  # the split is printed, per group


def test_embed_explain_report_need_no_label_options(hc_sz):
    root, path, _, _ = hc_sz
    result = runner.invoke(
        app,
        [
            "embed",
            "--run",
            str(root / "run"),
            "--cohort",
            str(path),
            "--out",
            str(root / "latents.csv"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(root / "latents.csv")["group"]) == {"HC", "SZ"}
    result = runner.invoke(
        app,
        [
            "explain",
            "--run",
            str(root / "run"),
            "--cohort",
            str(path),
            "--out",
            str(root / "explain"),
            "--steps",
            "2",
            "--no-figures",
        ],
    )
    assert result.exit_code == 0, result.output
    deviation = pd.read_csv(root / "explain" / "deviation.csv")
    assert deviation["group"].value_counts().to_dict() == {"HC": 8, "SZ": 8}
    assert len(json.loads((root / "explain" / "index.json").read_text())["subjects"]) == 8  # one map per SZ
    result = runner.invoke(
        app,
        [
            "report",
            "--run",
            str(root / "run"),
            "--cohort",
            str(path),
            "--out",
            str(root / "reports"),
            "--steps",
            "2",
            "--no-pdf",
        ],
    )
    assert result.exit_code == 0, result.output


def test_new_subjects_without_a_group_column_are_embedded_and_reported(hc_sz):
    root, _, table, _ = hc_sz
    new = root / "new.csv"
    table.drop(columns=["diagnosis"]).head(3).to_csv(new, index=False)
    result = runner.invoke(
        app,
        [
            "embed",
            "--run",
            str(root / "run"),
            "--cohort",
            str(new),
            "--out",
            str(root / "new_latents.csv"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    latents = pd.read_csv(root / "new_latents.csv", keep_default_na=False)
    assert len(latents) == 3 and set(latents["group"]) == {""}
    result = runner.invoke(
        app,
        [
            "report",
            "--run",
            str(root / "run"),
            "--cohort",
            str(new),
            "--out",
            str(root / "new_reports"),
            "--steps",
            "2",
            "--no-pdf",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list((root / "new_reports").glob("subject-*-viewer.html"))) == 3
    assert len(list((root / "new_reports").glob("subject-*.html"))) == 6  # a page and a viewer each
    # training still needs the group: one message naming the column
    result = runner.invoke(
        app, ["train", "--cohort", str(new), "--out", str(root / "no"), "--group-column", "diagnosis"]
    )
    assert result.exit_code == 1 and "diagnosis" in result.output and "required column is missing" in result.output
