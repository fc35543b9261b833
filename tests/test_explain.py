"""Explain: a planted blob is found; directions, deviation and clinical statistics behave."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from sepclr_med.explain.clinical import associate
from sepclr_med.explain.directions import SalientDirections
from sepclr_med.explain.group_stats import group_statistic, one_sample_t, smooth_maps
from sepclr_med.explain.regions import region_table
from sepclr_med.explain.saliency import attribute, group_attributions, region_ablation, region_rep_changes

SHAPE = (10, 11, 12)


def blob_atlas():
    labels = np.zeros(SHAPE, np.int32)
    labels[:5, :, :6], labels[5:, :, :6], labels[:5, :, 6:], labels[5:, :, 6:] = 1, 2, 3, 4
    regions = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "name": ["Frontal_L", "Frontal_R", "Occipital_L", "Occipital_R"],
            "hemisphere": ["left", "right", "left", "right"],
        }
    )
    return labels, regions


class Oracle(torch.nn.Module):
    """A 'salient encoder' that measures GM loss in region 2 (with some weight elsewhere)."""

    def __init__(self, labels):
        super().__init__()
        weight = np.where(labels == 2, -1.0, 0.0) + 0.05 * np.random.default_rng(0).standard_normal(SHAPE)
        self.register_buffer("weight", torch.tensor(weight, dtype=torch.float32))

    def forward(self, x):
        signal = (x[:, 0] * self.weight).flatten(1).sum(1, keepdim=True)
        return torch.cat([signal, torch.tanh(signal / 50)], dim=1)


def test_planted_blob_is_the_top_region(rng):
    labels, regions = blob_atlas()
    model = type("M", (), {"salient_encoder": Oracle(labels)})()
    base = np.ones(SHAPE, np.float32)
    patients = np.stack(
        [base - 0.3 * s * (labels == 2) + 0.02 * rng.standard_normal(SHAPE) for s in rng.uniform(0.5, 1, 6)]
    ).astype(np.float32)[:, None]
    volumes = torch.tensor(patients)
    u = np.array([1.0, 0.0])
    controls = torch.tensor(
        np.stack([base + 0.02 * rng.standard_normal(SHAPE) for _ in range(8)]), dtype=torch.float32
    )[:, None]
    for method in ("eg", "ig", "grad"):
        refs = controls if method == "eg" else torch.tensor(base)[None]
        maps = attribute(model, volumes, u, refs, method=method, n_steps=16, batch_size=4)
        assert maps.shape == (6, *SHAPE)
        table = region_table(maps.mean(axis=0), labels, regions)
        assert table.iloc[0]["name"] == "Frontal_R" and table.iloc[0]["rank"] == 1
        assert table.iloc[0]["voxels"] == (labels == 2).sum()
    ig = attribute(model, volumes, u, torch.tensor(base)[None], method="ig", n_steps=32)
    projection = model.salient_encoder(volumes)[:, 0] - model.salient_encoder(torch.tensor(base)[None, None])[:, 0]
    assert np.allclose(ig.reshape(6, -1).sum(1), projection.numpy(), rtol=1e-3)  # completeness
    drops = region_ablation(model, volumes, u, torch.tensor(base)[None], labels, [1, 2, 3, 4])
    assert np.all(np.argmax(drops, axis=1) == 1)
    # expected gradients: the projection is linear here, so each sample is exact and the sum is
    # <u, s(x)> minus the mean over the drawn references; seeded, hence reproducible
    eg = attribute(model, volumes, u, controls, method="eg", n_steps=64, seed=3)
    expected = model.salient_encoder(volumes)[:, 0] - model.salient_encoder(controls)[:, 0].mean()
    assert np.allclose(eg.reshape(6, -1).sum(1), expected.numpy(), rtol=0.02)
    assert np.array_equal(eg, attribute(model, volumes, u, controls, method="eg", n_steps=64, seed=3))
    state = np.random.get_state()[1].copy()
    attribute(model, volumes, u, controls, method="eg", n_steps=4)
    assert np.array_equal(np.random.get_state()[1], state)  # the caller's NumPy stream is untouched


class TwoRegions(torch.nn.Module):
    """Salient dim 0 measures GM loss in region 2 (the disease); dim 1 the GM of region 3 (noise)."""

    def __init__(self, labels):
        super().__init__()
        weight = np.stack([-1.0 * (labels == 2), 1.0 * (labels == 3)])
        self.register_buffer("weight", torch.tensor(weight, dtype=torch.float32))

    def forward(self, x):
        return torch.einsum("nxyz,kxyz->nk", x[:, 0], self.weight)


def test_group_map_follows_the_shared_direction_not_each_members_own(rng):
    labels, regions = blob_atlas()
    model = type("M", (), {"salient_encoder": TwoRegions(labels)})()
    base = np.ones(SHAPE, np.float32)

    def subjects(n, loss):  # everyone varies in region 3 (anatomy), in +/- pairs within each half of n
        v = 0.25 * rng.standard_normal(n // 4)
        e = np.r_[v, -v, v[::-1], -v[::-1]]
        return np.stack(
            [
                base - loss * s * (labels == 2) + d * (labels == 3)
                for s, d in zip(rng.uniform(0.5, 1, n), e, strict=True)
            ]
        )

    volumes = torch.tensor(np.concatenate([subjects(60, 0.0), subjects(40, 0.3)]), dtype=torch.float32)[:, None]
    patient = np.r_[np.zeros(60, bool), np.ones(40, bool)]
    with torch.no_grad():
        salient = model.salient_encoder(volumes).numpy()
    est = SalientDirections(n_components=1).fit(salient, patient)
    own = est.deviation_directions(salient)
    assert np.allclose(np.linalg.norm(own, axis=1), 1) and np.allclose(est.toward(salient[patient]), [1, 0], atol=1e-4)
    baseline = volumes[~patient].mean(dim=0)
    halves = {"a": np.r_[np.ones(20, bool), np.zeros(20, bool)], "b": np.r_[np.zeros(20, bool), np.ones(20, bool)]}
    halves["all"] = np.ones(40, bool)  # overlaps both: a second pass
    shared = {name: est.toward(salient[patient][mask]) for name, mask in halves.items()}
    members = dict(group_attributions(model, volumes[patient], halves, shared, baseline, method="ig", n_steps=8))
    assert {k: len(v) for k, v in members.items()} == {"a": 20, "b": 20, "all": 40}
    means = {name: maps.mean(axis=0) for name, maps in members.items()}
    own_mean = attribute(model, volumes[patient], own[patient], baseline, method="ig", n_steps=8).mean(axis=0)
    for name in halves:
        table = region_table(means[name], labels, regions).set_index("name")
        assert table.loc["Frontal_R", "rank"] == 1
        # along the shared direction region 3's deviations, which the members do not share, cancel
        assert abs(table.loc["Occipital_L", "mean_attribution"]) < 1e-3 * table.loc["Frontal_R", "mean_attribution"]
    # the members' own directions keep every squared deviation of region 3, which does not cancel
    table = region_table(own_mean, labels, regions).set_index("name")
    assert table.loc["Occipital_L", "mean_attribution"] > 0.2 * table.loc["Frontal_R", "mean_attribution"]
    changes = region_rep_changes(model, volumes[patient], baseline, labels, [1, 2, 3, 4])
    assert changes.shape == (40, 4, 2)
    drops = region_ablation(model, volumes[patient], own[patient], baseline, labels, [1, 2, 3, 4])
    assert np.allclose(drops, np.einsum("nrd,nd->nr", changes, own[patient]), atol=1e-4)


def test_group_attributions_give_each_group_its_direction_and_members(rng):
    labels, _ = blob_atlas()
    model = type("M", (), {"salient_encoder": TwoRegions(labels)})()
    volumes = torch.tensor(1 + 0.1 * rng.standard_normal((9, 1, *SHAPE)), dtype=torch.float32)
    baseline = torch.ones((1, *SHAPE))
    groups = {
        "x": np.isin(np.arange(9), [0, 3, 4]),
        "y": np.isin(np.arange(9), [1, 7]),
        "xy": np.isin(np.arange(9), [0, 1, 2, 8]),
    }  # 5 and 6 in no group; xy overlaps both
    directions = {"x": np.array([1.0, 0.0]), "y": np.array([0.0, 1.0]), "xy": np.array([0.6, -0.8])}
    got = dict(group_attributions(model, volumes, groups, directions, baseline, method="ig", n_steps=4))
    assert set(got) == set(groups)
    for name, mask in groups.items():
        expected = attribute(model, volumes[mask], directions[name], baseline, method="ig", n_steps=4)
        assert np.allclose(got[name], expected, atol=1e-6)


def test_expected_gradients_with_per_subject_directions_in_chunks(rng):
    labels, _ = blob_atlas()
    model = type("M", (), {"salient_encoder": TwoRegions(labels)})()
    volumes = torch.tensor(1 + 0.1 * rng.standard_normal((3, 1, *SHAPE)), dtype=torch.float32)
    references = torch.ones((2, 1, *SHAPE))  # two identical references: every sample is exact
    u = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()
    maps = attribute(model, volumes, u, references, method="eg", n_steps=80)  # > 64: 2 chunks per subject
    with torch.no_grad():
        expected = (
            (model.salient_encoder(volumes) - model.salient_encoder(references[:1]))
            * torch.tensor(u, dtype=torch.float32)
        ).sum(1)
    assert np.allclose(maps.reshape(3, -1).sum(1), expected.numpy(), rtol=1e-4, atol=1e-4)
    assert torch.equal(torch.random.get_rng_state(), torch_state)  # callers' streams untouched
    after = np.random.get_state()
    assert np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    with pytest.raises(ValueError, match="several reference"):
        attribute(model, volumes, u, references[:1], method="eg")


def test_group_statistics_smooth_in_mm_and_t_rewards_agreement(rng):
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    impulse = np.zeros((1, *SHAPE), np.float32)
    impulse[0, 5, 5, 6] = 1.0
    smoothed = smooth_maps(impulse, affine, fwhm_mm=8.0)
    assert np.isclose(smoothed.sum(), 1.0, atol=1e-3) and impulse.sum() == 1.0  # mass kept, input untouched
    sigma_vox = 8.0 / np.sqrt(8 * np.log(2)) / 4.0
    profile = smoothed[0, :, 5, 6]
    assert np.isclose(profile[6] / profile[5], np.exp(-0.5 / sigma_vox**2), rtol=1e-2)  # the kernel is in mm
    assert np.array_equal(smooth_maps(impulse, affine, 0), impulse)
    two = np.zeros((2, *SHAPE), np.float32)
    two[0, 5, 5, 6] = 1.0
    both = smooth_maps(two, affine, fwhm_mm=8.0)
    assert np.allclose(both[1], 0) and np.allclose(both[0], smoothed[0])  # members are not mixed
    assert np.isclose(both[0, 5, 5, 7] / both[0, 5, 5, 6], np.exp(-0.5 / sigma_vox**2), rtol=1e-2)  # z too
    # two voxels with the same mean: consistent (t large) and driven by one member (t small)
    maps = 0.01 * rng.standard_normal((10, *SHAPE))
    maps[:, 1, 1, 1] += 1.0
    maps[0, 8, 8, 8] += 10.0
    t = one_sample_t(maps)
    assert t[1, 1, 1] > 50 and abs(t[8, 8, 8]) < 2
    from scipy import stats

    assert np.allclose(t, stats.ttest_1samp(maps, 0.0, axis=0).statistic, rtol=1e-4, atol=1e-4)
    mask = np.zeros(SHAPE, bool)
    mask[:5] = True
    mean = group_statistic(maps, affine, statistic="mean", fwhm_mm=0, mask=mask)
    assert np.allclose(mean, maps.mean(axis=0) * mask, atol=1e-6)
    with pytest.raises(ValueError, match="group statistic"):
        group_statistic(maps, affine, statistic="median")


def test_directions_and_deviation(rng):
    n = 60
    patient = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    severity = rng.uniform(0, 1, n)
    salient = 0.1 * rng.standard_normal((2 * n, 4))
    salient[patient, 0] += 2 * severity
    scores = pd.DataFrame({"panss": np.r_[np.full(n, np.nan), 10 + 30 * severity + rng.standard_normal(n)]})
    est = SalientDirections(n_components=2)
    assert est.fit(salient, patient, scores) is est and est.components_.shape == (2, 4)
    assert abs(est.components_[0][0]) > 0.95 and est.explained_variance_ratio_[0] > 0.8
    assert abs(est.score_directions_["panss"][0]) > 0.95 and est.score_cv_r2_["panss"] > 0.8
    deviation = est.deviation(salient)
    assert deviation.loc[patient, "deviation"].mean() > 3 * deviation.loc[~patient, "deviation"].mean()
    assert deviation.loc[~patient, "control_percentile"].between(0, 100).all()
    assert deviation.loc[patient, "control_percentile"].median() == 100


def test_clinical_association_with_confounds_and_fdr(rng):
    n = 80
    age = rng.uniform(20, 60, n)
    severity = rng.uniform(0, 1, n)
    scores = pd.DataFrame({"panss": 10 + 30 * severity + rng.standard_normal(n)})
    variables = pd.DataFrame(
        {
            "deviation": severity + 0.1 * rng.standard_normal(n),
            "noise": rng.standard_normal(n),
            "age_like": age + rng.standard_normal(n),
        }
    )
    confounds = pd.DataFrame({"age": age, "site": rng.choice(["A", "B"], n)})
    table = associate(scores, variables, confounds, n_permutations=200).set_index("variable")
    assert table.loc["deviation", "q_value"] < 1e-6 and table.loc["deviation", "pearson_r"] > 0.9
    assert table.loc["noise", "q_value"] > 0.05
    assert table.loc["age_like", "adjusted_p"] > 0.01  # age explained by the confound
    assert table.loc["deviation", "permutation_p"] < 0.01 and table.loc["noise", "permutation_p"] > 0.05
    assert (table["q_value"] >= table["adjusted_p"] - 1e-12).all()


def test_fdr_is_computed_within_each_family(rng):
    from scipy import stats

    n = 60
    y = rng.standard_normal(n)
    strong = {f"salient_{i}": y + 0.5 * rng.standard_normal(n) for i in range(20)}
    null = {f"common_{i}": rng.standard_normal(n) for i in range(20)}
    variables = pd.DataFrame({**strong, **null})
    families = {v: v.split("_")[0] for v in variables.columns}
    pooled = associate(pd.DataFrame({"score": y}), variables)
    table = associate(pd.DataFrame({"score": y}), variables, families=families)
    assert set(pooled["family"]) == {"all"} and set(table["family"]) == {"salient", "common"}
    for _family, part in table.groupby("family"):
        expected = stats.false_discovery_control(part["adjusted_p"].to_numpy(), method="bh")
        assert np.allclose(part["q_value"].to_numpy(), expected)
    # pooled with 20 true effects, the null family's q-values shrink: one family relaxes the other
    common = table["family"] == "common"
    assert (pooled.loc[common, "q_value"].to_numpy() < table.loc[common, "q_value"].to_numpy() - 1e-9).any()
    assert (table.loc[common, "q_value"] > 0.05).all()


@pytest.fixture(scope="module")
def explained(tiny_cohort, tmp_path_factory):
    from conftest import tiny_config
    from sepclr_med.explain.pipeline import explain
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run
    from sepclr_med.training.loop import train

    root = tmp_path_factory.mktemp("explain")
    cohort = read_cohort(tiny_cohort.cohort_csv)
    run = train(cohort, root / "run", tiny_config(**{"optim.epochs": 1}))
    truth = pd.read_csv(tiny_cohort.ground_truth_csv, keep_default_na=False)
    index = explain(Run(run), cohort, root / "out", n_steps=4, truth=truth)
    return root, index, cohort, truth


def test_explain_writes_nifti_maps_on_the_runs_grid(explained):
    from nilearn import plotting
    from nilearn.image import load_img

    root, index, cohort, _ = explained
    assert {"deviation_patients", "deviation_subtype-positive", "deviation_subtype-negative"} <= set(index["maps"])
    reference = nib.load(cohort.table["image"].iloc[0])
    img = load_img(index["maps"]["deviation_patients"])
    assert img.shape == reference.shape and np.allclose(img.affine, reference.affine)
    display = plotting.plot_glass_brain(img, threshold=0)
    display.close()
    assert len(index["subjects"]) == int(cohort.is_target.sum())
    table = pd.read_csv(index["regions"]["deviation_patients"])
    assert {"region_id", "name", "hemisphere", "voxels", "mean_t", "rank"} <= set(table.columns)
    mean_table = pd.read_csv(index["regions"]["deviation_patients_mean"])
    assert {"mean_attribution", "sum_attribution"} <= set(mean_table.columns)
    assert table["name"].str.contains("_L|_R|Vermis").all()
    clinical = pd.read_csv(index["tables"]["clinical"])
    assert {"panss_positive", "panss_negative"} == set(clinical["score"])
    assert {"common", "salient"} == set(clinical["space"])
    common = clinical[clinical["space"] == "common"]
    assert index["checks"]["common_dims_associated"] == {
        score: int((part["q_value"] < 0.05).sum()) for score, part in common.groupby("score")
    }
    assert json.loads((root / "out" / "index.json").read_text())["maps"] == index["maps"]
    assert all(p.endswith(".png") for p in index["figures"]) and len(index["figures"]) >= 9


def test_explain_group_maps_record_their_statistic_and_survive_a_single_member(explained):
    from sepclr_med.explain.pipeline import explain
    from sepclr_med.run import Run

    root, index, cohort, truth = explained
    assert index["group_maps"]["deviation_patients"] == {
        "members": int(cohort.is_target.sum()),
        "statistic": "t",
        "fwhm_mm": 8.0,
    }
    assert index["group_maps"]["direction_pc1_patients"]["statistic"] == "t"
    rare = truth.copy()
    lone = rare.index[rare["subtype"] != ""][0]
    rare.loc[lone, "subtype"] = "rare"
    out = explain(Run(root / "run"), cohort, root / "rare", n_steps=4, truth=rare, figures=False)
    assert out["group_maps"]["deviation_subtype-rare"] == {"members": 1, "statistic": "mean", "fwhm_mm": 8.0}
    assert "mean_attribution" in pd.read_csv(out["regions"]["deviation_subtype-rare"]).columns
    ig = explain(Run(root / "run"), cohort, root / "ig", method="ig", n_steps=4, truth=truth, figures=False)
    assert ig["group_maps"]["deviation_patients"]["statistic"] == "mean"
    assert ig["group_maps"]["deviation_patients"]["fwhm_mm"] == 0.0


def test_explain_ablation_without_ground_truth_uses_clusters(explained):
    from sepclr_med.explain.pipeline import explain
    from sepclr_med.run import Run

    root, _, cohort, _ = explained
    out = explain(Run(root / "run"), cohort, root / "ablation", method="ablation", truth=None, figures=False)
    clusters = [k for k in out["regions"] if k.startswith("ablation_cluster-")]
    assert len(clusters) >= 2 and "ablation_patients" in out["regions"]
    table = pd.read_csv(out["regions"][clusters[0]])
    assert {"region_id", "name", "mean_projection_drop", "rank"} <= set(table.columns)


def test_explain_refusing_a_request_writes_nothing(explained):
    from sepclr_med.errors import SepclrError
    from sepclr_med.explain.pipeline import explain
    from sepclr_med.run import Run

    root, _, cohort, _ = explained
    control = cohort.subject_ids[int(np.flatnonzero(~cohort.is_target)[0])]
    with pytest.raises(SepclrError, match="names controls"):
        explain(Run(root / "run"), cohort, root / "refused", subjects=[control])
    assert list((root / "refused").iterdir()) == []  # the lock is released, no empty sub-folders
    with pytest.raises(SepclrError, match="--precision must be one of float32, bfloat16"):
        explain(Run(root / "run"), cohort, root / "refused2", precision="float16")
    assert not (root / "refused2").exists() or list((root / "refused2").iterdir()) == []


def test_explain_and_report_work_on_a_cropped_grid(tiny_cohort, tmp_path):
    """``[preprocess] spatial_size`` used to crop the volumes but keep the full grid's affine:
    explain and report then failed on broadcasting. The crop is now the grid."""
    import nibabel as nib

    from conftest import tiny_config
    from sepclr_med.explain.pipeline import explain
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run
    from sepclr_med.training.loop import train

    cohort = read_cohort(tiny_cohort.cohort_csv)
    run = Run(
        train(cohort, tmp_path / "run", tiny_config(**{"optim.epochs": 1, "preprocess.spatial_size": (16, 18, 16)}))
    )
    assert run.config.preprocess.grid_shape == (16, 18, 16)
    index = explain(run, cohort, tmp_path / "explain", method="grad", n_steps=2, figures=False)
    group = nib.load(index["maps"]["deviation_patients"])
    assert group.shape == (16, 18, 16) and np.allclose(group.affine, run.config.preprocess.grid_affine)
    result = make_reports(run, tiny_cohort.cohort_csv, tmp_path / "reports", n_steps=2, pdf=False)
    assert not result["failures"] and len(result["rows"]) == len(cohort.table)


def test_bfloat16_maps_stay_close_to_float32_ones():
    """bf16 autocast changes the numbers (it is applied) but not the map (correlation, top voxels)."""
    from sepclr_med.explain.saliency import Projection
    from sepclr_med.models import ModelConfig, SepCLRModel

    torch.manual_seed(0)
    model = SepCLRModel(ModelConfig(common_dim=4, salient_dim=4, head_hidden=8, common_intensity=False))
    g = torch.Generator().manual_seed(1)
    volumes = torch.rand((3, 1, 12, 13, 14), generator=g)
    references = torch.rand((4, 1, 12, 13, 14), generator=g)
    u = np.array([0.5, 0.5, 0.5, 0.5])
    exact = attribute(model, volumes, u, references, method="eg", n_steps=8, seed=2)
    half = attribute(model, volumes, u, references, method="eg", n_steps=8, seed=2, precision="bfloat16")
    assert not np.array_equal(exact, half)
    for a, b in zip(exact, half, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    with pytest.raises(ValueError, match="precision"):
        Projection(model, "float16")


def test_an_association_table_without_enough_patients_keeps_its_columns():
    """A tiny cohort (explain on 8 subjects) gives an empty table, not a table without columns."""
    scores = pd.DataFrame({"panss": [10.0, np.nan, np.nan]})
    table = associate(scores, pd.DataFrame({"salient_0": [1.0, 2.0, 3.0]}), pd.DataFrame(index=range(3)))
    assert len(table) == 0 and {"score", "variable", "q_value", "family"} <= set(table.columns)
