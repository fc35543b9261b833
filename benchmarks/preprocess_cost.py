"""Wall time and peak memory of ``sepclr-med preprocess`` per subject (issue 15).

Each registration runs in a fresh process (peak resident memory is that process's), on a head
with skull and scalp made from the shipped template (``simulate.raw_heads``: moved by a known
rigid transform, 1 x 1 x 1.2 mm LPS int16 voxels, bias field, noise), into the template grid at
``--resolution`` mm. Prints one line per transform: seconds, peak MiB, similarity, worst
displacement of the brain's voxels against the truth (mm).

    OMP_NUM_THREADS=1 ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 python benchmarks/preprocess_cost.py --resolution 1
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def one(transform: str, resolution: float, head: Path) -> None:
    from sepclr_med.registration import RegistrationConfig, Template, register_scan
    from sepclr_med.simulate.raw_heads import motion_matrix

    template = Template(resolution)
    with tempfile.TemporaryDirectory() as work:
        result = register_scan(
            head, template, RegistrationConfig(transform=transform, resolution=resolution), Path(work)
        )
    t1, mask = template.images()
    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)
    points = np.c_[ijk, np.ones(len(ijk))] @ t1.affine.T
    truth = motion_matrix()
    worst = float(np.linalg.norm((points @ result.template_to_scan.T - points @ truth.T)[:, :3], axis=1).max())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": result.seconds, "peak_mib": peak, "similarity": result.similarity, "worst_mm": worst}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--transforms", nargs="+", default=["affine", "syn"])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--head", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.resolution, Path(args.head))
        return
    from sepclr_med.simulate.raw_heads import motion_matrix, scanner_head

    print(f"{platform.processor() or platform.machine()}; template grid {args.resolution:g} mm; one ITK thread")
    with tempfile.TemporaryDirectory() as folder:
        head = Path(folder) / "sub-01_T1w.nii.gz"
        scanner_head(
            head, motion_matrix(), resolution=1.0, voxel_size=(1.0, 1.0, 1.2), skull=True, rng=np.random.default_rng(0)
        )
        for transform in args.transforms:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                transform,
                "--resolution",
                str(args.resolution),
                "--head",
                str(head),
            ]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(line)
            print(
                f"{transform}: {r['seconds']:.0f} s, peak {r['peak_mib']:.0f} MiB, similarity {r['similarity']:.3f}, "
                f"worst displacement {r['worst_mm']:.2f} mm"
            )


if __name__ == "__main__":
    main()
