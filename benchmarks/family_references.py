"""What simple supervised detectors reach on each evaluation-family member (references, not ceilings).

For each member (the hold-out member excluded), on the cohorts ``family_probes.py`` simulates
(train: seed 0, test: seed 1000, the same layout under ``--out``):

- ``voxel_logreg_bacc``: L2 logistic regression (C by 5-fold CV) on the preprocessed voxels inside
  the brain, each subject divided by its own brain mean (removes a global gain), trained on the
  training cohort *with the group labels*, balanced accuracy on the test cohort;
- ``voxel_pca_age_r2``: R² of age from 32 principal components of the test cohort's voxels (the
  bar for common -> age: is age decodable from the images at all);
- ``roi_oracle_auc`` / ``roi_oracle_bacc``: a detector that knows the planted regions: per subtype,
  mean intensity in the subtype's mask / mean in the brain, z-scored against the training
  controls; the score is the lowest z; threshold chosen on the training cohort.

    python benchmarks/family_references.py --out /tmp/fam --resolution 6
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
from family_probes import member_cohorts, preprocessed_voxels, voxel_pca_age_r2
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import balanced_accuracy_score, roc_auc_score


def resolved_preprocess(train):
    """Default preprocessing resolved on the training cohort, as ``train`` does."""
    from sepclr_med.training import TrainConfig

    table = train.table
    return TrainConfig().preprocess.resolve(list(table["image"]), list(table.loc[~train.is_target, "image"]))


def voxel_logreg_bacc(train, test, pre) -> float:
    x_train, x_test = preprocessed_voxels(train, pre), preprocessed_voxels(test, pre)
    brain = x_train.mean(0) > 0.1 * x_train.mean(0).max()
    x_train, x_test = (x[:, brain] / x[:, brain].mean(1, keepdims=True) for x in (x_train, x_test))
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    clf = LogisticRegressionCV(Cs=10, max_iter=3000).fit((x_train - mu) / sd, train.is_target)
    return float(balanced_accuracy_score(test.is_target, clf.predict((x_test - mu) / sd)))


def roi_features(folder: Path, subject_ids) -> np.ndarray:
    brain = nib.load(folder / "brain_mask.nii.gz").get_fdata() > 0
    masks = [nib.load(m).get_fdata() > 0 for m in sorted((folder / "masks").glob("*.nii.gz"))]
    rows = []
    for sid in subject_ids:
        x = nib.load(folder / "images" / f"{sid}.nii.gz").get_fdata()
        rows.append([x[m].mean() / x[brain].mean() for m in masks])
    return np.array(rows)


def roi_oracle(train_dir: Path, test_dir: Path, train, test) -> tuple[float, float]:
    f_train, f_test = roi_features(train_dir, train.subject_ids), roi_features(test_dir, test.subject_ids)
    controls = f_train[~train.is_target]
    mu, sd = controls.mean(0), controls.std(0)
    s_train, s_test = (-((f - mu) / sd).min(1) for f in (f_train, f_test))
    y = train.is_target

    def bacc(s, yy, t):
        return ((s[yy] > t).mean() + (s[~yy] <= t).mean()) / 2

    threshold = max(np.sort(s_train), key=lambda t: bacc(s_train, y, t))
    return float(roc_auc_score(test.is_target, s_test)), float(bacc(s_test, test.is_target, threshold))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resolution", type=float, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)

    from sepclr_med.simulate import family_recipes

    print(
        "| member | voxel logistic regression (bacc) | ROI oracle AUC | ROI oracle bacc | voxel PCA -> age R² |\n"
        "|---|---|---|---|---|"
    )
    for member, recipe in family_recipes().items():
        if recipe.holdout:
            continue
        cohorts = member_cohorts(args.out, member, recipe.replace(resolution_mm=args.resolution))
        (train, _), (test, _) = cohorts["train"], cohorts["test"]
        folder = args.out / member.removeprefix("family/")
        auc, bacc = roi_oracle(folder / "cohort_train", folder / "cohort_test", train, test)
        pre = resolved_preprocess(train)
        print(
            f"| {member} | {voxel_logreg_bacc(train, test, pre):.3f} | {auc:.3f} | {bacc:.3f} | "
            f"{voxel_pca_age_r2(test, pre):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
