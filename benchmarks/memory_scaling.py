"""Peak RSS of ``sepclr-med train --cache memory`` at 1.5 mm against the cohort's size (issue 16).

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/memory_scaling.py --sizes 16,96

Simulates one 2 mm cohort (the default recipe, largest size, groups mixed in every prefix) and
trains on its first N rows, resampled onto the 1.5 mm grid (``--voxel-size 1.5``, cropped to the
brain: 100x122x105 on this cohort), one epoch, batch 4 (full batches at every size, so the same
activations: 16 subjects leave 12 for training), in a fresh process each; prints the peak RSS
(``/usr/bin/time -f %M``), the cache's own size (subjects x grid x 2 bytes, float16) and the
growth of each against the smallest size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,96")
    parser.add_argument("--voxel-size", type=float, default=1.5)
    parser.add_argument("--batch-size", type=int, default=4, help="divides every size's training part")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "sepclr_memory_cohort"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    folder = Path(args.cache)
    if not (folder / "cohort.csv").is_file():
        n = max(sizes)
        subprocess.run(
            ["sepclr-med", "simulate", "--out", str(folder), "--n-controls", str(n // 2), "--n-patients",
             str(n - n // 2), "--voxel-size", "2"],
            check=True, capture_output=True,
        )  # fmt: skip
    table = pd.read_csv(folder / "cohort.csv")
    rows = []
    for n in sizes:
        csv = folder / f"first{n}.csv"
        table.head(n).to_csv(csv, index=False)
        out = Path(tempfile.mkdtemp()) / "run"
        command = ["/usr/bin/time", "-f", "%M", "sepclr-med", "train", "--cohort", str(csv), "--out", str(out),
                   "--epochs", "1", "--batch-size", str(args.batch_size), "--voxel-size", str(args.voxel_size),
                   "--cache", "memory", "--device", "cpu"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise SystemExit(f"train on {n} subjects failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        peak_kib = int(result.stderr.strip().splitlines()[-1])
        grid = _grid(out)
        shutil.rmtree(out.parent, ignore_errors=True)
        rows.append(
            {"subjects": n, "grid": grid, "peak_rss_mib": peak_kib / 1024, "cache_mib": n * np.prod(grid) * 2 / 2**20}
        )
    first = rows[0]
    print(f"{'subjects':>8} {'grid':>14} {'peak RSS MiB':>12} {'cache MiB':>9} {'RSS growth':>10} {'cache growth':>12}")
    for row in rows:
        print(
            f"{row['subjects']:>8} {'x'.join(map(str, row['grid'])):>14} {row['peak_rss_mib']:>12.0f} "
            f"{row['cache_mib']:>9.0f} {row['peak_rss_mib'] - first['peak_rss_mib']:>10.0f} "
            f"{row['cache_mib'] - first['cache_mib']:>12.0f}"
        )


def _grid(run: Path) -> list[int]:
    from sepclr_med.training import TrainConfig

    return list(TrainConfig.load_run(run).preprocess.output_shape)


if __name__ == "__main__":
    main()
