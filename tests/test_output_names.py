"""Nothing a cohort table says can name a file outside --out: traversal strings planted in
subject ids, clinical-score names and ground-truth subtype labels (issue 13, point 1)."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from conftest import tiny_config
from sepclr_med.cli.main import app
from sepclr_med.naming import safe_name

EVIL = "x/../../../../escaped"  # from OUT/maps/<prefix>EVIL, four levels up: beside OUT


def test_safe_name_keeps_plain_names_and_hashes_the_rest():
    assert safe_name("deviation_subtype-positive") == "deviation_subtype-positive"
    for bad in (EVIL, "..", ".hidden", "a/b", "a\\b", "x" * 200, ""):
        name = safe_name(bad)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and len(name) <= 60
    assert safe_name("a/b") != safe_name("a_b")  # no collision between an unsafe name and its cleaned form


def test_traversal_names_stay_inside_out(tiny_cohort, tmp_path):
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training.loop import train

    table = pd.read_csv(tiny_cohort.cohort_csv)
    table["image"] = [str(tiny_cohort.root / p) for p in table["image"]]
    patients = table["group"] == "patient"
    table.loc[patients.idxmax(), "subject_id"] = EVIL + "/subject"
    table[EVIL + "/score"] = [float(i) if p else "" for i, p in enumerate(patients)]
    work = tmp_path / "work"
    work.mkdir()
    cohort_csv = work / "cohort.csv"
    table.to_csv(cohort_csv, index=False)
    truth = pd.read_csv(tiny_cohort.ground_truth_csv)
    truth["subject_id"] = table["subject_id"]
    truth.loc[patients.to_numpy(), "subtype"] = EVIL + "/subtype"
    truth.to_csv(work / "ground_truth.csv", index=False)
    run = train(read_cohort(cohort_csv), work / "run", tiny_config(**{"optim.epochs": 1}))
    before = {p for p in tmp_path.rglob("*")}
    result = CliRunner().invoke(
        app, ["explain", "--run", str(run), "--cohort", str(cohort_csv), "--out", str(work / "explain"), "--steps", "2"]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--run",
            str(run),
            "--cohort",
            str(cohort_csv),
            "--out",
            str(work / "reports"),
            "--steps",
            "2",
            "--no-pdf",
        ],
    )
    assert result.exit_code == 0, result.output
    new = {p for p in tmp_path.rglob("*")} - before
    kept = work / "run" / "report_cache"  # report keeps the run's reference there, by design
    inside = (work / "explain", work / "reports", kept)
    outside = [p for p in new if not any(p.is_relative_to(folder) for folder in inside)]
    assert new and not outside, outside
    assert any("escaped" in p.name for p in new)  # the names are still recognisable
