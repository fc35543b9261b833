"""Training throughput: the Trainer beside a minimal PyTorch loop on the same tensors (issue 16).

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/throughput.py \
        --voxel-sizes 4,2,1.5 --backbones small,resnet10 --device cpu --epochs 3

For each voxel size (the 2 mm simulated cohort resampled by ``[preprocess] voxel_size``, cropped
to the brain) and backbone, in a fresh subprocess each:

- ``train``: ``sepclr_med.training.train`` for ``--epochs``; its ``metrics.jsonl`` gives the
  training seconds of each epoch and the seconds it waited for data (``data_seconds``);
- ``minimal``: the same volume store, the same batch views, model, objective and Adam, in the
  shortest loop PyTorch allows (no validation, no metrics, no checkpoint);

and prints subjects/s (two views each) of the epochs after the first (median), the fractions
of the Trainer's epoch spent waiting for volumes and making the views (the minimal loop makes the
same views, untimed), each loop's epoch over the minimal loop's (``ratio``), the process's peak
RSS (MiB) and, on CUDA, the peak GPU memory. ``--compile`` adds the minimal loop under
``torch.compile``. ``--json FILE`` appends the rows as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cohort(folder: Path, n: int, seed: int) -> Path:
    from sepclr_med.simulate import load_recipe, simulate_cohort

    csv = folder / "cohort.csv"
    if not csv.is_file():
        recipe = load_recipe().replace(n_controls=n // 2, n_patients=n - n // 2, resolution_mm=2.0, seed=seed)
        simulate_cohort(recipe, folder)
    return csv


def _config(args, voxel_size: float, backbone: str):
    from sepclr_med.training import TrainConfig

    return TrainConfig().override(
        **{
            "optim.epochs": args.epochs,
            "optim.batch_size": args.batch_size,
            "preprocess.voxel_size": voxel_size,
            "model.backbone": backbone,
            "device": args.device,
            "amp": args.amp,
            "val_fraction": 0.0,
            "num_workers": args.workers,
        }
    )


def _minimal_loop(cohort, config, device, compile_model: bool = False) -> list[float]:
    """Seconds of each epoch of the shortest loop over the Trainer's own data and model."""
    import numpy as np
    import torch

    from sepclr_med.data import BatchViews, GroupStratifiedBatchSampler, batches, cached_dataset
    from sepclr_med.losses import SepCLRLoss, SepCLRObjective
    from sepclr_med.models import SepCLRModel

    pre = config.preprocess.resolve(cohort.table["image"].tolist(), cohort.table["image"][~cohort.is_target].tolist())
    store = cached_dataset(cohort.records(), pre, num_workers=config.num_workers)
    store.place(device)
    views = BatchViews(config.augment, pre.output_shape, seed=0)
    sampler = GroupStratifiedBatchSampler(cohort.is_target, config.optim.batch_size, seed=0)
    labels = torch.tensor(np.asarray(cohort.is_target, dtype=bool))
    model = SepCLRModel(config.model).to(device).to(memory_format=torch.channels_last_3d)
    if compile_model:  # torch.compile: its first epoch holds the compilation; later epochs show the gain
        model = torch.compile(model)
    loss = SepCLRLoss(config.loss.beta_salient, config.loss.beta_infoless, config.loss.lambda_jem)
    objective = SepCLRObjective(loss, config.loss.lambda_independence)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    amp = config.amp and device.type == "cuda"
    seconds = []
    for epoch in range(config.optim.epochs):
        sampler.set_epoch(epoch)
        tic = time.perf_counter()
        for indices, volumes in batches(store, sampler, device):
            first, second = views(volumes, indices, epoch)
            x = torch.cat([first, second]).contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False):
                out = model(x, n_views=2)
            total, _ = objective(out, labels[indices])
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - tic)
    return seconds


def _fraction(parts: list[float], totals: list[float]) -> float:
    return round(statistics.median(p / t for p, t in zip(parts, totals, strict=True)), 4)


