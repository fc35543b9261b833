"""One name per concept across commands (issue 17): read from the Typer app itself."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from sepclr_med.cli.main import app


def _options() -> dict[str, dict[str, object]]:
    """Command -> {option name: click parameter} for every command of the app."""
    group = typer.main.get_command(app)
    return {
        name: {opt: p for p in command.params for opt in getattr(p, "opts", [])}
        for name, command in group.commands.items()  # type: ignore[attr-defined]
    }


def test_every_command_that_runs_a_model_takes_device_and_a_run_or_model_file():
    options = _options()
    with_run = {name for name, opts in options.items() if "--run" in opts}
    assert {"embed", "evaluate", "explain", "report", "export"} <= with_run
    assert all("--device" in options[name] for name in with_run | {"train", "tune"})
    for name in ("embed", "report"):
        assert "export" in str(options[name]["--run"].help)  # both take an exported model file


def test_shared_concepts_have_one_name():
    options = _options()
    for name in ("simulate", "benchmark", "preprocess"):
        assert "--voxel-size" in options[name], name
    assert not [n for n, opts in options.items() if "--resolution" in opts and "--voxel-size" not in opts]
    for name in ("explain", "report"):
        assert "--atlas" in options[name] and "--steps" in options[name]
        assert "Attribution budget per subject" in str(options[name]["--steps"].help)
    for name in ("simulate", "benchmark"):
        assert {"--n-controls", "--n-patients"} <= set(options[name]), name


def test_every_command_that_writes_an_output_takes_overwrite():
    options = _options()
    writers = {name for name, opts in options.items() if "--out" in opts}
    assert {"simulate", "train", "embed", "evaluate", "explain", "report", "export", "benchmark"} <= writers
    resuming = ("train", "preprocess", "demo")  # train refuses a folder unless --resume; preprocess resumes its own
    assert [name for name in writers if "--overwrite" not in options[name] and name not in resuming] == []


@pytest.mark.parametrize(
    "flags, expected",
    [(["--n-controls", "7", "--n-patients", "9"], (7, 9)), (["--n", "6"], (6, 6)), (["--voxel-size", "8"], None)],
)
def test_benchmark_flags_reach_the_recipe(flags, expected, monkeypatch, tmp_path):
    import sepclr_med.workflows.benchmark as workflow

    seen = {}

    def fake(out, *, recipe, **kwargs):
        import pandas as pd

        seen["recipe"] = recipe
        return pd.DataFrame({"method": ["x"]})

    monkeypatch.setattr(workflow, "run_benchmark", fake)
    result = CliRunner().invoke(app, ["benchmark", "--out", str(tmp_path / "b"), *flags])
    assert result.exit_code == 0, result.output
    recipe = seen["recipe"]
    if expected is None:
        assert recipe.resolution_mm == 8.0
    else:
        assert (recipe.n_controls, recipe.n_patients) == expected


def test_help_keeps_bracketed_install_extras_and_no_developer_notes(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "sepclr-med[mlflow]" in text and "Long only" not in text
