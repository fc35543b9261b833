"""Probes are honest: noise at chance, the truth near 1; missing factors are explained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sepclr_med.evaluation import evaluate_latents, probe_classification, probe_regression
from sepclr_med.evaluation.dependence import distance_correlation


def test_probe_on_noise_is_at_chance_and_on_the_truth_near_one(rng):
    labels = np.repeat(["a", "b", "c"], 40)
    noise = rng.standard_normal((120, 16))
    assert abs(probe_classification(noise, labels) - 1 / 3) < 0.12
    truth = pd.get_dummies(labels).to_numpy(float) + 0.01 * rng.standard_normal((120, 3))
    assert probe_classification(truth, labels) > 0.97
    severity = rng.uniform(0, 1, 120)
    assert probe_regression(noise, severity) < 0.05
    assert probe_regression(np.c_[severity, rng.standard_normal((120, 3))], severity) > 0.95


def test_distance_correlation(rng):
    x = rng.standard_normal((400, 3))
    independent = distance_correlation(x, rng.standard_normal((400, 2)))
    quadratic = distance_correlation(x[:, :1], x[:, :1] ** 2)  # uncorrelated, yet dependent
    assert independent < 0.15 and quadratic > 0.4
    assert distance_correlation(x, 2 * x + 1) == pytest.approx(1.0)


def _latents(rng, n=80):
    group = np.repeat(["control", "patient"], n // 2)
    patient = group == "patient"
    subtype = np.where(patient, np.tile(["pos", "neg"], n // 2), "")
    severity = np.where(patient, rng.uniform(0.2, 1, n), 0.0)
    age = rng.uniform(20, 60, n)
    common = np.c_[age / 10 + 0.1 * rng.standard_normal(n), rng.standard_normal((n, 3))]
    salient = np.c_[
        patient * severity * (subtype == "pos"),
        patient * severity * (subtype == "neg"),
        0.05 * rng.standard_normal((n, 2)),
    ]
    latents = pd.DataFrame(
        np.c_[common, salient], columns=[f"common_{i}" for i in range(4)] + [f"salient_{i}" for i in range(4)]
    )
    latents.insert(0, "group", group)
    latents.insert(0, "subject_id", [f"s{i}" for i in range(n)])
    factors = pd.DataFrame(
        {
            "subject_id": latents["subject_id"],
            "age": age,
            "subtype": subtype,
            "severity": np.where(patient, severity, np.nan),
        }
    )
    return latents, factors


def test_separation_table_on_an_ideal_representation(rng):
    latents, factors = _latents(rng)
    table = evaluate_latents(latents, factors).set_index(["space", "factor", "metric"])
    value = lambda *key: table.loc[key, "value"]  # noqa: E731
    assert value("salient", "group", "balanced_accuracy") > 0.9
    assert value("common", "group", "balanced_accuracy") < 0.7
    assert value("salient", "subtype", "balanced_accuracy") > 0.9
    assert value("common", "subtype", "balanced_accuracy") < 0.75
    assert value("salient", "severity", "r2") > 0.5
    assert value("common", "age", "r2") > 0.9 and value("salient", "age", "r2") < 0.1
    assert table.loc[("salient", "group", "balanced_accuracy"), "expected"] == "high"
    assert table.loc[("common", "group", "balanced_accuracy"), "chance"] == 0.5
    assert table.loc[("salient", "subtype", "balanced_accuracy"), "n"] == 40  # patients only
    assert value("salient", "distance from controls", "auc") > 0.9


def test_missing_factors_are_reported_not_invented(rng):
    latents, factors = _latents(rng)
    table = evaluate_latents(latents, factors[["subject_id", "age"]], target_factors=["subtype", "panss"])
    missing = table[table["value"].isna()]
    assert set(missing["factor"]) == {"subtype", "panss", "sex", "site"}
    assert missing["note"].str.contains("no column").all()
    few = factors.copy()
    few.loc[few.index[:-1], "severity"] = np.nan  # a single patient with severity
    table = evaluate_latents(latents, few, target_factors=["severity"])
    assert table.loc[table.factor == "severity", "note"].str.contains("needs >= 10 samples").all()


def test_one_dcor_estimator_serves_the_penalty_and_the_table():
    """Issue 14: the table's dCor is the loss module's bias-corrected estimator; its V-statistic
    (the penalty) drifts above 0 for independent small samples, the corrected one does not."""
    import torch

    from sepclr_med.losses import distance_correlation_sq

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
    corrected = distance_correlation_sq(torch.from_numpy(x), torch.from_numpy(y), eps=0.0, bias_corrected=True)
    assert distance_correlation(x, y) == pytest.approx(float(np.sqrt(max(float(corrected), 0.0))), abs=1e-12)
    v, u = [], []
    for _ in range(200):
        a, b = torch.from_numpy(rng.standard_normal((12, 3))), torch.from_numpy(rng.standard_normal((12, 2)))
        v.append(float(distance_correlation_sq(a, b, eps=0.0)))
        u.append(float(distance_correlation_sq(a, b, eps=0.0, bias_corrected=True)))
    assert np.mean(v) > 0.2 and abs(np.mean(u)) < 0.03
    assert distance_correlation(np.ones((10, 2)), rng.standard_normal((10, 2))) == 0.0
