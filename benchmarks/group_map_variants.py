"""Which group saliency map recovers the planted subtypes best, chosen on a validation cohort.

    sepclr-med simulate --out /tmp/val2000 --seed 2000
    python benchmarks/group_map_variants.py --cohort /tmp/val2000/cohort.csv --runs RUN0 RUN1 RUN2 \
           [--method eg|ig]

Attributions of every patient (expected gradients against the controls' images, or integrated
gradients from their mean image), along two kinds of direction: each patient's own deviation
(controls' mean salient rep -> its rep) or its subtype's shared one (controls' mean -> subtype
mean). Group maps per subtype: the mean, or a voxelwise one-sample t (mean / standard error), of
the members' maps, each without or with 8 mm FWHM smoothing of the members' maps. For each
variant: voxel ROC AUC of |map| for the planted subtype mask inside the brain, and planted regions
in the top 5 of the region table (mean attribution per AAL region, ranked by magnitude). The
variant for `explain` is picked on cohorts other than the held-out cohort of the reported figures
(seed 1000): a validation cohort (seed 2000) and the training cohort (seed 0).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True)
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--method", default="eg", choices=("eg", "ig"))
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--out", type=Path, help="CSV of every variant, run and subtype")
    args = parser.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from sepclr_med.data import cached_dataset
    from sepclr_med.embed import encode_dataset, latent_table
    from sepclr_med.explain.directions import SalientDirections
    from sepclr_med.explain.group_stats import group_statistic
    from sepclr_med.explain.pipeline import load_atlas
    from sepclr_med.explain.regions import region_table
    from sepclr_med.explain.saliency import attribute
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe

    root = Path(args.cohort).parent
    cohort = read_cohort(args.cohort)
    recipe = load_recipe(root / "recipe.toml")
    truth = pd.read_csv(root / "ground_truth.csv", keep_default_na=False).set_index("subject_id")
    subtype = truth.reindex(cohort.subject_ids)["subtype"].to_numpy()
    brain = nib.load(root / "brain_mask.nii.gz").get_fdata() > 0
    planted = {s.name: nib.load(root / "masks" / f"subtype-{s.name}.nii.gz").get_fdata() > 0 for s in recipe.subtypes}
    patient = cohort.is_target
    rows = []
    for run_dir in args.runs:
        run = Run(run_dir)
        model, pre = run.load_model("cpu"), run.config.preprocess
        atlas = load_atlas("AAL", pre.grid.image(np.zeros(pre.grid.shape, np.float32)))
        data = cached_dataset(cohort.records(), pre, cache="memory")
        volumes = torch.stack([data[i]["image"] for i in range(len(data))])
        salient = latent_table(cohort, *encode_dataset(model, data)).filter(like="salient_").to_numpy()
        directions = SalientDirections().fit(salient, patient)
        references = volumes[torch.from_numpy(~patient)]
        for spec in recipe.subtypes:
            members = np.flatnonzero(patient & (subtype == spec.name))
            kinds = {
                "own": directions.deviation_directions(salient[members]),
                "shared": directions.toward(salient[members]),
            }
            for kind, u in kinds.items():
                maps = attribute(model, volumes[members], u, references, method=args.method, n_steps=args.steps) * brain
                for smooth, stat in itertools.product((0, 8), ("mean", "t")):
                    group = group_statistic(maps, pre.grid.affine, statistic=stat, fwhm_mm=smooth, mask=brain)
                    top5 = region_table(group, atlas.data, atlas.regions).head(5)["name"]
                    rows.append(
                        {
                            "cohort": root.name,
                            "method": args.method,
                            "run": Path(run_dir).name,
                            "subtype": spec.name,
                            "direction": kind,
                            "smooth_fwhm_mm": smooth,
                            "statistic": stat,
                            "voxel_auc": roc_auc_score(planted[spec.name][brain], np.abs(group)[brain]),
                            "planted_in_top5": int(top5.isin(spec.regions).sum()),
                        }
                    )
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    variant = ["direction", "smooth_fwhm_mm", "statistic"]
    wide = table.pivot_table(index=variant, columns=["subtype", "run"], values=["voxel_auc", "planted_in_top5"])
    print(wide.round(3).to_string())
    print(
        table.groupby(variant)
        .agg(min_auc=("voxel_auc", "min"), mean_auc=("voxel_auc", "mean"), min_top5=("planted_in_top5", "min"))
        .round(3)
        .to_string()
    )


if __name__ == "__main__":
    main()
