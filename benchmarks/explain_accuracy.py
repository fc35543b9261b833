"""How well `explain` recovers the planted ground truth of a simulated cohort.

    python benchmarks/explain_accuracy.py --run RUN --cohort HELDOUT/cohort.csv --out DIR [--method eg]

For each subtype: voxel-level ROC AUC of the subtype's group saliency map (absolute attribution,
inside the brain) for telling the planted subtype mask from the rest of the brain, and how many of
the top-5 regions of its region table are planted regions. For each clinical score: q-value of its
association with the salient deviation score, and the smallest q over common dimensions (BH within
the common family) with how many of them reach q < 0.05.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--cohort", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--method", default="eg")
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from sepclr_med.explain.pipeline import explain
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe

    cohort = read_cohort(args.cohort)
    root = Path(args.cohort).parent
    truth = pd.read_csv(root / "ground_truth.csv", keep_default_na=False)
    recipe = load_recipe(root / "recipe.toml")
    tic = time.perf_counter()
    index = explain(Run(args.run), cohort, args.out, method=args.method, n_steps=args.steps, truth=truth, figures=True)
    seconds = time.perf_counter() - tic
    brain = nib.load(root / "brain_mask.nii.gz").get_fdata() > 0
    results = {"explain_seconds": round(seconds, 1), "subtypes": {}, "scores": {}}
    for spec in recipe.subtypes:
        planted = nib.load(root / "masks" / f"subtype-{spec.name}.nii.gz").get_fdata() > 0
        key = f"deviation_subtype-{spec.name}"
        entry = {}
        if key in index["maps"]:
            values = np.abs(nib.load(index["maps"][key]).get_fdata())
            entry["voxel_auc"] = round(float(roc_auc_score(planted[brain], values[brain])), 3)
        table_key = key if key in index["regions"] else f"ablation_subtype-{spec.name}"
        regions = pd.read_csv(index["regions"][table_key])
        top5 = regions.sort_values("rank").head(5)["name"].tolist()
        entry["top5"] = top5
        entry["planted_in_top5"] = sum(name in spec.regions for name in top5)
        entry["best_planted_rank"] = int(regions[regions["name"].isin(spec.regions)]["rank"].min())
        results["subtypes"][spec.name] = entry
    clinical = pd.read_csv(index["tables"]["clinical"])
    for score, part in clinical.groupby("score"):
        results["scores"][score] = {
            "deviation_q": float(part.loc[part.variable == "deviation", "q_value"].iloc[0]),
            "deviation_r": float(part.loc[part.variable == "deviation", "pearson_r"].iloc[0]),
            "min_common_q": float(part.loc[part.space == "common", "q_value"].min()),
            "common_dims_q_below_0.05": int((part.loc[part.space == "common", "q_value"] < 0.05).sum()),
            "min_salient_dim_q": float(part.loc[part.variable.str.startswith("salient_"), "q_value"].min()),
        }
    if "maps_per_second" in index["timings"]:
        results["maps_per_second"] = round(index["timings"]["maps_per_second"], 2)
    print(json.dumps(results, indent=1))
    (args.out / "accuracy.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
