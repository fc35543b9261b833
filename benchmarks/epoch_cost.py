"""Side-by-side epoch cost of two checkouts: run once per checkout (PYTHONPATH=CHECKOUT), started together.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/epoch_cost.py COHORT.csv /tmp/cost_new new

Trains 4 epochs of the default config on CPU; prints train() wall time and each epoch's seconds.
"""

import json
import shutil
import sys
import time
from pathlib import Path

from sepclr_med.io.reading import read_cohort
from sepclr_med.training import TrainConfig
from sepclr_med.training.loop import train

out = sys.argv[2]
shutil.rmtree(out, ignore_errors=True)
tic = time.perf_counter()
train(read_cohort(sys.argv[1]), out, TrainConfig().override(**{"optim.epochs": 4, "device": "cpu"}))
wall = time.perf_counter() - tic
m = [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines() if line.strip()]
print(sys.argv[3], "wall", round(wall, 1), "epochs", [round(x["epoch_seconds"], 2) for x in m])
