"""Train SepCLR configurations on the evaluation family and probe held-out subjects.

For every family member (``cohorts/family/*.toml``, the hold-out member last) this simulates a
training cohort (seed 0) and a test cohort (seed 1000, subjects no encoder saw), trains each
named configuration for each seed, embeds the test cohort and probes it (5-fold CV,
standardised; see ``train_probes.probe_table``). A voxel-PCA row per member says whether age is
decodable from the images at all (the bar for common -> age).

    python benchmarks/family_probes.py --out /tmp/family --configs new paper previous --seeds 0 1 2
    python benchmarks/family_probes.py --out /tmp/family --members motor-parietal --configs new

Configurations: ``new`` (today's ``TrainConfig()``), ``paper`` (the paper's exact objective:
``TrainConfig.paper()``), ``previous`` (the defaults before issue 11: (1, 10, 10), leakage
penalty 300, no warm-up, last epoch kept), or ``name:key=value,key=value`` on top of ``new``.
Writes ``probes.csv`` (one row per member, configuration, seed) as it goes; runs already trained
under ``--out`` are reused.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from train_probes import _number, probe_table

PREVIOUS = {"loss.lambda_independence": 300.0, "loss.beta_salient": 1.0, "loss.beta_infoless": 10.0,
            "loss.lambda_jem": 10.0, "loss.infoless_warmup_epochs": 0,
            "loss.independence_warmup_epochs": 0, "keep": "last"}


def config_for(name: str):
    """The TrainConfig a configuration name stands for."""
    from sepclr_med.training import TrainConfig

    if name == "new":
        return TrainConfig()
    if name == "paper":
        return TrainConfig.paper()
    if name == "previous":
        return TrainConfig().override(**PREVIOUS)
    label, _, sets = name.partition(":")
    changes = {k: _number(v) for k, v in (item.split("=", 1) for item in sets.split(",") if item)}
    return TrainConfig().override(**changes)


def voxel_pca_age_r2(cohort, preprocess, n_components: int = 32) -> float:
    """R² of age from the first principal components of the preprocessed voxels."""
    from sklearn.decomposition import PCA

    from sepclr_med.data import cached_dataset
    from sepclr_med.evaluation import probe_regression

    data = cached_dataset(cohort.records(), preprocess, cache="none")
    x = np.stack([data[i]["image"].numpy().ravel() for i in range(len(data))])
    pcs = PCA(n_components=min(n_components, len(x) - 1), random_state=0).fit_transform(x)
    return probe_regression(pcs, cohort.table["age"].astype(float).to_numpy())


def member_cohorts(out: Path, name: str, recipe) -> dict:
    from sepclr_med.cohort import read_cohort
    from sepclr_med.simulate import simulate_cohort

    cohorts = {}
    for part, seed in (("train", 0), ("test", 1000)):
        folder = out / name.replace("/", "_") / f"cohort_{part}"
        if not (folder / "cohort.csv").is_file():
            simulate_cohort(recipe.replace(seed=seed), folder)
        cohorts[part] = (read_cohort(folder / "cohort.csv"),
                         pd.read_csv(folder / "ground_truth.csv", keep_default_na=False))
    return cohorts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--members", nargs="*", default=None, help="family member names (default: all)")
    parser.add_argument("--configs", nargs="+", default=["new", "paper", "previous"])
    parser.add_argument("--allow-holdout", action="store_true",
                        help="include the hold-out member: only for the final, once-only report")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: each configuration's")
    parser.add_argument("--resolution", type=float, default=None, help="voxel size override (exploration)")
    parser.add_argument("--n", type=int, default=None, help="subjects per group override (exploration)")
    args = parser.parse_args()

    from rich.console import Console

    from sepclr_med.embed import embed
    from sepclr_med.run import Run
    from sepclr_med.simulate import family_recipes
    from sepclr_med.training.loop import train

    console = Console()
    family = family_recipes()
    members = [f"family/{m}" for m in args.members] if args.members else list(family)
    held = [m for m in members if family[m].holdout]
    if held and not args.allow_holdout:
        raise SystemExit(f"{held} is a hold-out member: choose nothing on it; pass --allow-holdout for the "
                         "final report only")
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "probes.csv"
    rows = pd.read_csv(results).to_dict("records") if results.is_file() else []
    done = {(r["member"], r["config"], r["seed"]) for r in rows}
    for member in members:
        recipe = family[member].replace(resolution_mm=args.resolution, n_controls=args.n, n_patients=args.n)
        cohorts = member_cohorts(args.out, member, recipe)
        test, truth = cohorts["test"]
        pca_r2 = None
        for name in args.configs:
            for seed in args.seeds:
                if (member, name, seed) in done:
                    continue
                config = config_for(name).override(**{"seed": seed, "optim.epochs": args.epochs})
                run_dir = args.out / member.replace("/", "_") / f"{name.split(':')[0]}_seed{seed}"
                tic = time.perf_counter()
                if not (run_dir / "model.pt").is_file():
                    train(cohorts["train"][0], run_dir, config, console=console,
                          resume=(run_dir / "checkpoints/last.pt").is_file())
                run = Run(run_dir)
                if pca_r2 is None:
                    pca_r2 = voxel_pca_age_r2(test, run.config.preprocess)
                verdict = run.verdict()
                rows.append({"member": member, "holdout": family[member].holdout, "config": name,
                             "seed": seed, "train_min": round((time.perf_counter() - tic) / 60, 1),
                             "verdict": verdict.get("status", ""), "val_auc": verdict.get("val_auc"),
                             "kept_epoch": verdict.get("epoch"), "voxel_pca->age_r2": pca_r2,
                             **probe_table(embed(run, test), truth)})
                pd.DataFrame(rows).to_csv(results, index=False)
                console.print(pd.DataFrame(rows).iloc[-1:].round(3).T.to_string())
    table = pd.DataFrame(rows)
    keys = ["salient->patient_bacc", "salient->severity_r2", "common->patient_bacc", "common->subtype_bacc",
            "common->age_r2", "common->site_bacc", "voxel_pca->age_r2"]
    summary = table.groupby(["holdout", "member", "config"])[keys].agg(["mean", "min"]).round(3)
    (args.out / "probes.md").write_text(table.round(3).to_markdown(index=False) + "\n\n"
                                        + summary.to_markdown() + "\n")
    console.print(summary.to_string())


if __name__ == "__main__":
    main()
