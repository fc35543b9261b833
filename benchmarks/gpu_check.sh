#!/usr/bin/env bash
# One command on a CUDA host (issue 16), under 5 minutes on one H200:
#   bash benchmarks/gpu_check.sh [OUT]            (OUT defaults to ${OUT:-/tmp}/gpu_check)
# 1. installs sepclr-med over the host's own torch and libraries (a device host may reach no
#    package index: then the dependencies must already be there; it stops and says so otherwise);
# 2. checks CUDA training: 2 epochs at 1.5 mm (a 2 mm simulated cohort of 64 resampled onto the
#    1.5 mm grid, cropped to the brain), resnet10, bf16 autocast, memory cache on the GPU;
# 3. the throughput table beside a minimal loop (subjects/s, data wait, peak GPU memory);
# 4. explain on 32 subjects on the GPU, fp32 and bf16, the maps compared.
# Everything it measures lands in OUT (gpu_check.txt, throughput.jsonl, bf16_maps.json, logs).
# A smoke run of the script itself on a CPU: DEVICE=cpu VOXEL=4 N=16 EXPLAIN_N=8 bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-/tmp}/gpu_check}"
mkdir -p "$OUT_DIR"
exec > >(tee "$OUT_DIR/gpu_check.txt") 2>&1
stamp() { echo "[$(date +%T)] $*"; }
DEVICE="${DEVICE:-cuda}"; VOXEL="${VOXEL:-1.5}"; N="${N:-64}"; EXPLAIN_N="${EXPLAIN_N:-32}"
AMP=$([ "$DEVICE" = cuda ] && echo true || echo false)

stamp "host: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo 'no nvidia-smi')"
if ! python -c "import torch, monai, nilearn, captum" 2>/dev/null; then
    python -m pip install -q "torch==2.13.0" -e . || echo "could not install the dependencies"
fi
python -m pip install -q --no-deps --no-build-isolation -e . \
    || { echo "sepclr-med could not be installed over this host's packages"; exit 1; }
SEPCLR=(python -m sepclr_med.cli.main)
DEVICE="$DEVICE" python - <<'EOF'
import os, torch
assert os.environ["DEVICE"] != "cuda" or torch.cuda.is_available(), "no CUDA device visible to torch"
cuda = torch.cuda.is_available()
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if cuda else "no device",
      "bf16", cuda and torch.cuda.is_bf16_supported())
EOF

COHORT="$OUT_DIR/cohort"
stamp "simulate $N subjects (2 mm)"
[ -f "$COHORT/cohort.csv" ] || "${SEPCLR[@]}" simulate --out "$COHORT" --n-controls $((N / 2)) --n-patients $((N / 2)) \
    --voxel-size 2 >/dev/null

stamp "train: 2 epochs, $VOXEL mm, resnet10, bf16 autocast: $AMP"
cat > "$OUT_DIR/train.toml" <<EOF
[optim]
epochs = 2
batch_size = 32
[model]
backbone = "resnet10"
[preprocess]
voxel_size = $VOXEL
[train]
device = "$DEVICE"
amp = $AMP
num_workers = 8
EOF
rm -rf "$OUT_DIR/run"
"${SEPCLR[@]}" train --cohort "$COHORT/cohort.csv" --out "$OUT_DIR/run" --config "$OUT_DIR/train.toml" | tail -4
python - "$OUT_DIR/run" <<'EOF'
import json, sys
from pathlib import Path
rows = [json.loads(l) for l in Path(sys.argv[1], "metrics.jsonl").read_text().splitlines()]
for m in rows:
    print(f"epoch {m['epoch']}: {m['volumes_per_second']:.1f} subjects/s, data wait "
          f"{m['data_seconds'] / m['epoch_seconds']:.1%}, views {m['augment_seconds'] / m['epoch_seconds']:.1%}, "
          f"loss {m['train_loss']:.3f}")
EOF

stamp "throughput beside a minimal loop ($VOXEL mm, resnet10 and small, bf16; torch.compile too)"
python benchmarks/throughput.py --device "$DEVICE" $([ "$AMP" = true ] && echo --amp) --voxel-sizes "$VOXEL" \
    --backbones resnet10,small --workers 8 --subjects "$N" --batch-size 32 --epochs 3 --compile \
    --cache "$COHORT" --json "$OUT_DIR/throughput.jsonl"

stamp "explain $EXPLAIN_N subjects on $DEVICE: fp32, then bf16"
head -n $((EXPLAIN_N + 1)) "$COHORT/cohort.csv" > "$COHORT/explain.csv"  # beside the images (relative paths), mixed groups
for precision in float32 bfloat16; do
    rm -rf "$OUT_DIR/explain_$precision"
    /usr/bin/time -f "explain $precision: %e s wall" "${SEPCLR[@]}" explain --run "$OUT_DIR/run" \
        --cohort "$COHORT/explain.csv" --out "$OUT_DIR/explain_$precision" --device "$DEVICE" \
        --precision "$precision" | tail -2
done
python benchmarks/compare_maps.py "$OUT_DIR/explain_float32" "$OUT_DIR/explain_bfloat16" | tee "$OUT_DIR/bf16_maps.json"
stamp "done"
