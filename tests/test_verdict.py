"""A run that knows whether it worked: validation separation, kept weights, verdict everywhere."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from sepclr_med.cli.main import app
from sepclr_med.training.monitor import (
    auc_with_interval,
    kept_epoch,
    salient_separation,
    selection_p_value,
    smoothed_auc,
    verdict,
)


def test_auc_and_its_hanley_mcneil_interval():
    auc, lo, hi = auc_with_interval([3, 4, 5], [1, 2, 6])
    assert auc == pytest.approx(6 / 9)
    assert lo == pytest.approx(6 / 9 - 1.96 * np.sqrt(0.51111 / 9), abs=1e-4) and hi == 1.0
    assert auc_with_interval([5, 6], [1, 2]) == (1.0, 1.0, 1.0)
    assert auc_with_interval([1, 1], [1, 1])[0] == 0.5  # ties count one half
    m = salient_separation(np.array([2.0, 4.0, 1.0, 1.0]), np.array([True, True, False, False]))
    assert m["salient_auc"] == 1.0 and m["salient_norm_ratio"] == pytest.approx(3.0)


def _history(aucs, lo=0.6, ratio=2.0):
    return [
        {
            "epoch": i + 1,
            "val_salient_auc": a,
            "val_salient_auc_lo": lo,
            "val_salient_auc_hi": 1.0,
            "val_salient_norm_ratio": ratio,
        }
        for i, a in enumerate(aucs)
    ]


def test_kept_epoch_is_the_best_smoothed_auc_of_the_second_half_latest_on_ties():
    # epoch 2 is best overall but in the first half; epochs 7-8 tie on the 3-epoch mean: the later wins
    aucs = [0.5, 0.99, 0.5, 0.5, 0.6, 0.9, 0.9, 0.9, 0.6, 0.6]
    assert kept_epoch(_history(aucs), epochs=10) == 8
    assert kept_epoch([{"epoch": 1}], epochs=1) is None  # no validation


def test_verdict_statuses_and_messages():
    n = {"control": 6, "patient": 6}
    good = verdict(_history([0.9] * 4), 4, n)
    assert good["status"] == "separated" and good["advice"] == "" and "6 patients" in good["message"]
    chance = verdict(_history([0.6] * 4, lo=0.3), 4, n)
    assert chance["status"] == "not separated" and "tune" in chance["advice"]
    collapsed = verdict(_history([0.9] * 4, ratio=1.05), 4, n)  # ranks apart but norms equal
    assert collapsed["status"] == "not separated"
    assert verdict(_history([0.9]), None, {"control": 0, "patient": 0})["status"] == "unchecked"
    # with the selection-aware p-value, the interval no longer decides
    assert verdict(_history([0.9] * 4), 4, n, p_value=0.2)["status"] == "not separated"
    lucky = verdict(_history([0.6] * 4, lo=0.3), 4, n, p_value=0.01)
    assert lucky["status"] == "separated" and "p = 0.010" in lucky["message"]
    assert "NOT allowed for" in good["message"]  # no p-value: said, not hidden


def _null_runs(n_runs: int, noise: float = 2.0, epochs: int = 50, n: int = 24):
    """Validation norms of simulated runs without any group effect: a subject effect + epoch noise."""
    rng = np.random.default_rng(0)
    y = np.arange(n) < n // 2
    for _ in range(n_runs):
        yield np.exp(rng.normal(size=n) + noise * rng.normal(size=(epochs, n))), y


def test_selection_p_value_replays_the_kept_epoch_rule():
    rng = np.random.default_rng(1)
    y = np.arange(20) < 10
    norms = rng.normal(size=(8, 20)) + 9.0 * y  # every epoch separates perfectly
    assert selection_p_value(norms, y, np.arange(1, 9), 8, n_permutations=199) == pytest.approx(1 / 200)
    # epochs 1-2 separate, the rest is noise: no candidate (epochs 5-8, smoothed over 3) sees them
    norms[2:] = rng.normal(size=(6, 20))
    hist = [{"epoch": e + 1, **{f"val_{k}": v for k, v in salient_separation(norms[e], y).items()}} for e in range(8)]
    assert max(smoothed_auc(hist)[:2]) == 1.0 and smoothed_auc(hist)[kept_epoch(hist, 8) - 1] < 0.8
    assert selection_p_value(norms, y, np.arange(1, 9), 8, n_permutations=199) > 0.05


def test_selection_aware_verdict_keeps_its_false_positive_rate_where_the_interval_does_not():
    # 200 null runs, 12 + 12 validation subjects, kept epoch = best of 25 looks: the kept epoch's
    # interval calls ~16 % of them separated (measured), the permutation test ~5 %
    naive = aware = 0
    for seed, (norms, y) in enumerate(_null_runs(200)):
        hist = [
            {"epoch": e + 1, **{f"val_{k}": v for k, v in salient_separation(norms[e], y).items()}}
            for e in range(len(norms))
        ]
        naive += hist[kept_epoch(hist, len(norms)) - 1]["val_salient_auc_lo"] > 0.5
        aware += (
            selection_p_value(norms, y, np.arange(1, len(norms) + 1), len(norms), n_permutations=300, seed=seed) < 0.05
        )
    assert naive / 200 > 0.12 and aware / 200 <= 0.08, (naive, aware)


@pytest.fixture(scope="module")
def null_run(tmp_path_factory):
    """A run trained on a cohort whose patients carry no planted effect (severity 0)."""
    from sepclr_med.simulate import load_recipe, simulate_cohort

    root = tmp_path_factory.mktemp("null")
    recipe = load_recipe().replace(n_controls=8, n_patients=8, resolution_mm=8.0, seed=21, severity=(0.0, 0.0))
    sim = simulate_cohort(recipe, root / "cohort")
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--cohort",
            str(sim.cohort_csv),
            "--out",
            str(root / "run"),
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--val-fraction",
            "0.25",
        ],
    )
    assert result.exit_code == 0, result.output
    return root, sim, result.output


def test_null_cohort_is_flagged_in_train_model_card_and_verdict(null_run):
    from sepclr_med.run import Run

    root, _, output = null_run
    assert "WARNING" in output and "NOT separate" in " ".join(output.split())
    run = Run(root / "run")
    assert run.verdict()["status"] == "not separated" and run.verdict_warning()
    card = (root / "run" / "MODEL_CARD.md").read_text()
    assert "WARNING — verdict: not separated" in card and "sepclr-med tune" in card
    metrics = run.metrics()
    assert all({"val_salient_auc", "val_salient_auc_lo", "val_salient_norm_ratio"} <= set(m) for m in metrics)
    kept = kept_epoch(metrics, 3)
    assert run.verdict()["epoch"] == kept
    best = torch.load(root / "run" / "checkpoints" / "best.pt", weights_only=True)
    final = torch.load(root / "run" / "model.pt", weights_only=True)
    assert best["epoch"] == kept and all(torch.equal(best["model"][k], final[k]) for k in final)


def test_null_cohort_warning_reaches_evaluate_explain_and_report(null_run):
    from sepclr_med.explain.pipeline import explain
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run

    root, sim, _ = null_run
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--run",
            str(root / "run"),
            "--cohort",
            str(sim.cohort_csv),
            "--out",
            str(root / "eval"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "training verdict" in result.output
    assert json.loads((root / "eval" / "verdict.json").read_text())["status"] == "not separated"

    run = Run(root / "run")
    index = explain(run, read_cohort(sim.cohort_csv), root / "explain", n_steps=2, figures=False)
    stored = json.loads((root / "explain" / "index.json").read_text())
    assert index["warnings"] and stored["verdict"]["status"] == "not separated"

    table = pd.read_csv(sim.cohort_csv)
    table["image"] = [str(sim.root / p) for p in table["image"]]
    batch = root / "batch.csv"
    table[table["group"] == "patient"].head(2).to_csv(batch, index=False)
    reports = make_reports(run, batch, root / "reports", n_steps=2, pdf=False)
    assert reports["warning"]
    for page in [root / "reports" / "index.html", *(root / "reports").glob("subject-*.html")]:
        html = page.read_text()
        if page.name.endswith("-viewer.html"):  # the interactive viewer: the warning above the viewer itself
            assert 'class="verdict-warning"' in html and html.index("verdict-warning") < html.index("<canvas")
        else:
            assert 'class="verdict"' in html and html.index('class="verdict"') < html.index("<h1>")


def test_keep_last_keeps_the_last_epoch(tiny_cohort, tmp_path):
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run
    from sepclr_med.training.loop import train

    run = train(read_cohort(tiny_cohort.cohort_csv), tmp_path / "run", tiny_config(keep="last"))
    final = torch.load(run / "model.pt", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(last[k], final[k]) for k in final)
    assert Run(run).verdict()["epoch"] == 2 and not (run / "checkpoints" / "best.pt").exists()


def test_run_without_verdict_reads_as_unchecked(tiny_cohort, tmp_path):
    from sepclr_med.run import Run

    (tmp_path / "config.toml").write_text("")  # a run folder of an older version: no verdict.json
    run = Run(tmp_path)
    assert run.verdict()["status"] == "unchecked" and "NOT checked" in run.verdict_warning()
