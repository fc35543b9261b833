"""Hand-written region code beside the library that does the same job (issue 14).

Two places keep their own code; this script shows that they give the library's values and
measures why they stay:

* region ablation (``explain.saliency.region_rep_changes``) against Captum's
  ``FeatureAblation(feature_mask=atlas)``: Captum ablates for one scalar output, so each direction
  set is one more full pass; explain needs the patients' own directions and one shared direction
  per group, which one pass of rep changes serves.
* region means (``explain.regions.region_table``) against nilearn's ``NiftiLabelsMasker``.

Run: ``OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/library_equivalents.py``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch


def _labels(shape, n_regions: int, rng) -> np.ndarray:
    """Blocky integer labels 0..n_regions (0 = background) on ``shape``."""
    coarse = rng.integers(0, n_regions + 1, size=tuple(-(-s // 4) for s in shape))
    return np.kron(coarse, np.ones((4, 4, 4), dtype=int))[: shape[0], : shape[1], : shape[2]].astype(np.int32)


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def ablation(args, rng) -> None:
    from captum.attr import FeatureAblation

    from sepclr_med.explain.saliency import Projection, region_rep_changes
    from sepclr_med.models import ModelConfig, SepCLRModel

    torch.manual_seed(0)
    shape = tuple(args.shape)
    model = SepCLRModel(ModelConfig()).eval()
    volumes = torch.from_numpy(rng.random((args.subjects, 1, *shape), dtype=np.float32))
    baseline = torch.from_numpy(rng.random((1, 1, *shape), dtype=np.float32))
    labels = _labels(shape, args.regions, rng)
    region_ids = [int(r) for r in np.unique(labels) if r > 0]
    sets = [
        torch.from_numpy(rng.standard_normal((args.subjects, 32)).astype(np.float32)) for _ in range(args.directions)
    ]

    def ours():
        changes = region_rep_changes(model, volumes, baseline, labels, region_ids, batch_size=args.subjects)
        return [np.einsum("nrd,nd->nr", changes, u.numpy()) for u in sets]

    mask = torch.from_numpy(labels).long()[None, None]
    captum = FeatureAblation(Projection(model))

    def theirs():
        out = []
        with torch.no_grad():
            for u in sets:
                attr = captum.attribute(volumes, baselines=baseline, feature_mask=mask, additional_forward_args=(u,))
                out.append(np.stack([attr[:, 0][:, labels == r][:, 0].numpy() for r in region_ids], axis=1))
        return out

    a, b = ours(), theirs()
    diff = max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))
    scale = max(float(np.abs(x).max()) for x in a)
    t_ours, t_captum = _median_seconds(ours, args.repeats), _median_seconds(theirs, args.repeats)
    print(
        f"region ablation, grid {shape}, {args.subjects} subjects, {len(region_ids)} regions, "
        f"{args.directions} direction sets: max |ours - Captum| = {diff:.2e} (values up to {scale:.2e}); "
        f"median {t_ours:.2f} s ours, {t_captum:.2f} s Captum FeatureAblation ({t_captum / t_ours:.2f}x)"
    )


def region_means(args, rng) -> None:
    import pandas as pd
    from nilearn.maskers import NiftiLabelsMasker

    from sepclr_med.explain.regions import region_table
    from sepclr_med.io.grid import Grid

    shape = (121, 145, 121)  # 1.5 mm MNI grid
    grid = Grid(np.diag([1.5, 1.5, 1.5, 1.0]), shape)
    labels = _labels(shape, 116, rng)
    ids = [int(r) for r in np.unique(labels) if r > 0]
    regions = pd.DataFrame({"id": ids, "name": [f"r{r}" for r in ids], "hemisphere": "L"})
    data = rng.standard_normal(shape).astype(np.float32)
    labels_img, data_img = grid.image(labels, dtype=np.int32), grid.image(data)

    def ours():
        return region_table(data, labels, regions).set_index("region_id")["mean_attribution"]

    def theirs():
        masker = NiftiLabelsMasker(labels_img, strategy="mean", resampling_target=None, standardize=None)
        return np.ravel(masker.fit_transform(data_img))  # one 3D image: one value per region

    mine, nilearn_means = ours().sort_index().to_numpy(), theirs()
    diff = float(np.abs(mine - nilearn_means).max())
    t_ours, t_nilearn = _median_seconds(ours, args.repeats), _median_seconds(theirs, args.repeats)
    print(
        f"region means, grid {shape}, {len(ids)} regions: max |ours - NiftiLabelsMasker| = {diff:.2e}; "
        f"median {t_ours * 1000:.0f} ms ours, {t_nilearn * 1000:.0f} ms nilearn ({t_nilearn / t_ours:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(40, 48, 40))
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--regions", type=int, default=24)
    parser.add_argument("--directions", type=int, default=3, help="own directions + one per group (2 groups)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    rng = np.random.default_rng(0)
    ablation(args, rng)
    region_means(args, rng)


if __name__ == "__main__":
    main()
