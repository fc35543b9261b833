"""The end-to-end demo: simulate the default cohort, validate it, run the data pipeline.

Later stages (train, explain, report) join here as they land.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def run_demo(out: str | os.PathLike, *, quick: bool = False, console=None) -> dict:
    """Run the demo into ``out`` and return its measured figures.

    Parameters
    ----------
    out : path-like
        Output folder.
    quick : bool
        40 subjects instead of the recipe's 200.
    console : rich.console.Console, optional
        Where to print progress.

    Returns
    -------
    dict
        Wall times (s) of each stage and the pipeline timings.
    """
    from sepclr_med.cohort import read_cohort
    from sepclr_med.data.passes import timed_passes
    from sepclr_med.simulate import load_recipe, simulate_cohort

    say = console.print if console is not None else (lambda *a, **k: None)
    out = Path(out)
    recipe = load_recipe("schizophrenia")
    if quick:
        recipe = recipe.replace(n_controls=20, n_patients=20)
    figures: dict = {}

    start = time.perf_counter()
    sim = simulate_cohort(recipe, out / "cohort")
    figures["simulate_s"] = time.perf_counter() - start
    say(f"[bold]1. simulate[/] {recipe.n_controls} controls + {recipe.n_patients} patients "
        f"({recipe.resolution_mm:g} mm) -> {sim.cohort_csv} ({figures['simulate_s']:.1f} s)")

    start = time.perf_counter()
    cohort = read_cohort(sim.cohort_csv)
    figures["validate_s"] = time.perf_counter() - start
    say(f"[bold]2. validate[/] {len(cohort)} subjects, scores: {', '.join(cohort.score_columns)} "
        f"({figures['validate_s']:.1f} s)")

    timings = timed_passes(cohort, epochs=2, batch_size=16)
    figures["passes"] = [(t.label, t.seconds, t.volumes_per_second) for t in timings]
    say("[bold]3. data pipeline[/]")
    for t in timings:
        say(f"   {t.label}: {t.seconds:.2f} s ({t.volumes_per_second:.0f} subjects/s), "
            f"batches of {t.batch_shape}")
    say(f"[green]Demo finished[/]: outputs in {out}")
    return figures
