"""Semi-synthetic cohorts: valid files, seeded, ground truth where it should be."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sepclr_med.cli.main import app
from sepclr_med.errors import SepclrError
from sepclr_med.io.reading import read_cohort
from sepclr_med.simulate import list_recipes, load_recipe, simulate_cohort


def test_shipped_recipe_loads():
    assert "schizophrenia" in list_recipes()
    recipe = load_recipe()
    assert recipe.name == "schizophrenia"
    assert {s.name for s in recipe.subtypes} == {"positive", "negative"}
    assert recipe.n_controls == recipe.n_patients == 100


def test_bad_recipe_values_are_named(tmp_path):
    with pytest.raises(SepclrError, match="n_patients"):
        load_recipe().replace(n_patients=1)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[subtypes]]\nname = "a"\nregions = ["Nowhere_L"]\n')
    recipe = load_recipe(bad)
    with pytest.raises(SepclrError, match="Nowhere_L"):
        simulate_cohort(recipe.replace(n_controls=2, n_patients=2, resolution_mm=8.0), tmp_path / "o")
    with pytest.raises(SepclrError, match="unknown recipe"):
        load_recipe("no-such-recipe")


def test_simulated_cohort_is_valid_and_loadable(simulated):
    cohort = read_cohort(simulated.cohort_csv)
    assert len(cohort) == 24 and cohort.is_target.sum() == 12
    assert cohort.score_columns == ("panss_positive", "panss_negative")
    assert cohort.warnings == []
    img = nib.load(cohort.table["image"].iloc[0])
    assert img.ndim == 3 and np.allclose(np.abs(np.diag(img.affine))[:3], 6.0)
    assert img.header.get_sform(coded=True)[1] == 4  # MNI152 space code
    from nilearn.image import load_img

    assert load_img(cohort.table["image"].iloc[0]).shape == img.shape


def test_ground_truth_and_scores(simulated):
    truth = pd.read_csv(simulated.ground_truth_csv, keep_default_na=False)
    patients = truth[truth["group"] == "patient"]
    controls = truth[truth["group"] == "control"]
    assert set(patients["subtype"]) == {"positive", "negative"}
    assert (patients["subtype"].value_counts() == 6).all()  # balanced subtypes
    assert patients["severity"].between(0.2, 1.0).all() and (controls["severity"] == 0).all()
    assert (controls["subtype"] == "").all()
    assert patients["affected_regions"].str.contains("Hippocampus_L|Cingulum_Ant_L").all()
    cohort = pd.read_csv(simulated.cohort_csv)
    merged = cohort.merge(truth[["subject_id", "subtype", "severity"]], on="subject_id")
    p = merged[merged["group"] == "patient"]
    assert cohort.loc[cohort["group"] == "control", "panss_positive"].isna().all()
    assert p["panss_positive"].between(7, 49).all()
    pos = p[p["subtype"] == "positive"]
    neg = p[p["subtype"] == "negative"]
    assert pos["panss_positive"].mean() > neg["panss_positive"].mean()
    assert neg["panss_negative"].mean() > pos["panss_negative"].mean()


def test_subtype_effect_is_most_negative_inside_its_mask(simulated):
    truth = pd.read_csv(simulated.ground_truth_csv, keep_default_na=False)
    images = np.stack([nib.load(simulated.root / "images" / f"{s}.nii.gz").get_fdata() for s in truth["subject_id"]])
    brain = nib.load(simulated.brain_mask).get_fdata() > 0
    masks = {k: nib.load(p).get_fdata() > 0 for k, p in simulated.subtype_masks.items()}
    control_mean = images[truth["group"].to_numpy() == "control"].mean(axis=0)
    for k, mask in masks.items():
        diff = images[truth["subtype"].to_numpy() == k].mean(axis=0) - control_mean
        inside = diff[mask].mean()
        others = {j: diff[m].mean() for j, m in masks.items() if j != k}
        outside = diff[brain & ~np.logical_or.reduce(list(masks.values()))].mean()
        assert inside < -0.02, (k, inside)
        assert inside < min(others.values()) and inside < outside - 0.02, (k, inside, others, outside)


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    recipe = load_recipe().replace(n_controls=2, n_patients=2, resolution_mm=8.0, seed=7)
    a = simulate_cohort(recipe, tmp_path / "a")
    b = simulate_cohort(recipe, tmp_path / "b")
    c = simulate_cohort(recipe.replace(seed=8), tmp_path / "c")
    for name in ("images/sub-0001.nii.gz", "images/sub-0004.nii.gz", "masks/subtype-positive.nii.gz"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes()
    assert a.cohort_csv.read_text() == b.cohort_csv.read_text()
    assert (a.root / "images/sub-0001.nii.gz").read_bytes() != (c.root / "images/sub-0001.nii.gz").read_bytes()


def test_imbalance_makes_patients_older(tmp_path):
    base = load_recipe().replace(n_controls=40, n_patients=40, resolution_mm=8.0)
    from sepclr_med.simulate.generator import _demographics

    balanced = _demographics(base, np.random.default_rng(0))
    skewed = _demographics(base.replace(imbalance=1.0), np.random.default_rng(0))
    gap = lambda t: t[t.group == "patient"].age.mean() - t[t.group == "control"].age.mean()  # noqa: E731
    assert abs(gap(balanced)) < 5 and gap(skewed) > 5
    sites = balanced.groupby("group")["site"].value_counts().unstack()
    assert (sites.loc["control"] - sites.loc["patient"]).abs().max() <= 1  # balanced sites
    assert (skewed[skewed.group == "patient"].site == "A").mean() > 0.6


def test_simulate_cli_then_validate(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        app, ["simulate", "--out", str(out), "--n-controls", "3", "--n-patients", "3", "--resolution", "8"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["validate", "--cohort", str(out / "cohort.csv")])
    assert result.exit_code == 0, result.output
    assert "6 subjects (3 control, 3 patient)" in result.output
    result = runner.invoke(app, ["simulate", "--out", str(out), "--n-controls", "2"])
    assert result.exit_code == 1 and "pass --overwrite" in result.output  # a written cohort is kept
    result = runner.invoke(app, ["simulate", "--out", str(out), "--recipe", "nope", "--overwrite"])
    assert result.exit_code == 1 and "unknown recipe" in result.output


def test_nuisance_blobs_vary_gm_in_controls_and_patients_alike(tmp_path):
    from sepclr_med.simulate.anatomy import load_template_space
    from sepclr_med.simulate.generator import focal_variation
    from sepclr_med.simulate.recipe import Nuisance

    space = load_template_space(8.0)
    field = focal_variation(space, Nuisance(blobs_per_subject=3.0, max_gm_change=0.25), np.random.default_rng(0))
    assert field.shape == space.shape and field.min() >= 0.75**3 and field.max() <= 1.25**3
    assert (np.abs(field - 1) > 0.01).mean() > 0.005  # some voxels changed, not the whole brain
    recipe = load_recipe().replace(n_controls=3, n_patients=3, resolution_mm=8.0, seed=4)
    plain = simulate_cohort(recipe, tmp_path / "plain")
    blobs = simulate_cohort(dataclasses.replace(recipe, nuisance=Nuisance(blobs_per_subject=4.0)), tmp_path / "blobs")
    truth = pd.read_csv(plain.ground_truth_csv)
    for sid, group in zip(truth["subject_id"], truth["group"], strict=True):
        a = nib.load(plain.root / "images" / f"{sid}.nii.gz").get_fdata()
        b = nib.load(blobs.root / "images" / f"{sid}.nii.gz").get_fdata()
        assert not np.allclose(a, b), group  # every subject, either group, carries its own blobs


def test_family_recipes_vary_what_the_default_holds_fixed():
    from sepclr_med.simulate import family_recipes

    family = family_recipes()
    assert len(family) >= 5 and [r.holdout for r in family.values()][-1] is True
    assert sum(r.holdout for r in family.values()) == 1
    default = load_recipe()
    regions = {frozenset(s.regions) for r in family.values() for s in r.subtypes}
    assert len(regions) >= 6 and not regions & {frozenset(s.regions) for s in default.subtypes}
    sizes = sorted(r.n_controls for r in family.values())
    assert sizes[0] == 40 and sizes[-1] == 150
    assert {len(r.subtypes) for r in family.values()} == {1, 2, 3}
    assert min(s.max_gm_loss for r in family.values() for s in r.subtypes) <= 0.15  # a weak member
    assert all(
        r.nuisance.blobs_per_subject > 0 and len({s.gain for s in r.sites}) > 1 and r.age.global_loss_per_decade > 0
        for r in family.values()
    )


def test_unknown_recipe_key_is_an_error(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "x"\nn_control = 10\n[[subtypes]]\nname = "a"\nregions = ["Insula_L"]\n')
    with pytest.raises(SepclrError, match="unknown recipe key.*n_control"):
        load_recipe(path)
