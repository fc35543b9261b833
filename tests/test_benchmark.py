"""A tiny benchmark runs every kind of method end to end and writes its tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from sepclr_med.baselines import METHODS
from sepclr_med.baselines.cpca import ContrastivePCA


def test_every_subpackage_is_installed():
    root = Path(__file__).resolve().parents[1]
    declared = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        "sepclr_med." + ".".join(p.parent.relative_to(root / "sepclr_med").parts)
        for p in (root / "sepclr_med").rglob("__init__.py")
        if p.parent != root / "sepclr_med"
    }
    assert found <= declared


def test_cpca_finds_the_target_only_direction(rng):
    n, p = 60, 50
    shared = rng.standard_normal((2 * n, 1)) @ rng.standard_normal((1, p)) * 3  # big shared variance
    x = shared + 0.1 * rng.standard_normal((2 * n, p))
    is_target = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    direction = np.zeros(p)
    direction[:5] = 1
    x[is_target] += np.outer(rng.choice([-1.0, 1.0], n), direction)  # two target subgroups
    model = ContrastivePCA(n_salient=1, n_common=1).fit(x, is_target)
    assert model.alpha_ in model.alphas and model.salient_components_.shape == (1, p)
    component = model.salient_components_[0]
    assert abs(component @ direction) / np.linalg.norm(direction) > 0.9
    _, salient = model.transform(x)
    assert salient.shape == (2 * n, 1)


def test_tiny_benchmark_writes_every_method(tiny_cohort, tmp_path):
    from sepclr_med.simulate import load_recipe
    from sepclr_med.workflows.benchmark import run_benchmark

    recipe = load_recipe().replace(n_controls=8, n_patients=8, resolution_mm=8.0, seed=11)
    methods = ["sepclr", "simclr", "untrained", "cpca", "mm-cvae"]
    summary = run_benchmark(tmp_path, methods=methods, seeds=[0], recipe=recipe, epochs=1, n_test=10)
    assert summary["method"].tolist() == methods
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results["method"]) == set(methods)
    assert (tmp_path / "summary.md").read_text().count("|") > 20
    simclr = results[(results.method == "simclr") & (results.factor == "group")]
    assert simclr.set_index("space")["value"].nunique() == 1  # one space, probed as both
    assert set(METHODS) >= set(methods)
