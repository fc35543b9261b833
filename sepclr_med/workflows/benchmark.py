"""The benchmark: every method, the same cohort, the same budget, the same probes, several seeds.

Trains on a simulated cohort, embeds a second, held-out cohort simulated from the same recipe
with another seed (subjects no encoder saw), probes it (:func:`evaluate_latents`) and writes:

- ``results.csv``: every cell for every method and seed (long format), with wall times;
- ``summary.csv`` and ``summary.md``: mean ± sd over seeds of the key probes, one row per method.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from sepclr_med.atomic import write_text

KEY_CELLS = [
    ("salient", "group", "balanced_accuracy", "S→patient bacc ↑"),
    ("common", "group", "balanced_accuracy", "C→patient bacc (0.5)"),
    ("salient", "subtype", "balanced_accuracy", "S→subtype bacc ↑"),
    ("common", "subtype", "balanced_accuracy", "C→subtype bacc (leak ↓)"),
    ("salient", "severity", "r2", "S→severity R² ↑"),
    ("common", "severity", "r2", "C→severity R² (leak ↓)"),
    ("common", "age", "r2", "C→age R² ↑"),
    ("salient", "age", "r2", "S→age R² (0)"),
    ("common", "sex", "balanced_accuracy", "C→sex bacc ↑"),
    ("salient", "sex", "balanced_accuracy", "S→sex bacc (0.5)"),
    ("common", "site", "balanced_accuracy", "C→site bacc ↑"),
    ("salient", "site", "balanced_accuracy", "S→site bacc (0.33)"),
    ("common~salient", "dependence between spaces", "distance_correlation", "dCor(C,S) ↓"),
]


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds of :data:`KEY_CELLS` and of the fit time, one row per method."""
    rows = []
    for method, part in results.groupby("method", sort=False):
        row = {"method": method}
        for space, factor, metric, label in KEY_CELLS:
            values = part[(part.space == space) & (part.factor == factor) & (part.metric == metric)]["value"]
            row[label] = (
                f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}"
                if values.notna().any()
                else "—"
            )
        times = part.drop_duplicates("seed")["fit_seconds"]
        row["fit time (min)"] = f"{times.mean() / 60:.1f}"
        rows.append(row)
    return pd.DataFrame(rows)


def run_benchmark(
    out: str | os.PathLike,
    *,
    methods: list[str],
    seeds: list[int],
    recipe=None,
    epochs: int | None = None,
    n_test: int | None = None,
    console=None,
) -> pd.DataFrame:
    """Run the benchmark into ``out`` and return the summary table.

    Parameters
    ----------
    out : path-like
        Output folder (cohorts, one folder per method and seed, tables).
    methods : list of str
        Keys of :data:`sepclr_med.baselines.METHODS`.
    seeds : list of int
        Seeds of every method (cohorts stay fixed).
    recipe : Recipe, optional
        Cohort recipe (default: the shipped ``schizophrenia`` recipe).
    epochs : int, optional
        Training budget of deep methods (default: ``TrainConfig``'s).
    n_test : int, optional
        Subjects per group in the held-out cohort (default: as the recipe).
    """
    from sepclr_med.baselines import METHODS, fit_and_embed
    from sepclr_med.errors import SepclrError
    from sepclr_med.evaluation import evaluate_latents
    from sepclr_med.evaluation.table import cohort_factors
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.simulate import load_recipe, simulate_cohort

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or not seeds:
        raise SepclrError(
            f"benchmark needs known methods and at least one seed; unknown: {unknown}; methods: {', '.join(METHODS)}"
        )
    out = Path(out)
    recipe = recipe or load_recipe()
    say = console.print if console is not None else (lambda *a, **k: None)
    manifest = json.dumps({"recipe": recipe.to_dict(), "epochs": epochs, "n_test": n_test}, sort_keys=True, default=str)
    if (out / "manifest.json").is_file() and (out / "manifest.json").read_text() != manifest:
        raise SepclrError(
            f"{out} holds a benchmark made with another recipe, budget or test size; "
            "use another --out (results are reused only for identical settings)"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "manifest.json", manifest)
    folders = {"train": out / "cohort_train", "test": out / "cohort_test"}
    specs = {"train": recipe, "test": recipe.replace(seed=recipe.seed + 1000, n_controls=n_test, n_patients=n_test)}
    for name, folder in folders.items():
        if not (folder / "cohort.csv").is_file():
            simulate_cohort(specs[name], folder)
    train_cohort = read_cohort(folders["train"] / "cohort.csv")
    test_cohort = read_cohort(folders["test"] / "cohort.csv")
    factors, _ = cohort_factors(test_cohort)
    results = []
    for seed in seeds:
        for method in methods:
            say(f"[bold]{method}[/] seed {seed}")
            latents, seconds = fit_and_embed(
                method,
                train_cohort,
                test_cohort,
                out / f"{method}_seed{seed}",
                seed=seed,
                epochs=epochs,
                console=console,
            )
            table = evaluate_latents(latents, factors, seed=seed)
            table.insert(0, "seed", seed)
            table.insert(0, "method", method)
            table["fit_seconds"] = seconds
            results.append(table)
            all_results = pd.concat(results, ignore_index=True)
            write_text(out / "results.csv", all_results.to_csv(index=False, float_format="%.4f"))
    summary = summarise(all_results)
    write_text(out / "summary.csv", summary.to_csv(index=False))
    write_text(out / "summary.md", summary.to_markdown(index=False) + "\n")
    return summary
