"""`SepCLR`: the model as a scikit-learn-style estimator over a run directory.

::

    from sepclr_med import SepCLR, read_cohort

    cohort = read_cohort("schizophrenia.csv", check_alignment=True)
    model = SepCLR(epochs=100, seed=0).fit(cohort)        # trains; returns the estimator
    salient = model.transform(cohort, space="salient")     # (n_subjects, salient_dim) array
    model.save("runs/scz")                                 # a run directory, as `sepclr-med train` writes
    same = SepCLR.load("runs/scz")                         # also loads a directory written by the CLI

The run directory (:mod:`sepclr_med.run`) *is* the fitted state: ``fit`` writes one (into
``run_dir``, or a private temporary folder until :meth:`SepCLR.save`), ``load`` reads one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from sepclr_med.errors import SepclrError

SPACES = ("common", "salient", "both")


class SepCLR(TransformerMixin, BaseEstimator):
    """Contrastive analysis of 3D brain images: a common and a salient encoder (SepCLR).

    Parameters
    ----------
    config : TrainConfig, path-like or None
        Base hyper-parameters: a :class:`~sepclr_med.training.TrainConfig`, a TOML file as
        ``sepclr-med train --config`` takes, or ``None`` for the defaults.
    epochs, batch_size : int, optional
        Override the configuration's.
    lr : float, optional
        Adam learning rate.
    seed : int, optional
        Seed of the weights, the validation split and the augmentations.
    device : str, optional
        ``auto``, ``cpu`` or ``cuda``; None keeps the configuration's (``auto`` by default).
    overrides : dict, optional
        Further settings by dotted name (``{"loss.beta_salient": 1.0, "model.salient_dim": 16}``).
    run_dir : path-like, optional
        Where :meth:`fit` writes the run; ``None``: a temporary folder, kept until
        :meth:`save` copies it or the estimator is garbage-collected.
    verbose : bool
        Print the per-epoch lines and the verdict.

    Attributes
    ----------
    run_ : Run
        The fitted run directory (read side).
    config_ : TrainConfig
        The resolved configuration (grid, intensity scale and labels included).
    verdict_ : dict
        Whether the salient space separates held-out patients (``verdict_["status"]``).
    history_ : list of dict
        ``metrics.jsonl``: one record per epoch.
    common_dim_, salient_dim_ : int
        Sizes of the two spaces.
    """

    def __init__(
        self,
        config=None,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        seed: int | None = None,
        device: str | None = None,
        overrides: dict[str, Any] | None = None,
        run_dir: str | os.PathLike | None = None,
        verbose: bool = False,
    ) -> None:
        self.config = config
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.device = device
        self.overrides = overrides
        self.run_dir = run_dir
        self.verbose = verbose

    # -- fitting -------------------------------------------------------------------------------
    def training_config(self):
        """The :class:`~sepclr_med.training.TrainConfig` these parameters stand for."""
        from sepclr_med.training import TrainConfig

        base = self.config
        if base is None:
            base = TrainConfig()
        elif not isinstance(base, TrainConfig):
            base = TrainConfig.load(base)
        given = {
            "optim.epochs": self.epochs,
            "optim.batch_size": self.batch_size,
            "optim.lr": self.lr,
            "seed": self.seed,
            "device": self.device,
        }
        changes = {k: v for k, v in given.items() if v is not None}
        return base.override(**{**changes, **(self.overrides or {})})

    def fit(self, cohort, y=None, *, resume: bool = False, console=None) -> SepCLR:
        """Train on ``cohort`` (controls = background, patients = target).

        Parameters
        ----------
        cohort : Cohort or path-like
            A validated :class:`~sepclr_med.io.cohort.Cohort`, or a CSV/TSV/BIDS path read with
            :func:`~sepclr_med.io.reading.read_cohort` (template-space check on).
        y : None
            Ignored: the groups are the cohort's own.
        resume : bool
            Continue the run in ``run_dir`` from its ``last.pt`` (``sepclr-med train --resume``).
        console : rich.console.Console, optional
            Where progress and the verdict are printed; quiet unless ``verbose`` by default.

        Returns
        -------
        SepCLR
            ``self``, fitted. Under ``torchrun`` only rank 0 writes the run: the other ranks'
            estimators are returned unfitted.
        """
        from rich.console import Console

        from sepclr_med.io.cohort import Cohort
        from sepclr_med.io.reading import read_cohort
        from sepclr_med.training.loop import train

        if resume and self.run_dir is None:
            raise SepclrError("resume=True continues the run in run_dir: give run_dir")
        if not isinstance(cohort, Cohort):
            cohort = read_cohort(cohort, check_alignment=not resume)
        config = self.training_config()
        if self.run_dir is not None:
            out = Path(self.run_dir)
            self._private = None
        else:
            self._private = tempfile.TemporaryDirectory(prefix="sepclr-fit-")
            out = Path(self._private.name) / "run"
        console = console if console is not None else Console(quiet=not self.verbose)
        train(cohort, out, config, resume=resume, console=console, epochs=self.epochs)
        if int(os.environ.get("RANK", "0")) != 0:  # DDP: rank 0 writes model.pt after the others leave
            return self
        return self._fitted(out)

    def _fitted(self, out: Path, run=None) -> SepCLR:
        from sepclr_med.run import Run

        if not ((run.path if run is not None else out) / "model.pt").is_file():
            raise SepclrError(
                f"{out} holds no model.pt: the run did not finish (resume it with `sepclr-med train --resume`)"
            )
        self.run_ = run if run is not None else Run(out)
        self.config_ = self.run_.config
        self.verdict_ = self.run_.verdict()
        self.history_ = self.run_.metrics()
        self.common_dim_ = self.config_.model.common_dim
        self.salient_dim_ = self.config_.model.salient_dim
        self._model = None
        return self

    # -- inference -----------------------------------------------------------------------------
    def transform(self, cohort, space: str = "both", *, batch_size: int = 16) -> np.ndarray:
        """Latent representations of every subject of ``cohort`` (seen or unseen).

        Each subject's values depend on its image only (eval mode), never on the others passed
        with it.

        Parameters
        ----------
        cohort : Cohort or path-like
            Subjects to embed; a path is read with the run's group column, labels and
            template-space check (:meth:`~sepclr_med.run.Run.read_cohort`).
        space : {"common", "salient", "both"}
            ``both`` is ``[common | salient]``, ``common_dim_ + salient_dim_`` columns.
        batch_size : int
            Volumes per forward pass (does not change the values).

        Returns
        -------
        numpy.ndarray
            ``(n_subjects, dim)``, float32.
        """
        latents = self.latents(cohort, batch_size=batch_size)
        return self._columns(latents, space)

    def latents(self, cohort, *, batch_size: int = 16):
        """As :meth:`transform` with ``space="both"``, as a table with ``subject_id`` and ``group``."""
        from sepclr_med.embed import encode_cohort
        from sepclr_med.io.cohort import Cohort
        from sepclr_med.training.distributed import resolve_device

        run = self._check_fitted()
        if not isinstance(cohort, Cohort):
            cohort = run.read_cohort(cohort)
        device = resolve_device(self.device or self.config_.device)
        if self._model is None:
            self._model = run.load_model(device)
        return encode_cohort(self._model, self.config_.preprocess, cohort, batch_size=batch_size, device=device)

    def _columns(self, latents, space: str) -> np.ndarray:
        if space not in SPACES:
            raise SepclrError(f"space must be one of {SPACES}, not {space!r}")
        prefixes = ("common_", "salient_") if space == "both" else (f"{space}_",)
        columns = [c for c in latents.columns if c.startswith(prefixes)]
        return latents[columns].to_numpy(dtype=np.float32)

    def _check_fitted(self):
        from sklearn.exceptions import NotFittedError

        if not hasattr(self, "run_"):
            raise NotFittedError("this SepCLR is not fitted: call fit(cohort) or SepCLR.load(run_dir)")
        return self.run_

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Copy the fitted run directory to ``path`` (a new folder) and use it from now on.

        Returns
        -------
        SepCLR
            ``self``, now reading ``path``.
        """
        run = self._check_fitted()
        path = Path(path)
        if path.resolve() == run.path.resolve():
            return self
        if path.exists():
            raise SepclrError(f"{path} exists; save into a new folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.sepclr-tmp-", dir=path.parent))
        try:
            shutil.copytree(run.path, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".sepclr-med.lock"))
            os.replace(staging, path)  # the folder appears whole or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.run_dir = path
        return self._fitted(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> SepCLR:
        """A fitted estimator from a run directory (written by :meth:`save` or ``sepclr-med train``)
        or an exported model file (``sepclr-med export``).

        The parameters are read back from the run's ``config.toml``.
        """
        from sepclr_med.exported import open_model

        run = open_model(path)
        estimator = cls(config=run.config, device=device, run_dir=path)
        return estimator._fitted(Path(path), run)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "run_")
