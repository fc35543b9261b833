"""The scikit-learn-style estimator (issue 14): fit -> transform -> save -> load round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import tiny_config
from sepclr_med.errors import SepclrError

SMALL = {"model.common_dim": 8, "model.salient_dim": 8, "model.head_hidden": 16, "val_fraction": 0.25}


@pytest.fixture(scope="module")
def fitted(tiny_cohort):
    from sepclr_med import SepCLR, read_cohort

    cohort = read_cohort(tiny_cohort.cohort_csv)
    return SepCLR(epochs=2, batch_size=8, seed=3, device="cpu", overrides=SMALL).fit(cohort), cohort


def test_parameters_are_only_stored_and_clone(tiny_cohort):
    from sepclr_med import SepCLR

    model = SepCLR(epochs=3, overrides={"loss.beta_salient": 1.0})
    assert model.get_params()["epochs"] == 3 and not hasattr(model, "run_")
    assert clone(model).get_params() == model.get_params()
    assert model.training_config().optim.epochs == 3 and model.training_config().loss.beta_salient == 1.0
    with pytest.raises(NotFittedError):
        model.transform(tiny_cohort.cohort_csv)


def test_fit_returns_self_with_learned_attributes(fitted):
    model, cohort = fitted
    assert model.run_.path.is_dir() and (model.run_.path / "model.pt").is_file()
    assert model.common_dim_ == 8 and model.salient_dim_ == 8 and len(model.history_) == 2
    assert model.verdict_["status"] in {"separated", "not separated"}
    assert model.config_.optim.epochs == 2 and model.config_.seed == 3
    both = model.transform(cohort)
    assert both.shape == (len(cohort.table), 16) and both.dtype == np.float32 and np.isfinite(both).all()
    np.testing.assert_array_equal(model.transform(cohort, space="common"), both[:, :8])
    np.testing.assert_array_equal(model.transform(cohort, space="salient"), both[:, 8:])


def test_latents_do_not_depend_on_the_other_subjects(fitted):
    model, cohort = fitted
    full = model.transform(cohort, space="salient")
    few = cohort.subset(np.isin(np.arange(len(cohort.table)), [5, 1, 9]))
    rows = [list(cohort.subject_ids).index(s) for s in few.subject_ids]
    np.testing.assert_allclose(model.transform(few, space="salient", batch_size=1), full[rows], rtol=1e-5, atol=1e-6)


def test_save_then_load_gives_the_same_latents_and_a_cli_run_loads(fitted, tiny_cohort, tmp_path):
    from typer.testing import CliRunner

    from sepclr_med import SepCLR
    from sepclr_med.cli.main import app
    from sepclr_med.errors import SepclrError

    model, cohort = fitted
    before = model.transform(cohort)
    saved = tmp_path / "saved"
    assert model.save(saved) is model
    assert model.run_.path == tmp_path / "saved" and not list(tmp_path.glob(".*sepclr-tmp*"))
    loaded = SepCLR.load(saved, device="cpu")
    np.testing.assert_array_equal(loaded.transform(cohort), before)
    assert loaded.get_params()["config"] == model.config_
    (tmp_path / "occupied").mkdir()
    with pytest.raises(SepclrError, match="exists"):
        model.save(tmp_path / "occupied")

    run = tmp_path / "cli_run"
    args = [
        "train",
        "--cohort",
        str(tiny_cohort.cohort_csv),
        "--out",
        str(run),
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--batch-size",
        "8",
    ]
    assert CliRunner().invoke(app, args).exit_code == 0
    from_cli = SepCLR.load(run)
    assert from_cli.transform(tiny_cohort.cohort_csv).shape[1] == from_cli.common_dim_ + from_cli.salient_dim_
    assert json.loads((run / "verdict.json").read_text())["status"] == from_cli.verdict_["status"]


def test_an_unfinished_run_is_refused(fitted, tmp_path):
    import shutil

    from sepclr_med import SepCLR
    from sepclr_med.errors import SepclrError

    model, _ = fitted
    copy = shutil.copytree(model.run_.path, tmp_path / "crashed")
    (copy / "model.pt").unlink()  # what a run killed during training leaves
    with pytest.raises(SepclrError, match="did not finish"):
        SepCLR.load(copy)


def test_the_estimator_trains_what_train_trains(fitted, tiny_cohort, tmp_path):
    import torch

    from sepclr_med.training.loop import train

    model, cohort = fitted
    direct = train(cohort, tmp_path / "direct", tiny_config(**{"seed": 3}))
    a = torch.load(direct / "model.pt", weights_only=True)
    b = torch.load(model.run_.path / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_parameters_left_unset_keep_the_configurations_own():
    """The command line builds its configuration and hands it to SepCLR: a device or epoch count
    the user did not give must not replace the configuration's."""
    from sepclr_med.estimator import SepCLR
    from sepclr_med.training import TrainConfig

    config = TrainConfig().override(**{"device": "cpu", "optim.epochs": 7})
    assert SepCLR(config).training_config().device == "cpu"
    assert SepCLR(config).training_config().optim.epochs == 7
    assert SepCLR(config, epochs=3, device="auto").training_config().optim.epochs == 3
    with pytest.raises(SepclrError, match="resume=True continues the run in run_dir"):
        SepCLR(config).fit("no-such-cohort.csv", resume=True)
