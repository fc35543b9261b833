#!/usr/bin/env bash
# `sepclr-med train --epochs 3` alone and beside a busy process, with the command line's own
# thread settings (passive OpenMP waiting, one thread per available core) and, for comparison,
# with OpenMP's active waiting (issue 16: 101-123 s against 21-22 s on a shared 2-core machine).
#   bash benchmarks/shared_cores.sh COHORT.csv [REPEATS]
# Prints each wall time and the median slowdown beside the busy process.
set -euo pipefail
COHORT="$1"; REPEATS="${2:-2}"; WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"; [ -n "${BUSY:-}" ] && kill "$BUSY" 2>/dev/null || true' EXIT
run() {  # label, extra env: prints the wall seconds
    local start end label="$1"; shift
    rm -rf "$WORK/run"
    start=$(date +%s.%N)
    env "$@" sepclr-med train --cohort "$COHORT" --out "$WORK/run" --epochs 3 --device cpu >/dev/null
    end=$(date +%s.%N)
    echo "$label $(echo "$end - $start" | bc)"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for policy in default ACTIVE; do
    if [ "$policy" = default ]; then settings=(-u OMP_WAIT_POLICY -u OMP_NUM_THREADS); else
        settings=(-u OMP_NUM_THREADS OMP_WAIT_POLICY=ACTIVE); fi
    alone=(); busy=()
    for _ in $(seq "$REPEATS"); do
        alone+=("$(run "alone/$policy" "${settings[@]}" | tee /dev/stderr | cut -d' ' -f2)")
        python3 -c "while True: pass" & BUSY=$!
        busy+=("$(run "busy/$policy" "${settings[@]}" | tee /dev/stderr | cut -d' ' -f2)")
        kill "$BUSY"; BUSY=""
    done
    a=$(printf '%s\n' "${alone[@]}" | median); b=$(printf '%s\n' "${busy[@]}" | median)
    echo "threads $policy: alone ${a} s, beside a busy process ${b} s, slowdown $(echo "scale=2; $b / $a" | bc)x"
done
