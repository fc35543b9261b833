"""The end-to-end demo on embedded default data.

simulate -> validate -> data pipeline -> train -> evaluate (held-out cohort) -> explain -> report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def run_demo(out: str | os.PathLike, *, quick: bool = False, epochs: int | None = None, console=None) -> dict:
    """Run the demo into ``out`` and return its measured figures.

    (Long because it is the demo's seven stages in order, a few lines each, as a user reads them.)

    Parameters
    ----------
    out : path-like
        Output folder (cohorts, run directory, evaluation, explanations, reports).
    quick : bool
        40 training subjects, 2 epochs and tiny attribution budgets: a fast smoke run whose
        numbers mean nothing.
    epochs : int, optional
        Training epochs (default 40, or 2 with ``quick``).
    console : rich.console.Console, optional
        Where to print progress.

    Returns
    -------
    dict
        Wall time (s) of each stage, pipeline timings, probe scores and output paths.
    """
    import pandas as pd

    from sepclr_med.embed import embed
    from sepclr_med.evaluation import evaluate_latents
    from sepclr_med.evaluation.table import cohort_factors, print_evaluation, write_evaluation
    from sepclr_med.explain.pipeline import explain
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.report.batch import make_reports
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train
    from sepclr_med.workflows.timing import timed_passes

    say = console.print if console is not None else (lambda *a, **k: None)
    out = Path(out)
    recipe = load_recipe("schizophrenia")
    if quick:
        recipe = recipe.replace(n_controls=20, n_patients=20)
    epochs = epochs or (2 if quick else 40)
    figures: dict = {}
    clock = time.perf_counter()

    def lap(name: str) -> float:
        nonlocal clock
        now = time.perf_counter()
        figures[f"{name}_s"] = now - clock
        clock = now
        return figures[f"{name}_s"]

    sim = simulate_cohort(recipe, out / "cohort")
    say(
        f"[bold]1. simulate[/] {recipe.n_controls} controls + {recipe.n_patients} patients "
        f"({recipe.resolution_mm:g} mm) -> {sim.cohort_csv} ({lap('simulate'):.1f} s)"
    )

    cohort = read_cohort(sim.cohort_csv)
    say(
        f"[bold]2. validate[/] {len(cohort)} subjects, scores: {', '.join(cohort.score_columns)} "
        f"({lap('validate'):.1f} s)"
    )

    timings = timed_passes(cohort, epochs=2, batch_size=16)
    say(f"[bold]3. data pipeline[/] ({lap('pipeline'):.1f} s)")
    for t in timings:
        say(f"   {t.label}: {t.seconds:.2f} s ({t.volumes_per_second:.0f} subjects/s)")

    say(f"[bold]4. train[/] SepCLR, {epochs} epochs (the full default is {TrainConfig().optim.epochs})")
    run_dir = train(cohort, out / "run", TrainConfig().override(**{"optim.epochs": epochs}), console=console)
    say(f"   run directory {run_dir} ({lap('train'):.0f} s)")

    n_test = 20 if quick else 40
    held_out = simulate_cohort(
        recipe.replace(seed=recipe.seed + 1000, n_controls=n_test, n_patients=n_test), out / "cohort_heldout"
    )
    test = read_cohort(held_out.cohort_csv)
    factors, _ = cohort_factors(test)
    table = evaluate_latents(embed(Run(run_dir), test), factors)
    paths = write_evaluation(table, out / "evaluation", verdict=Run(run_dir).verdict())
    say(f"[bold]5. evaluate[/] {len(test)} held-out subjects -> {paths['csv']} ({lap('evaluate'):.0f} s)")
    if console is not None and not quick:
        print_evaluation(table, console)
    cells = table.set_index(["space", "factor", "metric"])["value"]
    figures["salient_patient_bacc"] = float(cells[("salient", "group", "balanced_accuracy")])
    figures["common_patient_bacc"] = float(cells[("common", "group", "balanced_accuracy")])

    truth = pd.read_csv(held_out.ground_truth_csv, keep_default_na=False)
    explain(Run(run_dir), test, out / "explain", n_steps=4 if quick else 16, truth=truth, figures=not quick)
    say(f"[bold]6. explain[/] maps, regions, clinical statistics -> {out / 'explain'} ({lap('explain'):.0f} s)")

    batch = test.table[test.is_target].head(3 if quick else 5)
    batch_csv = out / "new_patients.csv"
    batch[["subject_id", "image", "group", *test.score_columns]].to_csv(batch_csv, index=False)
    result = make_reports(
        Run(run_dir), batch_csv, out / "reports", explain_dir=out / "explain", n_steps=4 if quick else 16, pdf=not quick
    )
    say(
        f"[bold]7. report[/] {len(result['rows'])} patients ({result['seconds_per_page']:.1f} s per page) "
        f"({lap('report'):.0f} s)"
    )
    figures["report_index"] = result["index"]
    figures["total_s"] = sum(v for k, v in figures.items() if k.endswith("_s"))
    figures["verdict"] = Run(run_dir).verdict()["status"]
    if result["warning"]:
        from rich.markup import escape

        say(f"[bold red]WARNING[/] (training verdict): {escape(result['warning'])}")
    say(f"[green]Demo finished[/] in {figures['total_s'] / 60:.1f} min. Open the report: {result['index']}")
    return figures
