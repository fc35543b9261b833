"""The end-to-end demo on the embedded default data.

simulate -> validate -> data pipeline -> train -> embed held-out subjects -> probes.
Later stages (explain, report) join here as they land.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def run_demo(out: str | os.PathLike, *, quick: bool = False, epochs: int | None = None,
             console=None) -> dict:
    """Run the demo into ``out`` and return its measured figures.

    Parameters
    ----------
    out : path-like
        Output folder (cohorts, run directory, latents).
    quick : bool
        40 training subjects and 2 epochs: a fast smoke run, too small for meaningful probes.
    epochs : int, optional
        Training epochs (default 20, or 2 with ``quick``).
    console : rich.console.Console, optional
        Where to print progress.

    Returns
    -------
    dict
        Wall times (s) of each stage, pipeline timings and probe scores.
    """
    import pandas as pd

    from sepclr_med.cohort import read_cohort
    from sepclr_med.data.passes import timed_passes
    from sepclr_med.embed import embed, write_latents
    from sepclr_med.run import Run
    from sepclr_med.simulate import load_recipe, simulate_cohort
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train

    say = console.print if console is not None else (lambda *a, **k: None)
    out = Path(out)
    recipe = load_recipe("schizophrenia")
    if quick:
        recipe = recipe.replace(n_controls=20, n_patients=20)
    epochs = epochs or (2 if quick else 20)
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

    say(f"[bold]4. train[/] SepCLR, {epochs} epochs (the full default is "
        f"{TrainConfig().optim.epochs}: `sepclr-med train --cohort {sim.cohort_csv}`)")
    start = time.perf_counter()
    run_dir = train(cohort, out / "run", TrainConfig().override(**{"optim.epochs": epochs}), console=console)
    figures["train_s"] = time.perf_counter() - start

    held_out = simulate_cohort(recipe.replace(seed=recipe.seed + 1000,
                                              n_controls=min(recipe.n_controls, 40),
                                              n_patients=min(recipe.n_patients, 40)), out / "cohort_heldout")
    test = read_cohort(held_out.cohort_csv)
    latents = embed(Run(run_dir), test)
    write_latents(latents, out / "latents_heldout.csv")
    say(f"[bold]5. embed[/] {len(test)} held-out subjects -> {out / 'latents_heldout.csv'}")

    if not quick:
        from sepclr_med.evaluation import probe_classification

        truth = pd.read_csv(held_out.ground_truth_csv, keep_default_na=False)
        df = latents.merge(truth[["subject_id", "subtype"]], on="subject_id")
        patient = (df["group"] == "patient").to_numpy()
        for space in ("common", "salient"):
            x = df[[c for c in df.columns if c.startswith(space + "_")]].to_numpy()
            figures[f"{space}_patient_bacc"] = probe_classification(x, patient)
            figures[f"{space}_subtype_bacc"] = probe_classification(x[patient], df.loc[patient, "subtype"])
        say("[bold]6. probes[/] on held-out subjects (5-fold CV, balanced accuracy):")
        say(f"   patient vs control: salient {figures['salient_patient_bacc']:.2f}, "
            f"common {figures['common_patient_bacc']:.2f} (should be high / near 0.5)")
        say(f"   patient subtype:    salient {figures['salient_subtype_bacc']:.2f}, "
            f"common {figures['common_subtype_bacc']:.2f}")
    say(f"[green]Demo finished[/]: outputs in {out}")
    return figures
