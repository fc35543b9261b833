"""Training SepCLR: configuration, the loop, checkpoints and distributed helpers."""

from sepclr_med.training.config import LossConfig, OptimConfig, TrainConfig

__all__ = ["LossConfig", "OptimConfig", "TrainConfig"]
