"""Shared fixtures: tiny NIfTI cohorts with deliberately unequal shapes, seeded RNGs, no network."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
# The suite runs on 2 pytest-xdist workers (pyproject addopts): one math thread each, waiting
# passively, so the two workers share the cores instead of spinning against each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Rich wraps CLI output at $COLUMNS (80 off a terminal): tests look for whole messages, whose
# paths are longer under a worker's temporary folder
os.environ.setdefault("COLUMNS", "250")
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ.setdefault(_variable, "1")

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

SHAPE = (7, 8, 9)
AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def make_image(
    path: Path, data: np.ndarray | None = None, *, shape=SHAPE, affine=AFFINE, rng: np.random.Generator | None = None
) -> Path:
    """Write a NIfTI image (random positive data by default) and return its path."""
    if data is None:
        rng = rng or np.random.default_rng(0)
        data = rng.uniform(0.1, 1.0, shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def write_cohort(
    folder: Path,
    n_controls: int = 3,
    n_patients: int = 3,
    *,
    extra: dict | None = None,
    rng: np.random.Generator | None = None,
) -> Path:
    """A valid cohort CSV of tiny images in ``folder``; ``extra`` adds columns."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for i in range(n_controls + n_patients):
        sid = f"s{i:02d}"
        make_image(folder / "img" / f"{sid}.nii.gz", rng=rng)
        rows.append(
            {
                "subject_id": sid,
                "image": f"img/{sid}.nii.gz",
                "group": "control" if i < n_controls else "patient",
                "age": 30 + i,
                "sex": "MF"[i % 2],
                "site": "AB"[i % 2],
                "panss_positive": "" if i < n_controls else 10 + i,
            }
        )
    table = pd.DataFrame(rows)
    for column, values in (extra or {}).items():
        table[column] = values
    path = folder / "cohort.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """A small simulated cohort (6 mm, 12 controls + 12 patients), shared by the session."""
    from sepclr_med.simulate import load_recipe, simulate_cohort

    recipe = load_recipe("schizophrenia").replace(n_controls=12, n_patients=12, resolution_mm=6.0, seed=3)
    return simulate_cohort(recipe, tmp_path_factory.mktemp("sim"))


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """A tiny simulated cohort for training tests: 8 mm, 8 controls + 8 patients."""
    from sepclr_med.simulate import load_recipe, simulate_cohort

    recipe = load_recipe("schizophrenia").replace(n_controls=8, n_patients=8, resolution_mm=8.0, seed=11)
    return simulate_cohort(recipe, tmp_path_factory.mktemp("tiny"))


def tiny_config(**overrides):
    """A fast training config for tests (CPU, 2 epochs, batch 8, no validation cache on disk)."""
    from sepclr_med.training import TrainConfig

    base = {
        "device": "cpu",
        "optim.epochs": 2,
        "optim.batch_size": 8,
        "val_fraction": 0.25,
        "model.common_dim": 8,
        "model.salient_dim": 8,
        "model.head_hidden": 16,
    }
    return TrainConfig().override(**{**base, **overrides})


def headless_chrome():
    """A headless Chromium driven by selenium (the test is skipped where either is missing)."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Chromium or chromedriver is not installed (Debian packages chromium, chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,1600",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)
