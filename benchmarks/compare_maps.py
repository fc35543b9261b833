"""How far two ``explain`` outputs' maps are from each other (e.g. float32 against bfloat16).

    python benchmarks/compare_maps.py EXPLAIN_A EXPLAIN_B

For every map both folders hold (``maps/*.nii.gz``, the baseline excepted) it prints, as JSON:
the Pearson correlation, the largest absolute difference relative to the first map's largest
absolute value, and the Dice overlap of the top 5% voxels by absolute value; then the worst of
each over all maps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def compare(a: np.ndarray, b: np.ndarray, top: float = 0.05) -> dict:
    """Correlation, relative largest difference and top-``top`` Dice of two maps."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    scale = np.abs(a).max() or 1.0
    k = max(1, int(top * np.count_nonzero(a)))
    top_a, top_b = set(np.argsort(-np.abs(a))[:k]), set(np.argsort(-np.abs(b))[:k])
    return {
        "correlation": float(np.corrcoef(a, b)[0, 1]),
        "max_relative_difference": float(np.abs(a - b).max() / scale),
        "top5_dice": 2 * len(top_a & top_b) / (len(top_a) + len(top_b)),
    }


def main() -> None:
    first, second = (Path(p) / "maps" for p in sys.argv[1:3])
    rows = {}
    for path in sorted(first.glob("*.nii.gz")):
        other = second / path.name
        if path.name.startswith("baseline") or not other.is_file():
            continue
        rows[path.name] = compare(np.asarray(nib.load(path).dataobj), np.asarray(nib.load(other).dataobj))
    if not rows:
        sys.exit(f"no map in both {first} and {second}")
    worst = {
        "maps": len(rows),
        "min_correlation": min(r["correlation"] for r in rows.values()),
        "max_relative_difference": max(r["max_relative_difference"] for r in rows.values()),
        "min_top5_dice": min(r["top5_dice"] for r in rows.values()),
    }
    print(json.dumps({"worst": worst, "maps": rows}, indent=2))


if __name__ == "__main__":
    main()
