"""Training configuration: every hyper-parameter, loaded from TOML, overridden from the CLI.

A config file has one table per part::

    [train]       seed, device, num_workers, val_fraction, cache, cache_dir, amp, channels_last,
                  control_label, patient_label, group_column (recorded from the cohort: later
                  commands reuse them), allow_unaligned, bids_selection (a table: how a BIDS
                  cohort's images were chosen; later commands reuse it),
                  keep (which epoch's weights become model.pt: best-val or last)
    [optim]       epochs, batch_size, lr, weight_decay
    [loss]        beta_salient, beta_infoless, lambda_jem, lambda_independence, lambda_adversary,
                  infoless_warmup_epochs, independence_warmup_epochs
    [model]       backbone, common_dim, salient_dim, head_hidden, common_intensity
    [preprocess]  voxel_size, spatial_size, intensity, scale, mask, crop, dtype
    [augment]     see sepclr_med.data.AugmentConfig
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepclr_med.data.augment import AugmentConfig
from sepclr_med.data.batch_views import UNSUPPORTED
from sepclr_med.data.preprocess import PreprocessConfig
from sepclr_med.errors import SepclrError
from sepclr_med.models.sepclr import ModelConfig


@dataclass
class OptimConfig:
    """Optimisation: Adam, as in the paper (no schedule)."""

    epochs: int = 100
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.0


@dataclass
class LossConfig:
    """Weights of the SepCLR terms and of the leakage penalty sepclr-med adds.

    Default (beta_salient, beta_infoless, lambda_jem) = (10, 10, 10): the patients' salient spread
    weighs as much as the controls' pull to 0 (docs/method.md, "Why beta_salient = beta_infoless";
    the paper's chest X-ray weights (1, 10, 10) collapse on the evaluation family).
    ``TrainConfig.paper()`` gives the paper's objective with (1, 10, 10)."""

    beta_salient: float = 10.0
    beta_infoless: float = 10.0
    lambda_jem: float = 10.0
    lambda_independence: float = 300.0  # dCor^2(patients' common reps, fixed salient reps); docs/method.md
    lambda_adversary: float = 0.0  # optional: gradient-reversal adversary predicting salient from common
    infoless_warmup_epochs: int = 0  # beta_infoless ramps linearly from 0 over these epochs
    independence_warmup_epochs: int = 0  # lambda_independence likewise

    def weights_at(self, epoch: int) -> dict[str, float]:
        """Weights of the warmed-up terms during 0-based ``epoch`` (linear ramps, epoch-wise)."""

        def ramp(epochs: int) -> float:
            return 1.0 if epochs <= 0 else min(1.0, (epoch + 1) / epochs)

        return {
            "beta_infoless": self.beta_infoless * ramp(self.infoless_warmup_epochs),
            "lambda_independence": self.lambda_independence * ramp(self.independence_warmup_epochs),
        }


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored resolved in the run directory."""

    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    val_fraction: float = 0.15
    cache: str = "memory"
    cache_dir: str | None = None
    amp: bool = True
    channels_last: bool = True
    control_label: str = "control"
    patient_label: str = "patient"
    group_column: str = "group"
    allow_unaligned: bool = False  # train on scans that fail the template-space check (recorded)
    bids_selection: dict = field(default_factory=dict)  # how a BIDS cohort's images were chosen (recorded)
    keep: str = "best-val"  # model.pt: "best-val" (training/monitor.py) or "last"
    tracking: str = "tensorboard"  # "tensorboard" (always written) or "mlflow" (also; training/tracking.py)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    SECTIONS = {
        "optim": OptimConfig,
        "loss": LossConfig,
        "model": ModelConfig,
        "preprocess": PreprocessConfig,
        "augment": AugmentConfig,
    }

    def to_dict(self) -> dict:
        """Nested plain dictionary: ``{"train": {...}, "optim": {...}, ...}``."""
        train = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self.SECTIONS}
        out = {"train": {k: v for k, v in train.items() if v is not None}}
        for name in self.SECTIONS:
            part = getattr(self, name)
            data = part.to_dict() if hasattr(part, "to_dict") else dataclasses.asdict(part)
            out[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items() if v is not None}
        return out

    def to_toml(self) -> str:
        """TOML text of :meth:`to_dict`."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> TrainConfig:
        """Build from the nested dictionary of a TOML file; unknown keys are errors."""
        unknown = set(data) - {"train", *cls.SECTIONS}
        if unknown:
            raise SepclrError(f"{source}: unknown table(s) {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, kind in cls.SECTIONS.items():
            section = dict(data.get(name, {}))
            known = {f.name for f in dataclasses.fields(kind) if not f.name.startswith("_")}
            bad = set(section) - known
            if bad:
                raise SepclrError(f"{source}: unknown key(s) {sorted(bad)} in [{name}]")
            for key, value in section.items():
                if isinstance(value, list) and key not in ("grid_affine",):
                    section[key] = tuple(value)
            kwargs[name] = PreprocessConfig.from_dict(section) if kind is PreprocessConfig else kind(**section)
        train = data.get("train", {})
        known = {f.name for f in dataclasses.fields(cls)} - set(cls.SECTIONS)
        bad = set(train) - known
        if bad:
            raise SepclrError(f"{source}: unknown key(s) {sorted(bad)} in [train]")
        return cls(**train, **kwargs).validate()

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a TOML config file."""
        return cls.from_dict(_read_toml(path), str(path))

    @classmethod
    def load_run(cls, run_dir: str | os.PathLike) -> TrainConfig:
        """Read the ``config.toml`` a run directory stores.

        Options newer than a run are read as what that run did, not as today's defaults: no
        ``lambda_independence`` means 0 (trained without the leakage penalty), no ``keep`` means
        ``"last"`` (the last epoch's weights were kept), no ``common_intensity`` means False, no
        ``[preprocess] crop``/``dtype`` means ``"none"``/``"float32"``.
        """
        path = Path(run_dir) / "config.toml"
        data = _read_toml(path)
        loss = data.setdefault("loss", {})
        for key in ("lambda_independence", "infoless_warmup_epochs", "independence_warmup_epochs"):
            loss.setdefault(key, 0)
        data.setdefault("model", {}).setdefault("common_intensity", False)
        data.setdefault("train", {}).setdefault("keep", "last")
        pre = data.setdefault("preprocess", {})
        pre.setdefault("crop", "none")
        pre.setdefault("dtype", "float32")
        return cls.from_dict(data, str(path))

    @classmethod
    def paper(cls) -> TrainConfig:
        """The paper's exact objective with its MRI-like weights (1, 10, 10): no leakage penalty,
        no warm-up (optimiser, model and kept-weights rule as the defaults otherwise)."""
        return cls().override(
            **{
                "loss.beta_salient": 1.0,
                "loss.beta_infoless": 10.0,
                "loss.lambda_jem": 10.0,
                "loss.lambda_independence": 0.0,
                "loss.infoless_warmup_epochs": 0,
                "loss.independence_warmup_epochs": 0,
            }
        )

    def override(self, **changes: Any) -> TrainConfig:
        """A copy with ``section.key`` or top-level keys changed; None values are ignored."""
        data = self.to_dict()
        for key, value in changes.items():
            if value is None:
                continue
            section, _, name = key.rpartition(".")
            data.setdefault(section or "train", {})[name] = value
        return self.from_dict(data, "overrides")

    def validate(self) -> TrainConfig:
        """Check values; raise :class:`SepclrError` naming the bad one."""
        checks = [
            (
                self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                f"device must be auto, cpu or cuda, not {self.device!r}",
            ),
            (self.optim.epochs >= 1, "epochs must be >= 1"),
            (
                min(self.loss.infoless_warmup_epochs, self.loss.independence_warmup_epochs) >= 0,
                "warm-up epochs must be >= 0",
            ),
            (self.optim.batch_size >= 4, "batch_size must be >= 4 (2 controls + 2 patients)"),
            (self.optim.lr > 0, "lr must be > 0"),
            (0.0 <= self.val_fraction < 0.5, "val_fraction must be in [0, 0.5)"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (self.cache in ("memory", "disk", "none"), "cache must be memory, disk or none"),
            (self.keep in ("best-val", "last"), "keep must be best-val or last"),
            (self.tracking in ("tensorboard", "mlflow"), "tracking must be tensorboard or mlflow"),
            (
                not [name for name in UNSUPPORTED if getattr(self.augment, name) > 0],
                f"[augment] {', '.join(UNSUPPORTED)} must be 0: training makes its views on the device "
                "(sepclr_med.data.batch_views), which has no intensity scaling, bias field or flip",
            ),
            (
                min(
                    self.loss.beta_salient,
                    self.loss.beta_infoless,
                    self.loss.lambda_jem,
                    self.loss.lambda_independence,
                    self.loss.lambda_adversary,
                )
                >= 0,
                "loss weights must be >= 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SepclrError(f"training config: {message}")
        return self


def _read_toml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SepclrError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SepclrError(f"{path}: invalid TOML ({exc})") from None
