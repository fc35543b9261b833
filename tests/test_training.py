"""Training: the run directory, seeding, resume, divergence, embeddings and DDP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from sepclr_med.cli.main import app
from sepclr_med.errors import SepclrError
from sepclr_med.io.reading import read_cohort
from sepclr_med.run import Run
from sepclr_med.training import TrainConfig
from sepclr_med.training.loop import TrainingDiverged, train

runner = CliRunner()


def losses(run_dir) -> list[float]:
    return [m["train_loss"] for m in Run(run_dir).metrics()]


@pytest.fixture(scope="module")
def trained(tiny_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    train(read_cohort(tiny_cohort.cohort_csv), out, tiny_config())
    return out


def test_run_directory_is_self_contained(trained, tiny_cohort):
    run = Run(trained)
    assert run.verify() == []
    state = torch.load(trained / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    checkpoint = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and "optimizer" in checkpoint
    assert run.config.preprocess.resolved and run.config.preprocess.grid_shape is not None
    assert run.config.optim.epochs == 2 and run.config.model.common_dim == 8
    metrics = run.metrics()
    assert [m["epoch"] for m in metrics] == [1, 2]
    for key in (
        "train_loss",
        "train_common",
        "train_salient",
        "train_infoless",
        "train_jem",
        "train_salient_norm_control",
        "train_salient_norm_patient",
        "val_loss",
        "lr",
        "epoch_seconds",
        "volumes_per_second",
    ):
        assert key in metrics[0], key
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "tensorboard")).Reload()
    assert {"train/loss", "train/common", "train/jem", "val/salient_auc", "time/data_seconds"} <= set(
        events.Tags()["scalars"]
    )
    curve = events.Scalars("train/loss")
    assert [e.step for e in curve] == [m["epoch"] for m in metrics]
    assert [e.value for e in curve] == pytest.approx([m["train_loss"] for m in metrics], rel=1e-6)
    for m in metrics:  # where the epoch went: the parts add up to the epoch, none negative
        parts = [m["data_seconds"], m["augment_seconds"], m["compute_seconds"]]
        assert min(parts) >= 0 and sum(parts) == pytest.approx(m["epoch_seconds"], rel=1e-6)
    split = pd.read_csv(trained / "split.csv")
    assert (split.groupby("group")["split"].apply(lambda s: (s == "val").sum()) >= 2).all()
    assert (trained / "cohort.csv").read_bytes() == tiny_cohort.cohort_csv.read_bytes()
    reference = run.reference_latents()
    assert reference["subject_id"].tolist() == split["subject_id"].tolist()
    assert reference["split"].tolist() == split["split"].tolist()
    assert reference.filter(like="salient_").shape == (16, 8)
    assert "torch" in json.loads((trained / "versions.json").read_text())
    card = (trained / "MODEL_CARD.md").read_text()
    assert "SepCLR" in card
    # the card names every file of the run that holds subject rows, and each one is there
    held = card.split("**Personal data in this folder**")[1].split("Share the folder")[0]
    for name in ("cohort.csv", "inputs.tsv", "split.csv", "alignment.tsv", "reference_latents.csv"):
        assert f"`{name}`" in held and (trained / name).is_file(), name
    model = run.load_model()
    assert not model.training


def test_same_seed_same_losses_other_seed_other_losses(trained, tiny_cohort, tmp_path):
    cohort = read_cohort(tiny_cohort.cohort_csv)
    train(cohort, tmp_path / "again", tiny_config())
    assert losses(tmp_path / "again") == losses(trained)
    train(cohort, tmp_path / "other", tiny_config(seed=1))
    assert losses(tmp_path / "other") != losses(trained)


def test_resume_gives_the_losses_of_an_uninterrupted_run(tiny_cohort, tmp_path):
    cohort = read_cohort(tiny_cohort.cohort_csv)
    train(cohort, tmp_path / "full", tiny_config(**{"optim.epochs": 3}))
    train(cohort, tmp_path / "cut", tiny_config(**{"optim.epochs": 1}))  # "killed" after epoch 1
    (tmp_path / "cut" / "model.pt").unlink()
    result = runner.invoke(
        app,
        ["train", "--cohort", str(tiny_cohort.cohort_csv), "--out", str(tmp_path / "cut"), "--resume", "--epochs", "3"],
    )
    assert result.exit_code == 0, result.output
    assert losses(tmp_path / "cut") == pytest.approx(losses(tmp_path / "full"), rel=1e-6, abs=1e-7)
    with pytest.raises(SepclrError, match="already holds a run"):
        train(cohort, tmp_path / "full", tiny_config())


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_cohort, tmp_path, monkeypatch):
    from sepclr_med import losses as loss_module

    original = loss_module.SepCLRLoss.forward
    calls = {"n": 0}

    def flaky(self, *args):
        calls["n"] += 1
        total, terms = original(self, *args)
        return (total * float("nan"), terms) if calls["n"] > 3 else (total, terms)

    monkeypatch.setattr(loss_module.SepCLRLoss, "forward", flaky)
    with pytest.raises(TrainingDiverged, match="non-finite loss at epoch 2"):
        train(read_cohort(tiny_cohort.cohort_csv), tmp_path / "nan", tiny_config(**{"optim.epochs": 3}))
    checkpoint = torch.load(tmp_path / "nan" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 1
    assert not (tmp_path / "nan" / "model.pt").exists()


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[optim]\nepochs = 7\nlr = 0.001\n[loss]\nlambda_jem = 100.0\n")
    config = TrainConfig.load(path).override(**{"optim.lr": 0.002})
    assert (config.optim.epochs, config.optim.lr, config.loss.lambda_jem) == (7, 0.002, 100.0)
    path.write_text("[optim]\nepoch = 7\n")
    with pytest.raises(SepclrError, match="unknown key"):
        TrainConfig.load(path)


def test_embed_unseen_patients_only(trained, tmp_path):
    from sepclr_med.simulate import load_recipe, simulate_cohort

    new = simulate_cohort(
        load_recipe().replace(n_controls=2, n_patients=5, resolution_mm=8.0, seed=99), tmp_path / "new"
    )
    table = pd.read_csv(new.cohort_csv)
    patients = tmp_path / "new" / "patients.csv"
    table[table["group"] == "patient"].to_csv(patients, index=False)
    out = tmp_path / "latents.csv"
    result = runner.invoke(
        app, ["embed", "--run", str(trained), "--cohort", str(patients), "--out", str(out), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    latents = pd.read_csv(out)
    assert list(latents.columns) == (
        ["subject_id", "group"] + [f"common_{i}" for i in range(8)] + [f"salient_{i}" for i in range(8)]
    )
    assert len(latents) == 5 and (latents["group"] == "patient").all()
    assert latents.iloc[:, 2:].notna().all().all() and latents.iloc[:, 2:].std().gt(0).any()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trainer_step(model, batch, ctx, gather: bool):
    """The training step itself (``Trainer._step``) under the default objective."""
    from sepclr_med.losses import SepCLRLoss
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import Trainer

    config = TrainConfig().override(device="cpu", channels_last=False)
    trainer = Trainer(config)
    trainer.config, trainer.adversary = config, None  # what _fit sets before the first step
    trainer.weights = {"lambda_independence": config.loss.lambda_independence}  # past the warm-up
    loss_fn = SepCLRLoss(config.loss.beta_salient, config.loss.beta_infoless, config.loss.lambda_jem)
    total, _, _ = trainer._step(model, batch, ctx, loss_fn, gather=gather)
    return total


def _ddp_worker(rank: int, world: int, port: int, x, y, split_at, result):
    import torch.distributed as dist

    from sepclr_med.models import ModelConfig, SepCLRModel
    from sepclr_med.training.distributed import DistContext

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(
        SepCLRModel(ModelConfig(common_dim=4, salient_dim=4, head_hidden=8))
    )
    local = slice(0, split_at) if rank == 0 else slice(split_at, len(y))
    batch = {"view1": x[0][local], "view2": x[1][local], "is_target": y[local]}
    total = _trainer_step(model, batch, DistContext(rank, world), gather=True)
    total.backward()
    grad = model.module.common_encoder.fc.weight.grad.clone()
    result[rank] = (float(total), grad)
    dist.destroy_process_group()


@pytest.mark.parametrize("split_at", [4, 3])  # equal batches per rank, and 3 + 5 (stratified sizes differ)
def test_ddp_two_ranks_equal_one_process_with_double_batch(split_at):
    """The training step (SepCLR loss + leakage penalty on gathered reps) under DDP: same loss and
    gradients as one process on the whole batch."""
    import torch.multiprocessing as mp

    from sepclr_med.models import ModelConfig, SepCLRModel
    from sepclr_med.training.distributed import DistContext

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 1, 9, 10, 11, generator=g)  # two views of 8 subjects (rank 0: 0-3, rank 1: 4-7)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0], dtype=torch.bool)
    torch.manual_seed(0)
    single = SepCLRModel(ModelConfig(common_dim=4, salient_dim=4, head_hidden=8))
    total = _trainer_step(single, {"view1": x[0], "view2": x[1], "is_target": y}, DistContext(), gather=False)
    total.backward()
    assert single.common_encoder.fc.weight.grad.abs().sum() > 0

    manager = mp.Manager()
    result = manager.dict()
    mp.spawn(_ddp_worker, args=(2, _free_port(), x, y, split_at, result), nprocs=2, join=True)
    for rank in (0, 1):
        loss, grad = result[rank]
        assert loss == pytest.approx(total.item(), rel=1e-5, abs=1e-6)
        ref = single.common_encoder.fc.weight.grad  # float32 sums in another order: tolerance on its scale
        assert torch.allclose(grad, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()))


def test_train_with_two_gloo_processes_writes_one_run(tiny_cohort, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "sepclr_med.cli.main",
        "train",
        "--cohort",
        str(tiny_cohort.cohort_csv),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len(Run(out).metrics()) == 1 and (out / "model.pt").is_file()
    assert proc.stdout.count("epoch   1:") == 1  # only rank 0 prints


def test_validation_forward_leaves_batchnorm_statistics_untouched():
    import copy

    from sepclr_med.models import ProjectionHead
    from sepclr_med.training.loop import batch_statistics_frozen

    head = ProjectionHead(4, 8).train()
    reference = copy.deepcopy(head)
    x = torch.randn(6, 4) + 5
    with torch.no_grad(), batch_statistics_frozen(head):
        out = head(x)
    with torch.no_grad():
        expected = reference(x)  # plain train mode: batch statistics, running stats updated
    assert torch.allclose(out, expected)  # same normalisation as the training loss
    bn, ref_bn = head[1], reference[1]
    assert torch.equal(bn.running_mean, torch.zeros(8)) and torch.equal(bn.running_var, torch.ones(8))
    assert int(bn.num_batches_tracked) == 0 and bn.momentum == 0.1
    assert not torch.equal(ref_bn.running_mean, torch.zeros(8))


def test_nproc_launches_torchrun_with_the_same_options(monkeypatch, tmp_path):
    from sepclr_med.cli import train_commands

    seen = {}

    def fake_call(command, env):
        seen["command"], seen["env"] = command, env
        return 0

    monkeypatch.setattr(train_commands.subprocess, "call", fake_call)
    result = runner.invoke(
        app,
        [
            "train",
            "--cohort",
            "c.csv",
            "--out",
            str(tmp_path / "r"),
            "--nproc",
            "2",
            "--epochs",
            "3",
            "--lambda-jem",
            "100",
            "--lambda-independence",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    command = seen["command"]
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[command.index("--epochs") + 1] == "3" and "--resume" not in command
    assert command[command.index("--lambda-jem") + 1] == "100.0" and "--nproc" not in command
    assert command[command.index("--lambda-independence") + 1] == "0.0"
    assert seen["env"]["OMP_NUM_THREADS"]
    result = runner.invoke(
        app, ["train", "--cohort", "c.csv", "--out", str(tmp_path / "r"), "--nproc", "2", "--epochs", "5", "--resume"]
    )
    assert result.exit_code == 0, result.output
    assert "--resume" in seen["command"] and seen["command"][seen["command"].index("--epochs") + 1] == "5"
    result = runner.invoke(app, ["train", "--cohort", "c.csv", "--out", str(tmp_path / "p"), "--nproc", "2", "--paper"])
    assert result.exit_code == 0, result.output
    assert "--paper" in seen["command"] and "True" not in seen["command"]


def test_paper_configuration_is_the_papers_objective_and_weights(tmp_path):
    from sepclr_med.training import TrainConfig

    paper, default = TrainConfig.paper(), TrainConfig()
    assert (paper.loss.beta_salient, paper.loss.beta_infoless, paper.loss.lambda_jem) == (1.0, 10.0, 10.0)
    assert paper.loss.lambda_independence == 0.0 and default.loss.lambda_independence > 0
    assert default.loss.beta_salient == default.loss.beta_infoless  # docs/method.md: why they are equal
    (tmp_path / "c.toml").write_text(default.to_toml())
    result = runner.invoke(app, ["train", "--cohort", "c.csv", "--paper", "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 1 and "--paper and --config" in result.output


def test_resume_refuses_options_it_would_ignore(tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            "--cohort",
            "c.csv",
            "--out",
            str(tmp_path / "r"),
            "--resume",
            "--epochs",
            "5",
            "--lr",
            "0.1",
            "--lambda-independence",
            "0",
        ],
    )
    assert result.exit_code == 1
    assert "--lr, --lambda-independence" in result.output and "config.toml" in result.output


def test_runs_from_before_the_leakage_penalty_are_read_without_it(tmp_path):
    from sepclr_med.run import model_card
    from sepclr_med.training import TrainConfig

    assert TrainConfig().loss.lambda_independence == 300.0
    text = TrainConfig().to_toml().replace("lambda_independence = 300.0\n", "")
    (tmp_path / "config.toml").write_text(text)
    old = TrainConfig.load_run(tmp_path)
    assert old.loss.lambda_independence == 0.0 and old.loss.lambda_jem == 10.0
    (tmp_path / "config.toml").write_text(TrainConfig().override(**{"loss.lambda_independence": 50}).to_toml())
    assert TrainConfig.load_run(tmp_path).loss.lambda_independence == 50.0

    class FakeCohort:
        class source:
            name = "c.csv"

        is_target = np.array([False, True])
        control_label, patient_label = "control", "patient"
        warnings = []

        def __len__(self):
            return 2

    import dataclasses

    def card(config):
        config = dataclasses.replace(config, preprocess=dataclasses.replace(config.preprocess, grid_shape=(4, 5, 6)))
        return model_card(config, FakeCohort(), {}, [], {})

    assert "+ 300 L_dep" in card(TrainConfig())
    assert "L_dep" not in card(old) and "the paper's objective" in card(old)


def test_gradient_reversal_adversary():
    from sepclr_med.losses import LeakageAdversary, reverse_gradient

    x = torch.randn(5, 3, requires_grad=True)
    reverse_gradient(x, 2.0).sum().backward()
    assert torch.equal(x.grad, torch.full((5, 3), -2.0))
    g = torch.Generator().manual_seed(0)
    common = torch.randn(40, 4, generator=g, requires_grad=True)
    salient = torch.nn.functional.normalize(common, dim=1).detach() @ torch.randn(4, 3, generator=g)
    adversary = LeakageAdversary(4, 3)
    optimiser = torch.optim.Adam(adversary.parameters(), lr=0.05)
    for _ in range(300):  # the adversary alone learns to explain the salient reps
        optimiser.zero_grad()
        explained = adversary(common, salient)
        explained.neg().backward()
        optimiser.step()
    assert explained.detach().item() > 0.95
    common.grad = None
    adversary(common, salient).backward()  # the encoder side receives the reversed gradient
    assert common.grad is not None and torch.isfinite(common.grad).all()


def test_independence_penalty_moves_only_the_common_reps():
    from sepclr_med.losses import independence_penalty

    g = torch.Generator().manual_seed(1)
    salient = torch.randn(24, 3, generator=g, requires_grad=True)
    common = salient.detach() @ torch.randn(3, 5, generator=g) + 0.1 * torch.randn(24, 5, generator=g)
    common.requires_grad_(True)
    penalty = independence_penalty(common, salient)
    penalty.backward()
    assert penalty.item() > 0.8  # common is a noisy linear image of salient
    assert salient.grad is None  # the salient encoder cannot lower the penalty by emptying itself
    assert common.grad is not None and common.grad.abs().sum() > 0
    # following the gradient on the common side removes the dependence
    optimiser = torch.optim.SGD([common], lr=5.0)
    for _ in range(200):
        optimiser.zero_grad()
        independence_penalty(common, salient).backward()
        optimiser.step()
    assert independence_penalty(common, salient).item() < 0.5 * penalty.item()


def test_common_space_sees_a_global_gain_and_the_salient_space_does_not():
    """The backbones are invariant to a global gain (bias-free conv + GroupNorm); the common
    side path restores it, old runs (no ``common_intensity`` key) are read without it."""
    from sepclr_med.models import SepCLRModel
    from sepclr_med.models.sepclr import ModelConfig

    torch.manual_seed(0)
    x = torch.rand(2, 1, 7, 8, 9)
    with_path, without = SepCLRModel().eval(), SepCLRModel(ModelConfig(common_intensity=False)).eval()
    with torch.no_grad():
        (c, s), (c_gain, s_gain) = with_path.encode(x), with_path.encode(1.15 * x)
        (c0, _), (c0_gain, _) = without.encode(x), without.encode(1.15 * x)
    assert (c - c_gain).abs().max() > 100 * (s - s_gain).abs().max()
    assert (s - s_gain).abs().max() < 1e-4 and (c0 - c0_gain).abs().max() < 1e-4
    assert "common_intensity.linear.weight" in with_path.state_dict()
    assert not any(k.startswith("common_intensity") for k in without.state_dict())


def test_runs_from_before_the_intensity_path_are_read_without_it(tmp_path):
    from sepclr_med.training import TrainConfig

    assert TrainConfig().model.common_intensity is True
    (tmp_path / "config.toml").write_text(TrainConfig().to_toml().replace("common_intensity = true\n", ""))
    assert TrainConfig.load_run(tmp_path).model.common_intensity is False


def test_the_console_names_every_term_of_the_total():
    from sepclr_med.training.loop import Trainer

    config = TrainConfig().override(**{"loss.lambda_independence": 300.0, "loss.independence_warmup_epochs": 4})
    trainer = Trainer(config)
    trainer.weights = config.loss.weights_at(1)  # half-way through the penalty's warm-up
    terms = {"common": -1.5, "salient": -1.2, "infoless": 0.8, "jem": -2.0, "independence": 0.1}
    weights = {"common": 1, "salient": config.loss.beta_salient, "infoless": config.loss.beta_infoless}
    weights |= {"jem": config.loss.lambda_jem, "independence": 150.0}
    metrics = {f"train_{k}": v for k, v in terms.items()}
    metrics["train_loss"] = sum(weights[k] * v for k, v in terms.items())
    shown = trainer._weighted_terms(metrics)
    assert [name for name, _ in shown] == ["common", "10xsalient", "10xinfoless", "10xjem", "150xindependence"]
    assert sum(value for _, value in shown) == pytest.approx(metrics["train_loss"])


def test_augmentations_the_device_views_lack_are_refused_with_the_key():
    with pytest.raises(SepclrError, match=r"\[augment\] intensity_prob, bias_prob, flip_prob must be 0"):
        TrainConfig().override(**{"augment.flip_prob": 0.5})
