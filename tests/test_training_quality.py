"""Slow: a real (small) training run separates patients from controls in the salient space.

Run with ``python -m pytest -m slow``. Looser bounds than the benchmark on the default cohort
(docs/benchmarks.md), on a smaller and coarser cohort so that it runs in a few minutes.
"""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_salient_space_separates_patients_on_held_out_subjects(tmp_path):
    from sepclr_med.cohort import read_cohort
    from sepclr_med.embed import embed
    from sepclr_med.evaluation import probe_classification, probe_regression
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train

    recipe = load_recipe().replace(n_controls=60, n_patients=60, resolution_mm=6.0)
    train_sim = simulate_cohort(recipe, tmp_path / "train")
    test_sim = simulate_cohort(recipe.replace(seed=1000, n_controls=40, n_patients=40), tmp_path / "test")
    run = train(read_cohort(train_sim.cohort_csv), tmp_path / "run",
                TrainConfig().override(**{"optim.epochs": 40, "device": "cpu"}))
    latents = embed(Run(run), read_cohort(test_sim.cohort_csv))
    truth = pd.read_csv(test_sim.ground_truth_csv, keep_default_na=False)
    df = latents.merge(truth[["subject_id", "subtype", "severity"]], on="subject_id")
    patient = (df["group"] == "patient").to_numpy()
    salient = df.filter(like="salient_").to_numpy()
    common = df.filter(like="common_").to_numpy()
    assert probe_classification(salient, patient) >= 0.75
    assert probe_classification(common, patient) <= 0.70
    assert probe_classification(salient[patient], df.loc[patient, "subtype"]) >= 0.80
    assert probe_regression(salient[patient], df.loc[patient, "severity"]) >= 0.1
