"""Reliability (issue 13): one writer per output folder, stale locks and orphan temp files of
killed runs, resume on changed data refused, atomic figures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config
from sepclr_med.errors import SepclrError
from sepclr_med.locking import LOCK_NAME, output_lock


def test_a_second_writer_is_refused_and_a_stale_lock_is_replaced(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        with pytest.raises(SepclrError, match=f"being written by process {holder.pid}"):
            with output_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    orphan = tmp_path / "checkpoints" / ".last.pt.sepclr-tmp-abc123.pt"
    orphan.parent.mkdir()
    orphan.write_bytes(b"half a checkpoint")
    kept = tmp_path / ".hidden-but-not-ours"
    kept.write_text("x")
    with output_lock(tmp_path):  # the holder is dead: stale lock replaced, its temp files removed
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        assert not orphan.exists() and kept.exists()
    assert not (tmp_path / LOCK_NAME).exists()  # released


def test_atomic_temp_names_carry_the_mark(tmp_path):
    from sepclr_med.atomic import TEMP_MARK, atomic_path

    with atomic_path(tmp_path / "map.nii.gz") as tmp:
        assert TEMP_MARK in tmp.name and tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        assert not tmp.is_symlink()


def test_resume_refuses_a_changed_cohort(tiny_cohort, tmp_path):
    from sepclr_med.cohort import read_cohort
    from sepclr_med.training.loop import train

    table = pd.read_csv(tiny_cohort.cohort_csv)
    table["image"] = [str(tiny_cohort.root / p) for p in table["image"]]
    path = tmp_path / "cohort.csv"
    table.to_csv(path, index=False)
    run = train(read_cohort(path), tmp_path / "run", tiny_config(**{"optim.epochs": 1}))
    changed = table.copy()
    changed.loc[2, "age"] = changed.loc[2, "age"] + 7
    changed.to_csv(path, index=False)
    with pytest.raises(SepclrError, match=rf"{changed.loc[2, 'subject_id']}: age .* -> "):
        train(read_cohort(path), run, tiny_config(**{"optim.epochs": 2}), resume=True)
    table.to_csv(path, index=False)
    img = nib.load(table.loc[3, "image"])
    copy = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * 1.01, img.affine), copy)
    table.loc[3, "image"] = str(copy)
    table.to_csv(path, index=False)
    with pytest.raises(SepclrError, match="image content"):
        train(read_cohort(path), run, tiny_config(**{"optim.epochs": 2}), resume=True)


def test_operating_system_failures_are_one_message(monkeypatch, tmp_path):
    import errno

    from typer.testing import CliRunner

    import sepclr_med.cohort
    from sepclr_med.cli.main import app

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(sepclr_med.cohort, "read_cohort", full_disk)
    result = CliRunner().invoke(app, ["validate", "--cohort", str(tmp_path / "c.csv")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the system refused a file operation (No space left on device)" in result.output and "x" in result.output
    result = CliRunner().invoke(app, ["--debug", "validate", "--cohort", str(tmp_path / "c.csv")])
    assert isinstance(result.exception, OSError)  # --debug keeps the traceback


@pytest.mark.parametrize("kind", ["truncated", "pickle", "wrong_shapes", "not_a_dict"])
def test_bad_weights_files_are_one_message(tiny_cohort, tmp_path, kind):
    import pickle

    import torch
    from typer.testing import CliRunner

    from sepclr_med.cli.main import app
    from sepclr_med.cohort import read_cohort
    from sepclr_med.training.loop import train

    run = train(read_cohort(tiny_cohort.cohort_csv), tmp_path / "run", tiny_config(**{"optim.epochs": 1}))
    weights = run / "model.pt"
    if kind == "truncated":
        weights.write_bytes(weights.read_bytes()[:500])
    elif kind == "pickle":
        weights.write_bytes(pickle.dumps(pytest.approx(1.0)))  # an arbitrary object: weights_only refuses it
    elif kind == "wrong_shapes":
        state = torch.load(weights, weights_only=True)
        torch.save({k: v[..., :1] if v.ndim else v for k, v in state.items()}, weights)
    else:
        torch.save([1, 2, 3], weights)
    result = CliRunner().invoke(app, ["embed", "--run", str(run), "--cohort", str(tiny_cohort.cohort_csv),
                                      "--out", str(tmp_path / "l.csv"), "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert str(weights) in result.output.replace("\n", "") and not (tmp_path / "l.csv").exists()