def measure_one(args) -> dict:
    """Both loops for one voxel size and backbone (run in its own process)."""
    import torch

    from sepclr_med.io.reading import read_cohort
    from sepclr_med.training.loop import train

    voxel_size, backbone = float(args.one[0]), args.one[1]
    cohort = read_cohort(_cohort(Path(args.cache), args.subjects, args.seed))
    config = _config(args, voxel_size, backbone)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    if args.loop == "minimal":
        seconds = _minimal_loop(cohort, config, device, args.compile)
        waits = augments = [0.0] * len(seconds)
        shape = None
    else:
        from sepclr_med.training import TrainConfig

        with tempfile.TemporaryDirectory() as out:
            run = Path(out) / "run"
            train(cohort, run, config)
            metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            shape = list(TrainConfig.load_run(run).preprocess.output_shape)
        seconds = [m["epoch_seconds"] for m in metrics]
        waits = [m["data_seconds"] for m in metrics]
        augments = [m["augment_seconds"] for m in metrics]
    later = slice(1, None) if len(seconds) > 1 else slice(None)
    epoch = statistics.median(seconds[later])
    n = len(cohort)
    return {
        "loop": args.loop + ("+compile" if args.compile and args.loop == "minimal" else ""),
        "voxel_size": voxel_size,
        "backbone": backbone,
        "device": args.device,
        "amp": bool(args.amp and args.device == "cuda"),
        "subjects": n,
        "grid": shape,
        "epoch_seconds": round(epoch, 3),
        "subjects_per_second": round(n / epoch, 2),
        "data_wait_fraction": _fraction(waits[later], seconds[later]),
        "augment_fraction": _fraction(augments[later], seconds[later]),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxel-sizes", default="4,2,1.5")
    parser.add_argument("--backbones", default="small,resnet10")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="threads filling the cache (not timed)")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "sepclr_throughput_cohort"))
    parser.add_argument("--json", default=None, help="append the rows to this JSON-lines file")
    parser.add_argument("--compile", action="store_true", help="also time the minimal loop under torch.compile")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="train", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args)))
        return
    _cohort(Path(args.cache), args.subjects, args.seed)
    header = (
        f"{'voxel':>5} {'backbone':>9} {'loop':>8} {'grid':>14} {'subj/s':>8} {'data wait':>9} {'views':>6} "
        f"{'ratio':>6} {'RSS MiB':>8} {'GPU MiB':>8}"
    )
    print(header)
    passthrough = [a for a in sys.argv[1:] if a not in ("--one",)]
    for voxel in args.voxel_sizes.split(","):
        for backbone in args.backbones.split(","):
            rows = {}
            for loop in ("train", "minimal", *(["compiled"] if args.compile else [])):
                flags = ["--loop", "minimal"] if loop == "compiled" else ["--loop", loop]
                passed = [a for a in passthrough if a != "--compile" or loop == "compiled"]
                command = [sys.executable, __file__, *passed, "--one", voxel, backbone, *flags]
                result = subprocess.run(command, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    sys.exit(f"{voxel} mm {backbone} {loop}: failed\n{result.stderr[-3000:]}")
                rows[loop] = json.loads(result.stdout.strip().splitlines()[-1])
            for loop in rows:
                rows[loop]["grid"] = rows["train"]["grid"]
            for loop, row in rows.items():
                ratio = row["epoch_seconds"] / rows["minimal"]["epoch_seconds"]
                row["epoch_over_minimal"] = round(ratio, 3)
                grid = "x".join(map(str, row["grid"] or []))
                gpu = "" if row["peak_gpu_mib"] is None else f"{row['peak_gpu_mib']:.0f}"
                print(
                    f"{voxel:>5} {backbone:>9} {loop:>8} {grid:>14} {row['subjects_per_second']:>8.2f} "
                    f"{row['data_wait_fraction']:>9.1%} {row['augment_fraction']:>6.1%} "
                    f"{ratio:>6.2f} "
                    f"{row['peak_rss_mib']:>8.0f} {gpu:>8}",
                    flush=True,
                )
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
