"""The command line: instant help, clean errors, the demo end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from sepclr_med.atomic import atomic_path
from sepclr_med.cli.main import app

runner = CliRunner()


def test_help_lists_commands_and_imports_no_torch():
    code = (
        "import sys; from sepclr_med.cli.main import app; "
        "heavy = [m for m in ('torch', 'monai', 'nilearn', 'pandas') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for flag in ("--help", "-h"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0
        for command in ("simulate", "validate", "pipeline", "demo", "recipes", "train", "embed"):
            assert command in result.output


def test_user_error_is_one_message_without_traceback(tmp_path):
    result = runner.invoke(app, ["validate", "--cohort", str(tmp_path / "none.csv")])
    assert result.exit_code == 1
    assert "cohort file not found" in result.output and "Traceback" not in result.output


def test_debug_shows_the_exception(tmp_path):
    result = runner.invoke(app, ["--debug", "validate", "--cohort", str(tmp_path / "none.csv")])
    assert result.exit_code != 0 and result.exception is not None


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("sepclr-med ")


def test_atomic_path_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done" and list(tmp_path.iterdir()) == [target]


def test_demo_quick_runs_end_to_end(tmp_path):
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "Demo finished" in result.output
    assert (tmp_path / "demo" / "cohort" / "cohort.csv").is_file()
    assert "pass 2: from the memory cache" in result.output
    assert (tmp_path / "demo" / "run" / "model.pt").is_file()
    assert (tmp_path / "demo" / "evaluation" / "probes.csv").is_file()
    assert (tmp_path / "demo" / "explain" / "index.json").is_file()
    assert (tmp_path / "demo" / "reports" / "index.html").is_file()
    assert "Open the report" in result.output
    import json

    from sepclr_med.run import Run

    verdict = Run(tmp_path / "demo" / "run").verdict()  # the evaluation folder records the run's verdict
    assert json.loads((tmp_path / "demo" / "evaluation" / "verdict.json").read_text()) == verdict
    if verdict["status"] != "separated":  # a 2-epoch smoke run: the demo repeats the warning at the end
        assert "training verdict" in result.output


def test_ci_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv")]
    assert len(commands) == 2 and commands[0].endswith("sepclr-med demo")
    assert commands[1] in (root / ".ci" / "run").read_text()
