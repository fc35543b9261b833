"""Train SepCLR configurations on the evaluation family and probe held-out subjects.

For every family member (``cohorts/family/*.toml``, the hold-out member last) this simulates a
training cohort (seed 0) and a test cohort (seed 1000, subjects no encoder saw), trains each
named configuration for each seed, embeds the test cohort and probes it (5-fold CV,
standardised; see ``train_probes.probe_table``). A voxel-PCA column (once per member) says whether age
is decodable from the images at all (the bar for common -> age).

    python benchmarks/family_probes.py --out /tmp/fam --resolution 6 --configs new paper --seeds 0 1 2 --jobs 2
    python benchmarks/family_probes.py --out /tmp/fam --members motor-parietal --configs new
    python benchmarks/family_probes.py --out /tmp/fam --members holdout --allow-holdout ...   # last, once

Configurations: ``new`` (today's ``TrainConfig()``), ``paper`` (the paper's exact objective:
``TrainConfig.paper()``), ``previous`` (the defaults before issue 11: (1, 10, 10), leakage
penalty 300, no warm-up, last epoch kept), or ``name:key=value,key=value`` on top of ``new``.
Layout: ``OUT/<member>/cohort_{train,test}`` and ``OUT/<member>/<config>_seed<seed>``; runs already
trained there are reused (only embedded and probed again). ``--jobs N`` trains N runs at once
(one thread each). Writes ``probes.csv`` (one row per member, configuration, seed) and
``probes.md``. Besides the probes, ``test_head_auc`` is the AUC of the salient *head* norm on the
test cohort: what the objective and the run's verdict act on (the reps' norm ratio need not move).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from train_probes import _number, probe_table

PREVIOUS = {
    "loss.lambda_independence": 300.0,
    "loss.beta_salient": 1.0,
    "loss.beta_infoless": 10.0,
    "loss.lambda_jem": 10.0,
    "loss.infoless_warmup_epochs": 0,
    "loss.independence_warmup_epochs": 0,
    "keep": "last",
}


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


def preprocessed_voxels(cohort, preprocess) -> np.ndarray:
    """The cohort's preprocessed volumes as rows (subjects x voxels)."""
    from sepclr_med.data import cached_dataset

    data = cached_dataset(cohort.records(), preprocess, cache="none")
    return np.stack([data[i]["image"].numpy().ravel() for i in range(len(data))])


def voxel_pca_age_r2(cohort, preprocess, n_components: int = 32) -> float:
    """R² of age from the first principal components of the preprocessed voxels."""
    from sklearn.decomposition import PCA

    from sepclr_med.evaluation import probe_regression

    x = preprocessed_voxels(cohort, preprocess)
    pcs = PCA(n_components=min(n_components, len(x) - 1), random_state=0).fit_transform(x)
    return probe_regression(pcs, cohort.table["age"].astype(float).to_numpy())


def member_cohorts(out: Path, name: str, recipe) -> dict:
    """Train (seed 0) and test (seed 1000) cohorts of a member, simulated once under ``out``."""
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.simulate import simulate_cohort

    cohorts = {}
    for part, seed in (("train", 0), ("test", 1000)):
        folder = out / name.removeprefix("family/") / f"cohort_{part}"
        if not (folder / "cohort.csv").is_file():
            simulate_cohort(recipe.replace(seed=seed), folder)
        cohorts[part] = (
            read_cohort(folder / "cohort.csv"),
            pd.read_csv(folder / "ground_truth.csv", keep_default_na=False),
        )
    return cohorts


def head_norm_auc(run, cohort) -> float:
    """AUC (patients vs controls) of the salient head-output norm, eval mode."""
    import torch
    from sklearn.metrics import roc_auc_score

    from sepclr_med.data import cached_dataset

    model = run.load_model().eval()
    data = cached_dataset(cohort.records(), run.config.preprocess, cache="none")
    norms = []
    with torch.no_grad():
        for start in range(0, len(data), 32):
            x = torch.stack([data[i]["image"] for i in range(start, min(start + 32, len(data)))])
            norms.append(model(x).salient_head.norm(dim=1))
    return float(roc_auc_score(cohort.is_target, torch.cat(norms).numpy()))


