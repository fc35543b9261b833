"""How often does the training verdict call a cohort *without any patient effect* separated?

Each null cohort is a recipe with ``severity = (0, 0)``: patients' images are drawn exactly as
the controls' are, so any separation the verdict reports is a false positive. Trains today's
defaults on each (recipe, seed) and prints the verdict, its permutation p-value, the kept epoch's
validation AUC and interval, and the rate of ``separated`` (expected near the test's 5 %).

    python benchmarks/null_verdicts.py --out /tmp/null --resolution 6 --seeds 1 2 3 4 5 --epochs 50 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd


def run_one(job: tuple) -> dict:
    """Simulate and train one null cohort; return its verdict row."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train

    recipe_path, seed, resolution, n, epochs, out = job
    recipe = load_recipe(recipe_path) if recipe_path else load_recipe()
    recipe = recipe.replace(seed=seed, n_controls=n, n_patients=n, resolution_mm=resolution, severity=(0.0, 0.0))
    folder = Path(out) / f"{recipe.name}_seed{seed}"
    if not (folder / "run" / "verdict.json").is_file():
        sim = simulate_cohort(recipe, folder / "cohort")
        tic = time.perf_counter()
        train(
            read_cohort(sim.cohort_csv),
            folder / "run",
            TrainConfig().override(**{"optim.epochs": epochs, "device": "cpu"}),
        )
        print(f"{folder.name}: trained in {time.perf_counter() - tic:.0f} s", flush=True)
    v = Run(folder / "run").verdict()
    return {
        "cohort": recipe.name,
        "seed": seed,
        "status": v["status"],
        "p_value": v.get("p_value"),
        "val_auc": v.get("val_auc"),
        "val_auc_lo": v.get("val_auc_lo"),
        "norm_ratio": v.get("val_norm_ratio"),
        "epoch": v.get("epoch"),
        "n_val": json.dumps(v.get("n_val")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipes", nargs="*", default=[None], help="recipe TOMLs (default: the default recipe)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--resolution", type=float, default=6.0)
    parser.add_argument("--n", type=int, default=80, help="controls = patients per cohort")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    jobs = [(r, s, args.resolution, args.n, args.epochs, str(args.out)) for r in args.recipes for s in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_one, jobs))
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "null_verdicts.csv", index=False)
    print(f"processor: {platform.processor() or platform.machine()}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"separated (false positives): {(table['status'] == 'separated').sum()} of {len(table)}")


if __name__ == "__main__":
    main()
