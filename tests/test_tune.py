"""`sepclr-med tune`: a grid on validation folds, a config that `train --config` takes."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from conftest import tiny_config
from sepclr_med.cli.main import app


def test_tune_scores_every_setting_and_fold_and_writes_a_trainable_config(tiny_cohort, tmp_path):
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.tune import folds, summarise, tune

    cohort = read_cohort(tiny_cohort.cohort_csv)
    splits = folds(cohort, 2, seed=0)
    assert [int((s == "val").sum()) for s in splits] == [8, 8]
    assert all(int(cohort.is_target[s == "val"].sum()) == 4 for s in splits)  # stratified by group
    grid = ({"loss.lambda_jem": 10.0}, {"loss.lambda_jem": 55.0})
    table, chosen = tune(cohort, tmp_path / "tune", tiny_config(**{"optim.epochs": 1}), grid=grid, n_folds=2)
    assert list(table["setting"]) == [0, 0, 1, 1] and list(table["fold"]) == [0, 1, 0, 1]
    assert table["score"].between(0, 1).all() and not (tmp_path / "tune" / "runs").exists()
    best = summarise(table).loc[0, "setting"]
    assert chosen.loss.lambda_jem == grid[best]["loss.lambda_jem"]
    loaded = TrainConfig.load(tmp_path / "tune" / "tuned.toml")
    assert loaded.loss.lambda_jem == chosen.loss.lambda_jem and loaded.model.common_dim == 8
    saved = pd.read_csv(tmp_path / "tune" / "tune.csv")
    assert len(saved) == 4 and set(saved["verdict"]) <= {"separated", "not separated"}
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--cohort",
            str(tiny_cohort.cohort_csv),
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(tmp_path / "tune" / "tuned.toml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert TrainConfig.load_run(tmp_path / "run").loss.lambda_jem == chosen.loss.lambda_jem


def test_tune_cli_prints_the_table(tiny_cohort, tmp_path, monkeypatch):
    import sepclr_med.training.tune as tune_module

    monkeypatch.setattr(tune_module, "GRID", ({"loss.lambda_jem": 10.0}, {"loss.beta_infoless": 1.0}))
    config = tmp_path / "base.toml"
    config.write_text(tiny_config(**{"optim.epochs": 1}).to_toml())
    result = CliRunner().invoke(
        app,
        [
            "tune",
            "--cohort",
            str(tiny_cohort.cohort_csv),
            "--out",
            str(tmp_path / "t"),
            "--config",
            str(config),
            "--folds",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "lambda_jem=10" in result.output and "beta_infoless=1" in result.output
    assert "tuned.toml" in result.output and (tmp_path / "t" / "tuned.toml").is_file()
