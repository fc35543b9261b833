"""SIGKILL `train` and `explain` at random moments; count what survives (issue 13).

Training: one uninterrupted reference run, then ``--trials`` runs of the same command each killed
1-3 times, each time at a random moment 0-0.3 s after a random epoch ended (during the next
epoch, the validation pass or a checkpoint write), and continued (``--resume`` once a checkpoint exists, a fresh start
otherwise) until it finishes. A trial *survives* when its ``model.pt``, ``checkpoints/last.pt``
(every tensor), ``split.csv`` and the losses of ``metrics.jsonl`` are identical to the reference's,
and no temporary file is left. Explain: ``--explain-kills`` runs killed at a random moment; each
time every file left under its final name must be complete (NIfTI, PNG, CSV and JSON are read
back), then the next run must take the stale lock and finish.

    OMP_NUM_THREADS=1 python benchmarks/kill_resume.py --out /tmp/kill --trials 20 --explain-kills 10

Prints one line per trial and the totals; writes ``OUT/kill_resume.json``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from template_space_calibration import processor

EPOCHS = 30
RESUMABLE = ["--epochs", str(EPOCHS), "--device", "cpu"]  # all that --resume may be given
TRAIN = [*RESUMABLE, "--batch-size", "8", "--seed", "5"]


def sepclr(*args: str) -> list[str]:
    return [sys.executable, "-m", "sepclr_med.cli.main", *args]


def run_killed(command: list[str], delay: float) -> bool:
    """Start ``command``, SIGKILL it after ``delay`` s; True when it was still running (killed)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def kill_at_epoch(command: list[str], run: Path, epoch: int, extra: float) -> bool:
    """Start ``command``, SIGKILL it ``extra`` s after ``metrics.jsonl`` reached ``epoch`` lines
    (mid-epoch or mid-checkpoint); True when it was still running (killed)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run / "metrics.jsonl"
    while process.poll() is None:
        if metrics.is_file() and metrics.read_text().count("\n") >= epoch:
            time.sleep(extra)
            break
        time.sleep(0.005)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return True


def train_command(cohort: Path, out: Path) -> list[str]:
    if (out / "checkpoints" / "last.pt").is_file():
        return sepclr("train", "--cohort", str(cohort), "--out", str(out), *RESUMABLE, "--resume")
    return sepclr("train", "--cohort", str(cohort), "--out", str(out), *TRAIN)


def losses(run: Path) -> list[dict]:
    """metrics.jsonl without its timings (seconds differ between any two runs)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [
        {k: v for k, v in row.items() if "second" not in k and "time" not in k and k != "samples_per_s"} for row in rows
    ]


def same_weights(a: Path, b: Path) -> bool:
    import torch

    x, y = (torch.load(p, weights_only=True, map_location="cpu") for p in (a, b))
    flat_x, flat_y = _tensors(x), _tensors(y)
    return flat_x.keys() == flat_y.keys() and all(torch.equal(flat_x[k], flat_y[k]) for k in flat_x)


