"""Slow: a real (small) training run separates patients from controls in the salient space and
keeps the subtype out of the common space; its verdict says so, and a cohort whose patients carry
no planted effect is flagged.

Run with ``python -m pytest -m slow``. Looser bounds than the benchmark on the default cohort
(docs/benchmarks.md), on a smaller cohort (80 + 80 subjects, 50 epochs: ~5 min on 2 cores); the
null cohorts at 6 mm, ~4 min each.
"""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    from sepclr_med.embed import embed
    from sepclr_med.evaluation import probe_classification, probe_regression
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train

    root = tmp_path_factory.mktemp("quality")
    recipe = load_recipe().replace(n_controls=80, n_patients=80)  # 4 mm, as the default cohort
    train_sim = simulate_cohort(recipe, root / "train")
    test_sim = simulate_cohort(recipe.replace(seed=1000, n_controls=40, n_patients=40), root / "test")
    run = train(
        read_cohort(train_sim.cohort_csv), root / "run", TrainConfig().override(**{"optim.epochs": 50, "device": "cpu"})
    )
    latents = embed(Run(run), read_cohort(test_sim.cohort_csv))
    truth = pd.read_csv(test_sim.ground_truth_csv, keep_default_na=False)
    df = latents.merge(truth[["subject_id", "subtype", "severity"]], on="subject_id")
    patient = (df["group"] == "patient").to_numpy()
    salient = df.filter(like="salient_").to_numpy()
    common = df.filter(like="common_").to_numpy()
    return {
        "verdict": Run(run).verdict(),
        "salient->patient": probe_classification(salient, patient),
        "common->patient": probe_classification(common, patient),
        "salient->subtype": probe_classification(salient[patient], df.loc[patient, "subtype"]),
        "salient->severity": probe_regression(salient[patient], df.loc[patient, "severity"]),
        "common->subtype": probe_classification(common[patient], df.loc[patient, "subtype"]),
    }


def test_salient_space_separates_patients_and_common_space_drops_the_subtype(scores):
    assert scores["salient->patient"] >= 0.75, scores
    assert scores["salient->subtype"] >= 0.80, scores
    assert scores["salient->severity"] >= 0.1, scores
    assert scores["common->subtype"] <= 0.80, scores  # leakage (0.87-0.91 without the penalty)


def test_common_space_does_not_separate_patients(scores):
    # 0.74 with the defaults before issue 11 (an xfail then); holds since beta_salient = 10 and the
    # common intensity path (docs/benchmarks.md, the evaluation family)
    assert scores["common->patient"] <= 0.70, scores


def test_default_recipe_is_not_flagged(scores):
    assert scores["verdict"]["status"] == "separated", scores["verdict"]


def test_cohorts_without_planted_effect_are_flagged(tmp_path):
    """Three null cohorts (patients = controls; 6 mm, 80 + 80, 50 epochs): the verdict's
    permutation test keeps false positives near its 5 % level. Measured: 0 of 6 seeds separated
    (benchmarks/null_verdicts.py, docs/benchmarks.md), where the kept epoch's interval alone
    called 2 of those 6 separated. At most 1 of 3 is allowed here (P >= 0.99 at a 5 % rate)."""
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train

    statuses = []
    for seed in (1, 2, 3):
        recipe = load_recipe().replace(n_controls=80, n_patients=80, resolution_mm=6.0, seed=seed, severity=(0.0, 0.0))
        sim = simulate_cohort(recipe, tmp_path / f"null{seed}")
        run = train(
            read_cohort(sim.cohort_csv),
            tmp_path / f"run{seed}",
            TrainConfig().override(**{"optim.epochs": 50, "device": "cpu"}),
        )
        statuses.append(Run(run).verdict()["status"])
        if statuses[-1] != "separated":
            assert "WARNING" in (run / "MODEL_CARD.md").read_text()
    assert statuses.count("separated") <= 1, statuses
