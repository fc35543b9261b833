"""Functions leave the caller's objects as they found them (issue 14): a model's training mode,
parameter gradients and device; and a run without final weights is refused, not read from its
last checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config


def _small_model():
    from sepclr_med.models import ModelConfig, SepCLRModel

    torch.manual_seed(0)
    return SepCLRModel(ModelConfig(common_dim=4, salient_dim=4, head_hidden=8))


def _state(model):
    return model.training, [p.requires_grad for p in model.parameters()], next(model.parameters()).device


def test_attribution_and_ablation_leave_the_model_as_they_found_it():
    from sepclr_med.explain.saliency import attribute, region_ablation

    model = _small_model().train()
    before = _state(model)
    volumes = torch.rand(2, 1, 7, 8, 9)
    references = torch.rand(3, 1, 7, 8, 9)
    maps = attribute(model, volumes, np.ones((2, 4)) / 2, references, method="eg", n_steps=2)
    assert maps.shape == (2, 7, 8, 9) and np.abs(maps).sum() > 0
    labels = np.zeros((7, 8, 9), int)
    labels[:3] = 1
    drops = region_ablation(model, volumes, np.ones((2, 4)) / 2, references[0], labels, [1])
    assert drops.shape == (2, 1)
    assert _state(model) == before
    assert model.salient_encoder.training  # the encoder's own mode too


def test_encoding_leaves_the_model_as_it_found_it():
    from sepclr_med.training.encode import encode_dataset

    model = _small_model().train()
    for p in list(model.parameters())[:3]:
        p.requires_grad_(False)  # a caller's own choice, kept
    before = _state(model)
    data = [{"image": torch.rand(1, 7, 8, 9)} for _ in range(3)]
    common, salient = encode_dataset(model, data, batch_size=2)
    assert common.shape == (3, 4) and salient.shape == (3, 4)
    assert _state(model) == before
    model.eval()
    again = encode_dataset(model, data, batch_size=3)
    np.testing.assert_allclose(again[1], salient, rtol=1e-5, atol=1e-6)  # eval mode inside, either way


def test_a_run_without_final_weights_is_refused(tiny_cohort, tmp_path):
    from sepclr_med.errors import SepclrError
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run
    from sepclr_med.training.loop import train

    run = train(read_cohort(tiny_cohort.cohort_csv), tmp_path / "run", tiny_config(**{"optim.epochs": 1}))
    (run / "model.pt").unlink()  # what a run killed during training leaves (checkpoints/last.pt stays)
    with pytest.raises(SepclrError, match="did not finish.*--resume"):
        Run(run).load_model()


def test_figures_never_switch_the_sessions_matplotlib_backend(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt
    import pandas as pd

    from sepclr_med.explain.figures import region_bars, score_scatter

    before = matplotlib.get_backend()
    plt.switch_backend("svg")  # what a notebook's own backend stands for here
    try:
        region_bars(pd.DataFrame({"name": ["a", "b"], "mean_attribution": [0.2, -0.1]}), tmp_path / "bars.png", "t")
        score_scatter(np.arange(5.0), np.arange(5.0) ** 2, tmp_path / "scatter.png", "x", "y")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "bars.png").read_bytes()[:4] == b"\x89PNG"  # files are still PNG
    finally:
        plt.switch_backend(before)