def run_job(
    out: Path, member: str, name: str, seed: int, epochs: int | None, resolution: float | None, n: int | None
) -> dict:
    """Train (or reuse) one run of a member and probe its test cohort; one row of probes.csv."""
    import torch
    from rich.console import Console

    from sepclr_med.embed import embed
    from sepclr_med.run import Run
    from sepclr_med.simulate import family_recipes
    from sepclr_med.training.loop import train

    torch.set_num_threads(1)
    recipe = family_recipes()[member].replace(resolution_mm=resolution, n_controls=n, n_patients=n)
    cohorts = member_cohorts(out, member, recipe)
    test, truth = cohorts["test"]
    config = config_for(name).override(**{"seed": seed, "optim.epochs": epochs})
    run_dir = out / member.removeprefix("family/") / f"{name.split(':')[0]}_seed{seed}"
    tic = time.perf_counter()
    if not (run_dir / "model.pt").is_file():
        train(
            cohorts["train"][0],
            run_dir,
            config,
            console=Console(quiet=True),
            resume=(run_dir / "checkpoints/last.pt").is_file(),
        )
    run = Run(run_dir)
    verdict = run.verdict()
    return {
        "member": member,
        "holdout": recipe.holdout,
        "config": name,
        "seed": seed,
        "train_min": round((time.perf_counter() - tic) / 60, 1),
        "verdict": verdict.get("status", ""),
        "val_auc": verdict.get("val_auc"),
        "kept_epoch": verdict.get("epoch"),
        "test_head_auc": head_norm_auc(run, test),
        **probe_table(embed(run, test), truth),
    }


KEYS = [
    "salient->patient_bacc",
    "salient->severity_r2",
    "common->patient_bacc",
    "common->subtype_bacc",
    "common->age_r2",
    "common->site_bacc",
    "voxel_pca->age_r2",
    "test_head_auc",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--members", nargs="*", default=None, help="family member names (default: all)")
    parser.add_argument("--configs", nargs="+", default=["new", "paper", "previous"])
    parser.add_argument(
        "--allow-holdout", action="store_true", help="include the hold-out member: only for the final, once-only report"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: each configuration's")
    parser.add_argument("--resolution", type=float, default=None, help="voxel size override (exploration)")
    parser.add_argument("--n", type=int, default=None, help="subjects per group override (exploration)")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (one thread each)")
    args = parser.parse_args()

    from concurrent.futures import ProcessPoolExecutor

    from sepclr_med.simulate import family_recipes

    family = family_recipes()
    members = [f"family/{m}" for m in args.members] if args.members else list(family)
    held = [m for m in members if family[m].holdout]
    if held and not args.allow_holdout:
        raise SystemExit(
            f"{held} is a hold-out member: choose nothing on it; pass --allow-holdout for the final report only"
        )
    members.sort(key=lambda m: family[m].holdout)  # the hold-out member last
    args.out.mkdir(parents=True, exist_ok=True)
    for member in members:  # simulate once, before the workers start
        member_cohorts(
            args.out,
            member,
            family[member].replace(resolution_mm=args.resolution, n_controls=args.n, n_patients=args.n),
        )
    results = args.out / "probes.csv"
    rows = pd.read_csv(results).to_dict("records") if results.is_file() else []
    done = {(r["member"], r["config"], r["seed"]) for r in rows}
    todo = [(m, c, s) for m in members for c in args.configs for s in args.seeds if (m, c, s) not in done]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_job, args.out, m, c, s, args.epochs, args.resolution, args.n) for m, c, s in todo]
        for future in futures:
            rows.append(future.result())
            pd.DataFrame(rows).to_csv(results, index=False)
            print(
                pd.DataFrame(rows[-1:])[
                    ["member", "config", "seed", "verdict", *(k for k in KEYS if k != "voxel_pca->age_r2")]
                ]
                .round(3)
                .to_string(index=False),
                flush=True,
            )
    table = pd.DataFrame(rows).sort_values(["holdout", "member", "config", "seed"])
    # once per member (it does not depend on the run): its first run's preprocessing, test cohort
    from sepclr_med.run import Run

    pca = {}
    for member, config, seed in table[["member", "config", "seed"]].drop_duplicates("member").itertuples(index=False):
        recipe = family[member].replace(resolution_mm=args.resolution, n_controls=args.n, n_patients=args.n)
        run = Run(args.out / member.removeprefix("family/") / f"{config.split(':')[0]}_seed{seed}")
        pca[member] = voxel_pca_age_r2(member_cohorts(args.out, member, recipe)["test"][0], run.config.preprocess)
    table["voxel_pca->age_r2"] = table["member"].map(pca)
    summary = table.groupby(["holdout", "member", "config"])[KEYS].agg(["mean", "min"]).round(3)
    (args.out / "probes.md").write_text(table.round(3).to_markdown(index=False) + "\n\n" + summary.to_markdown() + "\n")
    print(summary.to_string())


if __name__ == "__main__":
    main()