def _tensors(state, prefix: str = "") -> dict:
    import torch

    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        return {k: v for key, value in state.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(state, list | tuple):
        return {k: v for i, value in enumerate(state) for k, v in _tensors(value, f"{prefix}/{i}").items()}
    return {prefix: torch.tensor(float(state))} if isinstance(state, int | float) else {}


def temp_files(folder: Path) -> list[Path]:
    from sepclr_med.atomic import TEMP_MARK

    return [p for p in folder.rglob("*") if TEMP_MARK in p.name]


def compare(run: Path, reference: Path) -> list[str]:
    """What differs from the reference run (empty: identical)."""
    wrong = [name for name in ("model.pt", "checkpoints/last.pt") if not same_weights(run / name, reference / name)]
    if (run / "split.csv").read_text() != (reference / "split.csv").read_text():
        wrong.append("split.csv")
    if losses(run) != losses(reference):
        wrong.append("metrics.jsonl")
    if temp_files(run):
        wrong.append(f"{len(temp_files(run))} temp file(s) left")
    return wrong


def complete(path: Path) -> bool:
    """A file under its final name can be read back whole."""
    try:
        if path.name.endswith((".nii", ".nii.gz")):
            import nibabel as nib

            np.asarray(nib.load(path).dataobj)
        elif path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                image.load()
        elif path.suffix in (".csv", ".tsv"):
            import pandas as pd

            pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        elif path.suffix == ".json":
            json.loads(path.read_text())
        return path.stat().st_size > 0
    except Exception:  # noqa: BLE001 - any failure to read back is what is counted
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--explain-kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    cohort_dir = args.out / "cohort"
    if not (cohort_dir / "cohort.csv").is_file():
        subprocess.run(
            sepclr(
                "simulate",
                "--out",
                str(cohort_dir),
                "--n-controls",
                "8",
                "--n-patients",
                "8",
                "--resolution",
                "8",
                "--seed",
                "11",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    cohort = cohort_dir / "cohort.csv"
    reference = args.out / "reference"
    tic = time.perf_counter()
    if not (reference / "model.pt").is_file():
        subprocess.run(train_command(cohort, reference), check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - tic
    print(f"reference run: {seconds:.1f} s", flush=True)

    trials, kills = [], 0
    for trial in range(args.trials):
        out = args.out / f"trial{trial:02d}"
        n_kills = int(rng.integers(1, 4))
        done = resumed = 0
        for epoch in np.sort(rng.choice(np.arange(1, EPOCHS), n_kills, replace=False)):
            command = train_command(cohort, out)
            killed = kill_at_epoch(command, out, int(epoch), float(rng.uniform(0.0, 0.3)))
            done += killed
            resumed += killed and (out / "checkpoints" / "last.pt").is_file()
        subprocess.run(train_command(cohort, out), check=True, stdout=subprocess.DEVNULL)
        wrong = compare(out, reference)
        kills += done
        trials.append(
            {
                "trial": trial,
                "kills": done,
                "kills_after_a_checkpoint": resumed,
                "identical": not wrong,
                "differs": wrong,
            }
        )
        print(
            f"trial {trial:2d}: {done} kill(s) ({resumed} after a checkpoint), "
            + ("identical" if not wrong else "DIFFERS: " + ", ".join(wrong)),
            flush=True,
        )

    explain_out, explain = args.out / "explain", []
    base = [
        "explain",
        "--run",
        str(reference),
        "--cohort",
        str(cohort),
        "--out",
        str(explain_out),
        "--permutations",
        "50",
    ]
    tic = time.perf_counter()
    subprocess.run(sepclr(*base), check=True, stdout=subprocess.DEVNULL)
    explain_seconds = time.perf_counter() - tic
    for k in range(args.explain_kills):
        killed = run_killed(sepclr(*base), float(rng.uniform(1.0, explain_seconds)))
        broken = [
            str(p.relative_to(explain_out))
            for p in explain_out.rglob("*")
            if p.is_file() and ".sepclr-tmp-" not in p.name and p.name != ".sepclr.lock" and not complete(p)
        ]
        rerun = subprocess.run(sepclr(*base), capture_output=True, text=True)
        explain.append(
            {
                "kill": k,
                "killed": killed,
                "incomplete_files": broken,
                "rerun_exit": rerun.returncode,
                "temps_after_rerun": len(temp_files(explain_out)),
            }
        )
        print(
            f"explain kill {k}: killed={killed}, incomplete files {broken}, rerun exit {rerun.returncode}, "
            f"temp files after {explain[-1]['temps_after_rerun']}",
            flush=True,
        )

    summary = {
        "train_trials": len(trials),
        "train_kills": kills,
        "train_identical": sum(t["identical"] for t in trials),
        "train_kills_after_a_checkpoint": sum(t["kills_after_a_checkpoint"] for t in trials),
        "explain_kills": sum(e["killed"] for e in explain),
        "explain_clean": sum(
            not e["incomplete_files"] and e["rerun_exit"] == 0 and not e["temps_after_rerun"] for e in explain
        ),
        "processor": processor(),
        "trials": trials,
        "explain": explain,
    }
    (args.out / "kill_resume.json").write_text(json.dumps(summary, indent=1))
    print(
        f"train: {summary['train_identical']}/{len(trials)} identical after {kills} kills "
        f"({summary['train_kills_after_a_checkpoint']} after a checkpoint); "
        f"explain: {summary['explain_clean']}/{len(explain)} clean ({summary['explain_kills']} killed)"
    )


if __name__ == "__main__":
    main()
