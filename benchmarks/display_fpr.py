"""How often does a held-out healthy control's report page light up? (issue 17)

Reports every subject of a cohort the run never saw (e.g. the demo's ``cohort_heldout``) and
prints, per group, the share of pages whose displayed map has any voxel at or above the
calibrated display threshold, with its 95 % Clopper-Pearson interval, beside the bound the pages
state. Controls: the false-positive rate; patients: how often a patient's map shows something.

    python benchmarks/display_fpr.py --run sepclr_demo/run --cohort sepclr_demo/cohort_heldout/cohort.csv \\
        --out /tmp/display_fpr
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import pandas as pd
from scipy import stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="run directory or exported model file")
    parser.add_argument("--cohort", type=Path, required=True, help="held-out cohort (never trained or calibrated on)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from sepclr_med.exported import open_model
    from sepclr_med.report.batch import make_reports

    tic = time.perf_counter()
    result = make_reports(open_model(args.run), args.cohort, args.out, pdf=False, viewer=False, device=args.device)
    seconds = time.perf_counter() - tic
    summary = pd.read_csv(args.out / "summary.csv")
    first = (args.out / summary["page"][0]).read_text()
    stated = first.split("at most ")[1].split(" %")[0] if "at most " in first else "not calibrated"
    print(f"# display threshold on held-out subjects ({platform.processor() or platform.machine()})")
    print(f"run {args.run}, cohort {args.cohort}: {len(summary)} pages in {seconds:.0f} s; stated bound {stated} %")
    print("| group | pages | lit | share lit | 95 % interval | median peak (x threshold) |")
    print("|---|---|---|---|---|---|")
    for group, rows in summary.groupby("group"):
        lit, n = int(rows["map_lit"].sum()), len(rows)
        ci = stats.binomtest(lit, n).proportion_ci(0.95, method="exact")
        print(
            f"| {group} | {n} | {lit} | {lit / n:.3f} | {ci.low:.3f}-{ci.high:.3f} | {rows['map_peak'].median():.2f} |"
        )
    if result["failures"]:
        print(f"{len(result['failures'])} failure(s): {result['failures'][:3]}")


if __name__ == "__main__":
    main()
