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
    from sepclr_med.io.reading import read_cohort
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

    import sepclr_med.io.reading
    from sepclr_med.cli.main import app

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(sepclr_med.io.reading, "read_cohort", full_disk)
    result = CliRunner().invoke(app, ["validate", "--cohort", str(tmp_path / "c.csv")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the system refused a file operation (No space left on device)" in result.output and "x" in result.output
    result = CliRunner().invoke(app, ["--debug", "validate", "--cohort", str(tmp_path / "c.csv")])
    assert isinstance(result.exception, OSError)  # --debug keeps the traceback


class Payload:
    """A pickle that runs code when loaded (here: makes a folder)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.mark.parametrize("kind", ["truncated", "pickle", "wrong_shapes", "not_a_dict"])
def test_bad_weights_files_are_one_message(tiny_cohort, tmp_path, kind):
    import torch
    from typer.testing import CliRunner

    from sepclr_med.cli.main import app
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training.loop import train

    run = train(read_cohort(tiny_cohort.cohort_csv), tmp_path / "run", tiny_config(**{"optim.epochs": 1}))
    weights = run / "model.pt"
    if kind == "truncated":
        weights.write_bytes(weights.read_bytes()[:500])
    elif kind == "pickle":  # unpickling it would create a folder: weights_only refuses to run it
        torch.save({"model": Payload(str(tmp_path / "payload_ran"))}, weights)
    elif kind == "wrong_shapes":
        state = torch.load(weights, weights_only=True)
        torch.save({k: v[..., :1] if v.ndim else v for k, v in state.items()}, weights)
    else:
        torch.save([1, 2, 3], weights)
    result = CliRunner().invoke(
        app,
        [
            "embed",
            "--run",
            str(run),
            "--cohort",
            str(tiny_cohort.cohort_csv),
            "--out",
            str(tmp_path / "l.csv"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert str(weights) in result.output.replace("\n", "") and not (tmp_path / "l.csv").exists()
    assert not (tmp_path / "payload_ran").exists()


def test_validate_reads_each_distinct_image_once(monkeypatch, tmp_path):
    from collections import Counter

    import sepclr_med.io.image_checks as checks
    from conftest import write_cohort
    from sepclr_med.io.reading import read_cohort

    path = write_cohort(tmp_path, n_controls=4, n_patients=4)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.loc[4:, "image"] = table.loc[:3, "image"].to_numpy()  # 8 rows, 4 distinct files
    table.to_csv(path, index=False)
    reads, measured = Counter(), Counter()
    import sepclr_med.io.template_space as space

    read, align = checks._read_and_check, space.measure_alignment
    monkeypatch.setattr(checks, "_read_and_check", lambda p: (reads.update([str(p)]), read(p))[1])
    monkeypatch.setattr(space, "measure_alignment", lambda img: (measured.update([img.get_filename()]), align(img))[1])
    checks._check_image.cache_clear()
    checks._alignment_of.cache_clear()
    for _ in range(2):  # a second validation in the same process reads nothing again
        read_cohort(path, check_alignment=True, allow_unaligned=True)
    assert len(reads) == 4 and set(reads.values()) == {1}
    assert len(measured) == 4 and set(measured.values()) == {1}


@pytest.mark.parametrize("command", ["train", "embed", "explain", "report"])
def test_every_writing_command_takes_the_output_lock(command, tiny_cohort, tmp_path):
    from typer.testing import CliRunner

    from sepclr_med.cli.main import app
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training.loop import train

    run = train(read_cohort(tiny_cohort.cohort_csv), tmp_path / "run", tiny_config(**{"optim.epochs": 1}))
    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = out / (".latents.csv.lock" if command == "embed" else LOCK_NAME)
        c = ["--cohort", str(tiny_cohort.cohort_csv)]
        args = {
            "train": ["train", *c, "--out", str(out), "--epochs", "1", "--device", "cpu"],
            "embed": ["embed", "--run", str(run), *c, "--out", str(out / "latents.csv"), "--device", "cpu"],
            "explain": ["explain", "--run", str(run), *c, "--out", str(out), "--no-figures"],
            "report": ["report", "--run", str(run), *c, "--out", str(out), "--no-pdf"],
        }[command]
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid}))
        result = CliRunner().invoke(app, args)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1 and f"being written by process {holder.pid}" in result.output, result.output
    assert sorted(p.name for p in out.iterdir()) == [lock.name]  # the holder's folder untouched


def test_figures_are_never_left_half_written(monkeypatch, tmp_path):
    import errno

    import matplotlib.figure
    import nibabel as nib

    from sepclr_med.explain.figures import brain_figures, region_bars

    real = matplotlib.figure.Figure.savefig

    def killed_midway(self, fname, *args, **kwargs):
        real(self, fname, *args, **kwargs)
        with open(fname, "r+b") as f:
            f.truncate(100)
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", killed_midway)
    img = nib.Nifti1Image(np.random.default_rng(0).normal(size=(9, 11, 9)).astype(np.float32), np.diag([6, 6, 6, 1.0]))
    with pytest.raises(OSError):
        brain_figures(img, tmp_path, "map", "a map")
    with pytest.raises(OSError):
        region_bars(pd.DataFrame({"name": ["a", "b"], "mean_attribution": [0.1, -0.2]}), tmp_path / "bars.png", "t")
    assert list(tmp_path.iterdir()) == []  # no partial PNG under its final name, no temp file


def test_temp_names_are_unpredictable_and_planted_links_are_never_followed(tiny_cohort, tmp_path):
    from sepclr_med.atomic import atomic_path
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training.loop import train

    with atomic_path(tmp_path / "x.csv") as a, atomic_path(tmp_path / "x.csv") as b:
        assert a != b and a.exists() and b.exists()  # created exclusively, each its own
        a.write_text("a")
        b.write_text("b")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "split.csv", "cohort.csv", "inputs.tsv", "metrics.jsonl", "model.pt"):
        for planted in (f".{name}.tmp", f"{name}.tmp", f".{name}.part", f"{name}~"):
            (run / planted).symlink_to(victim)
    train(read_cohort(tiny_cohort.cohort_csv), run, tiny_config(**{"optim.epochs": 1}))
    assert victim.read_text() == "precious"
