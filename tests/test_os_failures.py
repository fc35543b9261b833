"""Operating-system failures (issue 13, point 9): every writing command turns a read-only output
folder, a full disk and an impossible path into one message, exit 1, no traceback, nothing
half-written.

The tests run as root on the project's machines, where no permission bit stops a write; a
read-only file system is therefore emulated at the calls the operating system itself would
refuse (``os.open`` / ``open`` for writing, ``os.mkdir``, ``os.replace`` under the folder), so the
library's real code paths meet the real ``OSError``.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tiny_config

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _inside(path, folder: Path) -> bool:
    try:
        return Path(os.fsdecode(path)).resolve().is_relative_to(folder)
    except (TypeError, ValueError):  # a file descriptor, not a path
        return False


def _refused(path):
    return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """A folder on an (emulated) read-only file system; returns its path."""
    folder = (tmp_path / "ro").resolve()
    folder.mkdir()
    real_os_open, real_open, real_mkdir, real_replace = os.open, builtins.open, os.mkdir, os.replace

    def os_open(path, flags, *args, **kwargs):
        if flags & WRITE_FLAGS and _inside(path, folder):
            raise _refused(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+") and _inside(file, folder):
            raise _refused(file)
        return real_open(file, mode, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if _inside(path, folder) and not Path(os.fsdecode(path)).exists():
            raise _refused(path)
        return real_mkdir(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if _inside(dst, folder):
            raise _refused(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "replace", replace)
    return folder


@pytest.fixture(scope="module")
def trained(tiny_cohort, tmp_path_factory):
    """A one-epoch run of the tiny cohort."""
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training.loop import train

    return train(
        read_cohort(tiny_cohort.cohort_csv), tmp_path_factory.mktemp("run") / "run", tiny_config(**{"optim.epochs": 1})
    )


def _commands(run: Path, cohort: Path, out: Path) -> dict[str, list[str]]:
    """Every command that writes, pointed at ``out``."""
    c = ["--cohort", str(cohort)]
    return {
        "simulate": ["simulate", "--out", str(out), "--n-controls", "2", "--n-patients", "2", "--resolution", "8"],
        "validate": ["validate", *c, "--qc-out", str(out)],
        "train": ["train", *c, "--out", str(out), "--epochs", "1", "--device", "cpu"],
        "embed": ["embed", "--run", str(run), *c, "--out", str(out / "latents.csv"), "--device", "cpu"],
        "tune": ["tune", *c, "--out", str(out), "--epochs", "1", "--device", "cpu"],
        "evaluate": ["evaluate", "--run", str(run), *c, "--out", str(out), "--device", "cpu"],
        "explain": ["explain", "--run", str(run), *c, "--out", str(out), "--no-figures", "--permutations", "0"],
        "report": ["report", "--run", str(run), *c, "--out", str(out), "--no-pdf"],
        "benchmark": [
            "benchmark",
            "--out",
            str(out),
            "--methods",
            "cpca",
            "--seeds",
            "0",
            "--n",
            "4",
            "--n-test",
            "4",
            "--resolution",
            "8",
        ],
        "demo": ["demo", "--out", str(out), "--quick"],
        "preprocess": ["preprocess", *c, "--out", str(out), "--voxel-size", "8"],
    }


COMMANDS = [
    "simulate",
    "validate",
    "train",
    "embed",
    "tune",
    "evaluate",
    "explain",
    "report",
    "benchmark",
    "demo",
    "preprocess",
]


def _one_message(result, path_part: str, cause: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("Error:") == 1, result.output
    flat = result.output.replace("\n", "")
    assert cause in flat and path_part in flat, result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_output_folder_is_one_message(command, read_only, trained, tiny_cohort):
    from sepclr_med.cli.main import app

    out = read_only / "out"
    result = CliRunner().invoke(app, _commands(trained, tiny_cohort.cohort_csv, out)[command])
    _one_message(result, str(read_only), "Read-only file system")
    assert list(read_only.iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_path_below_a_file_is_one_message(command, tmp_path, trained, tiny_cohort):
    from sepclr_med.cli.main import app

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, _commands(trained, tiny_cohort.cohort_csv, blocker / "out")[command])
    _one_message(result, str(blocker), "Not a directory")
    assert blocker.read_text() == "not a folder"


def test_a_full_disk_during_a_checkpoint_leaves_the_previous_one(monkeypatch, tiny_cohort, tmp_path):
    import torch

    import sepclr_med.training.checkpoint as checkpoint
    from sepclr_med.atomic import TEMP_MARK
    from sepclr_med.cli.main import app

    out = tmp_path / "run"
    args = ["train", "--cohort", str(tiny_cohort.cohort_csv), "--out", str(out), "--device", "cpu", "--epochs"]
    assert CliRunner().invoke(app, [*args, "1"]).exit_code == 0
    last = out / "checkpoints" / "last.pt"
    before = last.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        if ".last.pt" not in str(f):  # the resume point itself is what must survive
            return
        with open(f, "r+b") as handle:  # half of it reached the disk, then the disk was full
            handle.truncate(os.path.getsize(f) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    result = CliRunner().invoke(app, [*args, "3", "--resume"])
    _one_message(result, str(last), "No space left on device")
    assert last.read_bytes() == before  # the previous checkpoint is intact, the resume point stays
    assert not [p for p in out.rglob("*") if TEMP_MARK in p.name]


def test_a_full_disk_during_embed_writes_nothing(monkeypatch, trained, tiny_cohort, tmp_path):
    from sepclr_med.cli.main import app

    real = Path.write_text

    def full_disk(self, text, *a, **k):
        real(self, text[: len(text) // 2], *a, **k)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full_disk)
    out = tmp_path / "latents.csv"
    result = CliRunner().invoke(
        app,
        ["embed", "--run", str(trained), "--cohort", str(tiny_cohort.cohort_csv), "--out", str(out), "--device", "cpu"],
    )
    _one_message(result, str(out), "No space left on device")  # the file asked for, not a temp name
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["loop", "too_long", "out_is_file", "brackets"])
def test_impossible_paths_on_the_command_line_are_one_message(kind, tmp_path, tiny_cohort):
    from sepclr_med.cli.main import app

    if kind == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        cohort, cause = tmp_path / "a" / "cohort.csv", "Too many levels of symbolic links"
    elif kind == "too_long":
        cohort, cause = tmp_path / ("x" * 300) / "cohort.csv", "File name too long"
    elif kind == "out_is_file":
        out = tmp_path / "run"
        out.write_text("a file")
        result = CliRunner().invoke(
            app,
            ["train", "--cohort", str(tiny_cohort.cohort_csv), "--out", str(out), "--epochs", "1", "--device", "cpu"],
        )
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.count("Error:") == 1 and str(out) in result.output.replace("\n", ""), result.output
        assert out.read_text() == "a file"
        return
    else:  # brackets are ordinary characters in a path (and in Rich markup)
        import shutil

        folder = tmp_path / "[site A] (2024)"
        shutil.copytree(Path(tiny_cohort.cohort_csv).parent, folder)
        cohort, cause = folder / Path(tiny_cohort.cohort_csv).name, ""
    result = CliRunner().invoke(app, ["validate", "--cohort", str(cohort)])
    if kind == "brackets":
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.count("Error:") == 1 and cause in result.output, result.output


def test_a_gpu_out_of_memory_is_one_message_with_what_to_try(monkeypatch, trained, tiny_cohort, tmp_path):
    import torch

    import sepclr_med.estimator
    from sepclr_med.cli.main import app

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(sepclr_med.estimator.SepCLR, "latents", out_of_memory)
    out = tmp_path / "latents.csv"
    result = CliRunner().invoke(
        app, ["embed", "--run", str(trained), "--cohort", str(tiny_cohort.cohort_csv), "--out", str(out)]
    )
    _one_message(result, "out of GPU memory", "--batch-size")
    assert list(tmp_path.iterdir()) == []
