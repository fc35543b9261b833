"""The run directory: everything downstream stages need, self-contained.

::

    RUN/
      config.toml          resolved training config (grid and intensity scale included)
      model.pt             weights only (state_dict), torch.load(..., weights_only=True)
      checkpoints/last.pt  model + optimizer + epoch, for --resume
      metrics.jsonl        one JSON object per epoch
      val_salient_norms.npz  validation subjects' salient norms per epoch (the verdict's permutation test)
      split.csv            subject_id, group, split (train / val)
      reference_latents.csv        reps of every training-cohort subject (eval mode)
      reference_control_mean.nii.gz  mean preprocessed image of the training controls
      cohort.csv           copy of the training cohort table; cohort.sha256 its digest
      versions.json        library versions
      verdict.json         whether the salient space separates held-out patients (training/monitor.py)
      alignment.tsv        template-space measures of every training scan (template_space.py)
      inputs.tsv           per subject: the table's values and the image's SHA-256 (resume checks them)
      MODEL_CARD.md        what was trained, on what, how to use it, and that verdict
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sepclr_med.errors import SepclrError
from sepclr_med.training.run_files import library_versions, model_card, read_metrics, read_verdict, sha256

if TYPE_CHECKING:
    import torch

__all__ = ["Run", "library_versions", "model_card", "sha256"]


class Run:
    """A trained run directory (read side).

    Parameters
    ----------
    path : path-like
        The run directory written by ``sepclr-med train``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not (self.path / "config.toml").is_file():
            raise SepclrError(f"{self.path} is not a sepclr-med run directory (no config.toml)")
        from sepclr_med.training.config import TrainConfig

        self.config = TrainConfig.load_run(self.path)

    @property
    def weights_path(self) -> Path:
        """The final weights, ``model.pt`` (a run without them did not finish: see :meth:`load_model`)."""
        return self.path / "model.pt"

    def training_subjects(self) -> set[str]:
        """Ids of the subjects the encoders were trained on (``split == "train"``)."""
        import pandas as pd

        path = self.path / "split.csv"
        if not path.is_file():
            return set()
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        return set(table.loc[table["split"] == "train", "subject_id"])

    def scans(self, split: str, group: str) -> list[dict]:
        """The run's own scans of one split and group (``subject_id``, ``image``, ``image_sha256``).

        From ``inputs.tsv`` (absolute paths as trained) and ``split.csv``; empty for a run
        written before ``inputs.tsv`` existed.
        """
        import pandas as pd

        inputs, split_path = self.path / "inputs.tsv", self.path / "split.csv"
        if not inputs.is_file() or not split_path.is_file():
            return []
        table = pd.read_csv(inputs, sep="\t", dtype=str, keep_default_na=False)
        splits = pd.read_csv(split_path, dtype=str, keep_default_na=False)
        rows = table.merge(splits[["subject_id", "split"]], on="subject_id")
        rows = rows[(rows["split"] == split) & (rows["group"] == group)]
        return rows[["subject_id", "image", "image_sha256"]].to_dict("records")

    def read_cohort(self, path, **kwargs):
        """Read a cohort with the run's group column and labels (unless given in ``kwargs``).

        ``kwargs`` go to :func:`~sepclr_med.io.reading.read_cohort`; ``None`` values mean "the run's".
        Images are checked to be in template space (``check_alignment``) whenever they are
        opened; a run trained with ``allow_unaligned`` accepts failing scans with a warning. A
        BIDS cohort's images are chosen as for training (derivatives, space, suffix ...) unless
        another selection is given.
        """
        from sepclr_med.io.bids import BidsSelection
        from sepclr_med.io.reading import read_cohort

        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if kwargs.get("selection", BidsSelection()) == BidsSelection() and self.config.bids_selection:
            kwargs["selection"] = BidsSelection(**self.config.bids_selection)  # the run's own choice of images
        kwargs.setdefault("control_label", self.config.control_label)
        kwargs.setdefault("patient_label", self.config.patient_label)
        kwargs.setdefault("group_column", self.config.group_column)
        kwargs.setdefault("check_alignment", kwargs.get("check_images", True))
        kwargs["allow_unaligned"] = kwargs.get("allow_unaligned", False) or self.config.allow_unaligned
        return read_cohort(path, **kwargs)

    def load_model(self, device: str | torch.device = "cpu"):
        """The trained :class:`~sepclr_med.models.SepCLRModel`, in eval mode."""
        from sepclr_med.models import SepCLRModel

        if not self.weights_path.is_file():
            resumable = (self.path / "checkpoints" / "last.pt").is_file()
            raise SepclrError(
                f"{self.path} holds no model.pt: the run did not finish"
                + (" (continue it with `sepclr-med train --resume`)" if resumable else "")
            )
        from sepclr_med.training.checkpoint import load_checkpoint

        state = load_checkpoint(self.weights_path, device)
        state = state.get("model", state)
        model = SepCLRModel(self.config.model)
        try:
            model.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise SepclrError(
                f"{self.weights_path}: weights do not fit the model of {self.path / 'config.toml'} "
                f"({str(exc).splitlines()[0][:200]})"
            ) from None
        return model.to(device).eval()

    def reference_latents(self):
        """Reps of the training cohort (``subject_id, group, split, common_*, salient_*``)."""
        import pandas as pd

        path = self.path / "reference_latents.csv"
        if not path.is_file():
            raise SepclrError(f"{self.path} has no reference_latents.csv (trained by an older version?)")
        return pd.read_csv(path, keep_default_na=False)

    def reference_control_mean(self):
        """Mean preprocessed image of the training controls (the healthy baseline)."""
        import nibabel as nib

        return nib.load(self.path / "reference_control_mean.nii.gz")

    def verdict(self) -> dict:
        """The training verdict (``status``: separated, not separated, unchecked; ``message``)."""
        return read_verdict(self.path)

    def verdict_warning(self) -> str | None:
        """One line to show users when the verdict is not ``separated`` (None when it is)."""
        from sepclr_med.training.monitor import verdict_warning

        return verdict_warning(self.verdict())

    def metrics(self) -> list[dict]:
        """Per-epoch metrics."""
        return read_metrics(self.path)

    def verify(self) -> list[str]:
        """Problems with the directory (missing files, cohort copy not matching its digest)."""
        problems = [
            f"missing {name}"
            for name in (
                "model.pt",
                "cohort.csv",
                "cohort.sha256",
                "versions.json",
                "MODEL_CARD.md",
                "split.csv",
                "reference_latents.csv",
                "reference_control_mean.nii.gz",
            )
            if not (self.path / name).is_file()
        ]
        if (self.path / "cohort.csv").is_file() and (self.path / "cohort.sha256").is_file():
            if (self.path / "cohort.sha256").read_text().split()[0] != sha256(self.path / "cohort.csv"):
                problems.append("cohort.csv does not match cohort.sha256")
        return problems
