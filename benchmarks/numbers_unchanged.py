"""Same seed, same numbers: train, embed and explain a small simulated cohort with the code at a
given source root, and write what a refactor must not move (issue 14).

    OMP_NUM_THREADS=1 python benchmarks/numbers_unchanged.py --code /path/to/old/checkout --out /tmp/old_numbers
    OMP_NUM_THREADS=1 python benchmarks/numbers_unchanged.py --code . --out /tmp/new_numbers
    python benchmarks/numbers_unchanged.py --compare /tmp/old_numbers /tmp/new_numbers

The first two write ``weights.npz`` (every tensor of ``model.pt``), ``latents.csv``, the explain
maps' voxels (``maps.npz``) and its tables; ``--compare`` prints the largest difference of each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def produce(code: Path, out: Path, seed: int) -> None:
    sys.path.insert(0, str(code.resolve()))  # the checkout under test, before any installed copy
    import nibabel as nib
    import numpy as np
    import torch

    import sepclr_med

    print("code:", Path(sepclr_med.__file__).parent)
    torch.set_num_threads(1)
    from sepclr_med.explain.pipeline import explain
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train

    try:
        from sepclr_med.io.reading import read_cohort
    except ImportError:  # before the io/ room (session 8)
        try:
            from sepclr_med.reading import read_cohort  # type: ignore[no-redef]
        except ImportError:  # before reading.py existed
            from sepclr_med.cohort import read_cohort  # type: ignore[no-redef]
    from sepclr_med.embed import embed

    recipe = load_recipe("schizophrenia").replace(n_controls=12, n_patients=12, resolution_mm=8.0, seed=5)
    sim = simulate_cohort(recipe, out / "cohort")
    cohort = read_cohort(sim.cohort_csv)
    config = TrainConfig().override(**{"device": "cpu", "optim.epochs": 4, "optim.batch_size": 8, "seed": seed})
    run = Run(train(cohort, out / "run", config))
    state = torch.load(out / "run" / "model.pt", weights_only=True)
    np.savez(out / "weights.npz", **{k: v.numpy() for k, v in state.items()})
    embed(run, cohort).to_csv(out / "latents.csv", index=False)
    index = explain(run, cohort, out / "explain", n_steps=4, figures=False)
    np.savez(out / "maps.npz", **{k: np.asarray(nib.load(v).dataobj) for k, v in index["maps"].items()})


def compare(a: Path, b: Path) -> None:
    import numpy as np
    import pandas as pd

    for name in ("weights.npz", "maps.npz"):
        x, y = np.load(a / name), np.load(b / name)
        assert sorted(x) == sorted(y), f"{name}: different keys"
        worst = max(float(np.abs(x[k] - y[k]).max()) for k in x)
        print(f"{name}: {len(x)} arrays, largest absolute difference {worst:.3g}")
    for name in ("latents.csv", "explain/deviation.csv", "explain/clinical.csv", "explain/directions.csv"):
        x, y = pd.read_csv(a / name), pd.read_csv(b / name)
        numbers = x.select_dtypes("number").columns
        print(f"{name}: largest absolute difference {float((x[numbers] - y[numbers]).abs().max().max()):.3g}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path, nargs=2)
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (analyses use it too)")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
    else:
        produce(args.code, args.out, args.seed)
