"""Batched saliency (sepclr-med) against MONAI's one-volume-at-a-time VanillaGrad.

    python benchmarks/saliency_speed.py --run RUN --cohort COHORT.csv [--n 32]

Same model, same subjects, same quantity (gradient of <u, s_rep(x)> along each subject's own
deviation direction). Prints maps per second for: MONAI VanillaGrad (one volume per call),
sepclr-med plain gradients (batched), sepclr-med integrated gradients (24 steps, batched) and
expected gradients (24 samples, the default of `explain`), and checks that the two gradient maps
agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


class _ProjectionNet(torch.nn.Module):
    """MONAI's saliency classes explain ``model(x)[:, index]``: expose the projection as output 0."""

    def __init__(self, model, direction: torch.Tensor) -> None:
        super().__init__()
        self.encoder = model.salient_encoder
        self.direction = direction

    def forward(self, x):
        return (self.encoder(x) * self.direction).sum(dim=1, keepdim=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--cohort", required=True)
    parser.add_argument("--n", type=int, default=32, help="patients to explain")
    args = parser.parse_args()

    from monai.visualize import VanillaGrad

    from sepclr_med.data import cached_dataset
    from sepclr_med.explain.saliency import attribute
    from sepclr_med.io.reading import read_cohort
    from sepclr_med.run import Run

    run = Run(args.run)
    model = run.load_model("cpu")
    cohort = read_cohort(args.cohort)
    patients = cohort.subset(cohort.is_target).subset(np.arange(int(cohort.is_target.sum())) < args.n)
    controls = cohort.subset(~cohort.is_target)
    pre = run.config.preprocess
    load = lambda c: torch.stack([d["image"] for d in cached_dataset(c.records(), pre, cache="none")])  # noqa: E731
    volumes, references = load(patients), load(controls)
    baseline = references.mean(dim=0)
    with torch.no_grad():
        s, s0 = model.salient_encoder(volumes), model.salient_encoder(references).mean(dim=0)
    u = torch.nn.functional.normalize(s - s0, dim=1)

    tic = time.perf_counter()
    monai_maps = []
    for i in range(len(volumes)):
        saliency = VanillaGrad(_ProjectionNet(model, u[i : i + 1]))
        monai_maps.append(saliency(volumes[i : i + 1], index=0)[0, 0].detach().numpy())
    monai_rate = len(volumes) / (time.perf_counter() - tic)

    tic = time.perf_counter()
    grad = attribute(model, volumes, u.numpy(), baseline, method="grad", batch_size=16)
    grad_rate = len(volumes) / (time.perf_counter() - tic)
    tic = time.perf_counter()
    attribute(model, volumes, u.numpy(), baseline, method="ig", n_steps=24, batch_size=8)
    ig_rate = len(volumes) / (time.perf_counter() - tic)
    tic = time.perf_counter()
    attribute(model, volumes, u.numpy(), references, method="eg", n_steps=24)
    eg_rate = len(volumes) / (time.perf_counter() - tic)

    agree = np.corrcoef(np.stack(monai_maps).ravel(), grad.ravel())[0, 1]
    print(f"subjects: {len(volumes)}, volume {tuple(volumes.shape[2:])}, torch threads {torch.get_num_threads()}")
    print(f"MONAI VanillaGrad, one volume per call: {monai_rate:.1f} maps/s")
    print(f"sepclr-med gradients, batched (16):      {grad_rate:.1f} maps/s ({grad_rate / monai_rate:.1f}x)")
    print(f"sepclr-med integrated gradients, 24 steps, batched: {ig_rate:.1f} maps/s")
    print(f"sepclr-med expected gradients, 24 samples, batched: {eg_rate:.1f} maps/s")
    print(f"correlation of the two gradient maps: {agree:.6f}")


if __name__ == "__main__":
    main()
