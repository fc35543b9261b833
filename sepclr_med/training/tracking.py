"""Training curves for TensorBoard: every per-epoch figure of ``metrics.jsonl`` as a scalar.

A run writes its event files under ``RUN/tensorboard/`` (``tensorboard --logdir RUN``); tags are
grouped by what they measure: ``train/<term>``, ``val/<figure>``, ``time/<seconds>``, ``optim/lr``.
"""

from __future__ import annotations

from pathlib import Path

TENSORBOARD_DIR = "tensorboard"


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
