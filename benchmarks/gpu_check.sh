#!/usr/bin/env bash
# One command on a CUDA host (issue 16), under 5 minutes on one H200:
#   bash benchmarks/gpu_check.sh [OUT]            (OUT defaults to ${OUT:-/tmp}/gpu_check)
# 1. installs sepclr-med (torch as the host provides it, else the pinned CUDA build);
# 2. checks CUDA training: 2 epochs at 1.5 mm (a 2 mm simulated cohort of 64 resampled onto the
#    1.5 mm grid, cropped to the brain), resnet10, bf16 autocast, memory cache on the GPU;
# 3. the throughput table beside a minimal loop (subjects/s, data wait, peak GPU memory);
# 4. explain on 32 subjects on the GPU, fp32 and bf16, the maps compared.
# Everything it measures lands in OUT (gpu_check.txt, throughput.jsonl, bf16_maps.json, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-/tmp}/gpu_check}"
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.txt") 2>&1
stamp() { echo "[$(date +%T)] $*"; }

stamp "host: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo 'no nvidia-smi')"
if ! python -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e . 2>&1 | tail -1 || true
python - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0),
      "bf16", torch.cuda.is_bf16_supported())
EOF

COHORT="$OUT_DIR/cohort"
stamp "simulate 64 subjects (2 mm)"
[ -f "$COHORT/cohort.csv" ] || sepclr-med simulate --out "$COHORT" --n-controls 32 --n-patients 32 --resolution 2 >/dev/null

stamp "train: 2 epochs, 1.5 mm, resnet10, bf16"
cat > "$OUT_DIR/train.toml" <<'EOF'
[optim]
epochs = 2
batch_size = 32
[model]
backbone = "resnet10"
[preprocess]
voxel_size = 1.5
[train]
device = "cuda"
amp = true
EOF
rm -rf "$OUT_DIR/run"
sepclr-med train --cohort "$COHORT/cohort.csv" --out "$OUT_DIR/run" --config "$OUT_DIR/train.toml" | tail -4
python - "$OUT_DIR/run" <<'EOF'
import json, sys
from pathlib import Path
rows = [json.loads(l) for l in Path(sys.argv[1], "metrics.jsonl").read_text().splitlines()]
for m in rows:
    print(f"epoch {m['epoch']}: {m['volumes_per_second']:.1f} subjects/s, data wait "
          f"{m['data_seconds'] / m['epoch_seconds']:.1%}, views {m['augment_seconds'] / m['epoch_seconds']:.1%}, "
          f"loss {m['train_loss']:.3f}")
EOF

stamp "throughput beside a minimal loop (1.5 mm and 2 mm, resnet10 and small, bf16)"
python benchmarks/throughput.py --device cuda --amp --voxel-sizes 1.5,2 --backbones resnet10,small \
    --subjects 64 --batch-size 32 --epochs 3 --cache "$COHORT" --json "$OUT_DIR/throughput.jsonl"

stamp "explain 32 subjects on the GPU: fp32, then bf16"
head -n 33 "$COHORT/cohort.csv" > "$COHORT/explain32.csv"  # beside the images (relative paths), mixed groups
for precision in float32 bfloat16; do
    rm -rf "$OUT_DIR/explain_$precision"
    /usr/bin/time -f "explain $precision: %e s wall" sepclr-med explain --run "$OUT_DIR/run" \
        --cohort "$COHORT/explain32.csv" --out "$OUT_DIR/explain_$precision" --device cuda \
        --precision "$precision" | tail -2
done
python benchmarks/compare_maps.py "$OUT_DIR/explain_float32" "$OUT_DIR/explain_bfloat16" | tee "$OUT_DIR/bf16_maps.json"
stamp "done"
