"""Mass-univariate reference for `explain`: per-region grey-matter differences of each subtype.

    python benchmarks/region_effect_sizes.py --cohort COHORT/cohort.csv [--regions Caudate_L Caudate_R]

For a simulated cohort (with its ground_truth.csv): the mean image intensity of every AAL region
per subject, and Cohen's d (pooled SD) of each subtype's patients against the controls. Prints the
regions with the largest |d| per subtype, which are planted, and the d of any regions named with
--regions. No model involved: it says what the images themselves differ in.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True, type=Path)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--regions", nargs="*", default=[])
    args = parser.parse_args()

    import nibabel as nib

    from sepclr_med.explain.pipeline import load_atlas
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.simulate import load_recipe

    root = args.cohort.parent
    cohort = read_cohort(args.cohort)
    recipe = load_recipe(root / "recipe.toml")
    truth = pd.read_csv(root / "ground_truth.csv", keep_default_na=False).set_index("subject_id")
    subtype = truth.reindex(cohort.subject_ids)["subtype"].to_numpy()
    images = [nib.load(p) for p in cohort.table["image"]]
    atlas = load_atlas("AAL", images[0])
    labels, ids = atlas.data.ravel(), atlas.regions["id"].to_numpy()
    counts = np.bincount(labels, minlength=ids.max() + 1)[ids]
    present = counts > 0
    means = (
        np.stack(
            [
                np.bincount(labels, weights=np.asarray(img.dataobj, float).ravel(), minlength=ids.max() + 1)[ids]
                for img in images
            ]
        )[:, present]
        / counts[present]
    )
    names = atlas.regions["name"].to_numpy()[present]
    controls = means[~cohort.is_target]
    for spec in recipe.subtypes:
        group = means[subtype == spec.name]
        pooled = np.sqrt((group.var(axis=0, ddof=1) + controls.var(axis=0, ddof=1)) / 2)
        d = pd.Series((group.mean(axis=0) - controls.mean(axis=0)) / pooled, index=names)
        top = d.abs().sort_values(ascending=False).head(args.top).index
        table = pd.DataFrame({"cohens_d": d[top].round(2), "planted": top.isin(spec.regions)})
        print(f"subtype {spec.name} ({len(group)} patients vs {len(controls)} controls):")
        print(table.to_string())
        if args.regions:
            print("  named:", ", ".join(f"{r} {d[r]:+.2f}" for r in args.regions if r in d.index))


if __name__ == "__main__":
    main()
