"""Training curves: every per-epoch figure of ``metrics.jsonl`` as a scalar, for TensorBoard and,
with ``tracking = "mlflow"``, for MLflow.

A run writes its event files under ``RUN/tensorboard/`` (``tensorboard --logdir RUN``); tags are
grouped by what they measure: ``train/<term>``, ``val/<figure>``, ``time/<seconds>``, ``optim/lr``.
MLflow gets the same names as metrics, the resolved configuration as parameters, and one MLflow
run per run directory (its id in ``RUN/mlflow_run_id``, so ``--resume`` continues it). It logs to
``MLFLOW_TRACKING_URI`` when set (a lab's server), else to ``RUN/mlflow.db`` (SQLite: nothing
leaves the machine); no artifact is logged. A tracking server that fails mid-run is a warning,
not the end of the training: the run's own files stay complete.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from sepclr_med.errors import SepclrError

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
MLFLOW_ID = "mlflow_run_id"
MLFLOW_EXPERIMENT = "sepclr-med"


def tag(name: str) -> str:
    """TensorBoard tag of a ``metrics.jsonl`` key (``train_loss`` -> ``train/loss``)."""
    for prefix in ("train_", "val_"):
        if name.startswith(prefix):
            return f"{prefix[:-1]}/{name[len(prefix) :]}"
    if name.endswith("_seconds") or name == "volumes_per_second":
        return f"time/{name}"
    return f"optim/{name}"


class ScalarLog:
    """Per-epoch scalars of a run in TensorBoard event files.

    Parameters
    ----------
    run_dir : path-like
        The run directory; events go to ``run_dir/tensorboard``.
    """

    def __init__(self, run_dir) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))

    def log(self, metrics: dict) -> None:
        """Write every number of one epoch's ``metrics`` at step ``metrics["epoch"]``."""
        step = int(metrics["epoch"])
        for name, value in metrics.items():
            if name != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(tag(name), float(value), step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


class MlflowLog:
    """Per-epoch metrics and the configuration of a run in MLflow (module docstring).

    Parameters
    ----------
    run_dir : path-like
        The run directory (the local store, and the file holding the MLflow run id).
    config : TrainConfig
        Logged as parameters (``section.key``) when the MLflow run is created.
    """

    def __init__(self, run_dir, config) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise SepclrError(
                "tracking = mlflow needs MLflow: pip install 'sepclr-med[mlflow]' (or choose tensorboard)"
            ) from None
        run_dir = Path(run_dir).resolve()
        remote = os.environ.get("MLFLOW_TRACKING_URI")
        self.uri = remote or f"sqlite:///{run_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.failed = False
        id_file = run_dir / MLFLOW_ID
        if id_file.is_file():  # a resumed run continues its MLflow run
            self.run_id = id_file.read_text().strip()
            self._reopen()
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", MLFLOW_EXPERIMENT)
        found = self.client.get_experiment_by_name(name)
        local = {} if remote else {"artifact_location": (run_dir / "mlartifacts").as_uri()}  # else the server's
        experiment = found.experiment_id if found is not None else self.client.create_experiment(name, **local)
        run = self.client.create_run(experiment, run_name=run_dir.name, tags={"sepclr_med.run_dir": str(run_dir)})
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        params = [
            Param(f"{section}.{key}", str(value)[:500])
            for section, values in config.to_dict().items()
            for key, value in values.items()
        ]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        from sepclr_med.atomic import write_text

        write_text(id_file, self.run_id + "\n")

    def _reopen(self) -> None:
        """Mark the resumed MLflow run running again; a run the store does not know is an error."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.update_run(self.run_id, status="RUNNING")
        except MlflowException as exc:
            raise SepclrError(
                f"--resume: the MLflow run {self.run_id} (mlflow_run_id) is not in the tracking store {self.uri} "
                f"({str(exc).splitlines()[0][:160]}); resume with the MLFLOW_TRACKING_URI the run started with"
            ) from None

    def log(self, metrics: dict) -> None:
        """Log every number of one epoch's ``metrics`` at step ``metrics["epoch"]``; a failing
        store is warned about once and then skipped (training goes on)."""
        from mlflow.entities import Metric

        if self.failed:
            return
        step, now = int(metrics["epoch"]), int(time.time() * 1000)
        batch = [
            Metric(tag(name), float(value), now, step)
            for name, value in metrics.items()
            if name != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        ]
        try:
            self.client.log_batch(self.run_id, metrics=batch)
        except Exception as exc:  # a server that went away must not end hours of training
            self.failed = True
            log.warning(
                "MLflow logging stopped at epoch %d (%s: %s); metrics.jsonl and TensorBoard still have every epoch",
                step, type(exc).__name__, str(exc).splitlines()[0][:160],
            )  # fmt: skip

    def close(self) -> None:
        """Mark the MLflow run finished."""
        if not self.failed:
            self.client.set_terminated(self.run_id, "FINISHED")


class Trackers:
    """Where a run's per-epoch figures go: TensorBoard always, MLflow with ``tracking = "mlflow"``."""

    def __init__(self, run_dir, config) -> None:
        self.logs: list = [ScalarLog(run_dir)]
        if getattr(config, "tracking", "tensorboard") == "mlflow":
            self.logs.append(MlflowLog(run_dir, config))

    def log(self, metrics: dict) -> None:
        """One epoch's figures to every tracker."""
        for log in self.logs:
            log.log(metrics)

    def close(self) -> None:
        """Close every tracker."""
        for log in self.logs:
            log.close()
