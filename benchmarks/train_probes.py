"""Train SepCLR with the defaults on the default simulated cohort, for several seeds, and probe
the reps of held-out subjects (a second simulated cohort the encoders never saw).

    python benchmarks/train_probes.py --out /tmp/bench --seeds 0 1 2

Prints and writes ``probes.csv`` / ``probes.md``: one row per (model, seed), with an untrained
(randomly initialised) encoder row per seed beside SepCLR.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd


def probe_table(latents: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """All probes of the method page on one latents table (5-fold CV, standardised)."""
    from sepclr_med.evaluation import probe_classification, probe_regression

    df = latents.merge(truth.drop(columns=["group"]), on="subject_id")
    spaces = {s: df[[c for c in df.columns if c.startswith(f"{s}_")]].to_numpy() for s in ("common", "salient")}
    patient = (df["group"] == "patient").to_numpy()
    row = {}
    for space, x in spaces.items():
        row[f"{space}->patient_bacc"] = probe_classification(x, patient)
        subtypes = df.loc[patient, "subtype"]
        row[f"{space}->subtype_bacc"] = (
            probe_classification(x[patient], subtypes) if subtypes.nunique() > 1 else float("nan")
        )  # one subtype: nothing to decode
        row[f"{space}->severity_r2"] = probe_regression(x[patient], df.loc[patient, "severity"])
        row[f"{space}->age_r2"] = probe_regression(x, df["age"])
        row[f"{space}->sex_bacc"] = probe_classification(x, df["sex"])
        row[f"{space}->site_bacc"] = probe_classification(x, df["site"])
    # of the reps: the objective pins the salient *head outputs* of controls to 0, not the reps, so
    # this ratio can sit at 1.0 in a run whose heads separate the groups (the monitor's ratio is
    # on head outputs)
    norms = np.linalg.norm(spaces["salient"], axis=1)
    row["salient_rep_norm_ratio"] = float(norms[patient].mean() / norms[~patient].mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: TrainConfig's")
    parser.add_argument("--n", type=int, default=None, help="subjects per group (default: recipe's)")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides key=value (e.g. loss.lambda_jem=100)")
    args = parser.parse_args()

    import torch
    from rich.console import Console

    from sepclr_med.embed import embed, encode_cohort
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.models import SepCLRModel
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train

    console = Console()
    recipe = load_recipe().replace(n_controls=args.n, n_patients=args.n)
    cohorts = {}
    for name, seed in (("train", 0), ("test", 1000)):
        folder = args.out / f"cohort_{name}"
        if not (folder / "cohort.csv").is_file():
            simulate_cohort(recipe.replace(seed=seed), folder)
        cohorts[name] = (
            read_cohort(folder / "cohort.csv"),
            pd.read_csv(folder / "ground_truth.csv", keep_default_na=False),
        )
    overrides = {k: _number(v) for k, v in (item.split("=", 1) for item in args.set)}
    rows = []
    for seed in args.seeds:
        config = TrainConfig().override(**{"seed": seed, "optim.epochs": args.epochs, **overrides})
        run_dir = args.out / f"run_seed{seed}"
        tic = time.perf_counter()
        if not (run_dir / "model.pt").is_file():
            train(
                cohorts["train"][0],
                run_dir,
                config,
                resume=(run_dir / "checkpoints/last.pt").is_file(),
                console=console,
            )
        minutes = (time.perf_counter() - tic) / 60
        run = Run(run_dir)
        test, truth = cohorts["test"]
        rows.append(
            {"model": "SepCLR", "seed": seed, "train_min": round(minutes, 1), **probe_table(embed(run, test), truth)}
        )
        torch.manual_seed(seed)
        untrained = SepCLRModel(run.config.model)
        rows.append(
            {
                "model": "untrained encoder",
                "seed": seed,
                "train_min": 0.0,
                **probe_table(encode_cohort(untrained, run.config.preprocess, test), truth),
            }
        )
        table = pd.DataFrame(rows)
        table.to_csv(args.out / "probes.csv", index=False)
        console.print(table.round(3).to_string())
    summary = table.drop(columns=["seed"]).groupby("model").agg(["mean", "std"]).round(3)
    (args.out / "probes.md").write_text(table.round(3).to_markdown(index=False) + "\n\n" + summary.to_markdown() + "\n")
    console.print(summary.T.to_string())


def _number(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


if __name__ == "__main__":
    main()
