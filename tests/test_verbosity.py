"""-q prints nothing but errors; -v shows the library's debug records."""

from __future__ import annotations

import logging

import torch
from typer.testing import CliRunner

from sepclr_med.cli.main import app

runner = CliRunner()
SMALL = ["--n-controls", "2", "--n-patients", "2", "--voxel-size", "8"]  # the one name of the voxel size


def test_quiet_prints_nothing_but_errors(tmp_path):
    loud = runner.invoke(app, ["simulate", "--out", str(tmp_path / "a"), *SMALL])
    assert loud.exit_code == 0 and loud.output.strip()
    quiet = runner.invoke(app, ["-q", "simulate", "--out", str(tmp_path / "b"), *SMALL])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output == "" and (tmp_path / "b" / "cohort.csv").is_file()
    failed = runner.invoke(app, ["-q", "simulate", "--out", str(tmp_path / "c"), "--recipe", "nope"])
    assert failed.exit_code == 1 and "unknown recipe" in failed.output


def test_verbose_shows_the_librarys_debug_records(tmp_path, caplog):
    from sepclr_med.cli.errors import set_verbosity
    from sepclr_med.data import PreprocessConfig, VolumeStore

    runner.invoke(app, ["simulate", "--out", str(tmp_path / "c"), *SMALL])
    images = sorted(str(p) for p in (tmp_path / "c" / "images").glob("*.nii.gz"))
    config = PreprocessConfig(mask="nonzero").resolve(images)
    try:
        set_verbosity(1)
        assert logging.getLogger("sepclr_med").level == logging.DEBUG
        with caplog.at_level(logging.DEBUG, logger="sepclr_med"):
            VolumeStore([{"image": p} for p in images], config).place(torch.device("cpu"))
        assert any("volume store: 4 subjects" in r.getMessage() and "on host" in r.getMessage() for r in caplog.records)
        set_verbosity(-1)
        assert logging.getLogger("sepclr_med").level == logging.ERROR
    finally:
        set_verbosity(0)
    assert logging.getLogger("sepclr_med").level == logging.WARNING
