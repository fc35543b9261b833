"""MLflow tracking (issue 17): `train --tracking mlflow` logs every epoch's figures and the config,
to a local SQLite store in the run unless MLFLOW_TRACKING_URI says otherwise; resume continues it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sepclr_med.cli.main import app


def test_train_with_mlflow_logs_the_metrics_jsonl_figures_and_resume_continues(tiny_cohort, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="MLflow is not installed (pip install 'sepclr-med[mlflow]')")
    from mlflow.tracking import MlflowClient

    from sepclr_med.run import Run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may be written to the working folder
    out = tmp_path / "run"
    common = ["--cohort", str(tiny_cohort.cohort_csv), "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(app, ["train", *common, "--epochs", "2", "--batch-size", "8", "--tracking", "mlflow"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    run_id = (out / "mlflow_run_id").read_text().strip()
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    logged = client.get_run(run_id)
    metrics = Run(out).metrics()
    history = client.get_metric_history(run_id, "train/loss")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([m["train_loss"] for m in metrics])
    assert {"train/jem", "val/salient_auc", "time/epoch_seconds"} <= set(logged.data.metrics)
    assert logged.data.params["optim.epochs"] == "2" and logged.data.params["train.tracking"] == "mlflow"
    assert logged.info.status == "FINISHED"

    result = CliRunner().invoke(app, ["train", *common, "--epochs", "3", "--resume"])
    assert result.exit_code == 0, result.output
    assert (out / "mlflow_run_id").read_text().strip() == run_id
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1, 2, 3]


def test_without_mlflow_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    from sepclr_med.errors import SepclrError
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.tracking import MlflowLog

    real = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name.startswith("mlflow"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(SepclrError, match=r"sepclr-med\[mlflow\]"):
        MlflowLog(tmp_path, TrainConfig())


def test_an_unknown_tracker_is_refused():
    from sepclr_med.errors import SepclrError
    from sepclr_med.training import TrainConfig

    with pytest.raises(SepclrError, match="tracking must be tensorboard or mlflow"):
        TrainConfig().override(tracking="wandb").validate()


def test_a_tracking_server_that_fails_mid_run_is_a_warning_not_the_end(tmp_path, monkeypatch, caplog):
    pytest.importorskip("mlflow", reason="MLflow is not installed")
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.tracking import MlflowLog

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = MlflowLog(tmp_path, TrainConfig())
    tracker.log({"epoch": 1, "train_loss": 2.0})

    def gone(*args, **kwargs):
        raise ConnectionError("server unreachable")

    monkeypatch.setattr(tracker.client, "log_batch", gone)
    with caplog.at_level("WARNING", logger="sepclr_med"):
        tracker.log({"epoch": 2, "train_loss": 1.0})
        tracker.log({"epoch": 3, "train_loss": 0.5})
    assert [r.getMessage() for r in caplog.records if "MLflow logging stopped at epoch 2" in r.getMessage()]
    ours = [r for r in caplog.records if r.name.startswith("sepclr_med")]  # MLflow logs its own records too
    assert len(ours) == 1  # warned once
    tracker.close()
