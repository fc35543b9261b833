"""Load the factors of a cohort (confounds, scores, ground truth) and print/write the table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from sepclr_med.atomic import write_table, write_text


def cohort_factors(cohort, truth: str | os.PathLike | None = None) -> tuple[pd.DataFrame, str | None]:
    """Factor table of ``cohort``: its confounds and scores, merged with a ground-truth CSV.

    A ``ground_truth.csv`` beside the cohort file (as ``sepclr-med simulate`` writes) is used
    when ``truth`` is None. Returns the table and the ground-truth path used (or None).
    """
    columns = ["subject_id", *cohort.confound_columns, *cohort.score_columns]
    factors = cohort.table[columns].copy()
    path = Path(truth) if truth is not None else Path(cohort.source).parent / "ground_truth.csv"
    if path.is_file():
        gt = pd.read_csv(path, keep_default_na=False)
        gt = gt[[c for c in gt.columns if c == "subject_id" or c not in factors.columns]]
        gt = gt.drop(columns=[c for c in ("group", "affected_regions", "head_scale") if c in gt.columns])
        for col in gt.columns:
            if col != "subject_id":
                numeric = pd.to_numeric(gt[col], errors="coerce")
                gt[col] = numeric if numeric.notna().all() else gt[col].replace("", None)
        return factors.merge(gt, on="subject_id", how="left"), str(path)
    return factors, None


def write_evaluation(table: pd.DataFrame, out: str | os.PathLike, verdict: dict | None = None) -> dict[str, Path]:
    """Write ``probes.csv``, ``probes.json`` and the run's training ``verdict.json`` into ``out``
    (atomically)."""
    out = Path(out)
    paths = {"csv": out / "probes.csv", "json": out / "probes.json", "verdict": out / "verdict.json"}
    write_table(paths["csv"], table, float_format="%.4f")
    records = json.loads(table.to_json(orient="records"))
    write_text(paths["json"], json.dumps(records, indent=1))
    write_text(paths["verdict"], json.dumps(verdict or {"status": "unchecked"}, indent=1))
    return paths


def print_evaluation(table: pd.DataFrame, console) -> None:
    """A Rich table: value, chance and expectation of every cell; notes for missing cells."""
    from rich.table import Table

    view = Table(title="Separation of common and salient spaces (cross-validated probes)")
    for name in ("factor", "subjects", "metric", "common", "salient", "chance", "expected c / s"):
        view.add_column(name, justify="right" if name in ("common", "salient", "chance") else "left")
    short = {"balanced_accuracy": "bacc", "distance_correlation": "dcor"}
    for (factor, metric), cells in table.groupby(["factor", "metric"], sort=False):
        metric = short.get(metric, metric)
        by_space = {row.space: row for row in cells.itertuples()}
        fmt = lambda row: "—" if row is None or pd.isna(row.value) else f"{row.value:.3f}"  # noqa: E731
        first = next(iter(by_space.values()))
        expected = "/".join(by_space[s].expected if s in by_space else "—" for s in ("common", "salient"))
        if "common~salient" in by_space:
            expected = by_space["common~salient"].expected
            view.add_row(factor, first.subjects, metric, "", fmt(first), f"{first.chance:.2f}", expected)
            continue
        chance = "" if pd.isna(first.chance) else f"{first.chance:.2f}"
        view.add_row(
            factor, first.subjects, metric, fmt(by_space.get("common")), fmt(by_space.get("salient")), chance, expected
        )
    console.print(view)
    from rich.markup import escape

    for note in table.loc[table["note"].str.startswith("not computed"), ["space", "factor", "note"]].itertuples():
        console.print(f"[yellow]{escape(f'{note.space} -> {note.factor}: {note.note}')}[/]")
