#!/usr/bin/env bash
# Everything the open issues measure on the GPU host, in one device call (machines are scarce:
# one start costs 1-3 minutes of a 30-minute budget, so batch). No Rust there: prebuilt,
# stripped binaries in $BIN_DIR (default .dev-carry/gpu: hybrid-run, gpu-check,
# gpu-model-check, kernel-bench; `cargo build --release --bins`, then `strip -o`).
#   1. kernel-bench, 16 threads, while the GPU is idle (issue #3's 16-core table);
#   2. gpu-check --quick (kernel checks, every k against k = 1 bit for bit; issue #6);
#   3. mat-vec at the 27B FFN shapes, every quantized type (gpu-check --bench; issue #6);
#   4. gpu-hybrid-bench.sh steps 2 3 5 6: the synthetic 27B, the 16 GiB split (#7), full-GPU
#      decode at 0 / 8K / 32K (#6), speculation on the split (#8).
# Each step starts only while $BUDGET seconds (default 540) are not used up, so a call with
# `timeout_s` 600 always returns its logs. Logs: $OUT (default /tmp/device-all), with
# summary.txt and every log packed into logs.tgz (the device tool returns at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN_DIR:-.dev-carry/gpu}
OUT=${OUT:-/tmp/device-all}
BUDGET=${BUDGET:-540}
W=$(mktemp -d)
mkdir -p "$OUT"
S="$OUT/summary.txt"
left() { [ $((BUDGET - SECONDS)) -gt "$1" ]; }
step() { echo "== $* (t = ${SECONDS} s)" | tee -a "$S"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$S"
lscpu | grep -E "Model name|^CPU\(s\)" | tee -a "$S"

if left 480; then
  step "1. kernel-bench --threads $(nproc)"
  timeout 120 "$BIN/kernel-bench" --threads "$(nproc)" --reps 5 > "$W/kernel-bench.md" 2>&1
  grep -E "sequential|single-thread|worst" "$W/kernel-bench.md" | tee -a "$S"
fi
if left 420; then
  step "2. gpu-check --quick"
  timeout 150 "$BIN/gpu-check" --quick > "$W/gpu-check.log" 2>&1
  echo "rc=$? $(tail -1 "$W/gpu-check.log")" | tee -a "$S"
  grep -E "FAIL" "$W/gpu-check.log" | head -10 | tee -a "$S"
fi
if left 360; then
  step "3. mat-vec at the 27B FFN shapes"
  timeout 90 "$BIN/gpu-check" --bench --bench-only --bench-types Q4_K,Q5_K,Q6_K,Q8_0 > "$W/mmv.log" 2>&1
  grep -E "^bench: (device|Q)" "$W/mmv.log" | tee -a "$S"
fi
if left 240; then
  step "4. 27B: 16 GiB split, full-GPU context depths, speculation"
  OUT="$W/hybrid" STEPS="2 3 5 6" SKIP_SANITIZER=1 BIN_DIR="$BIN" \
    timeout $((BUDGET - SECONDS)) bash bench-scripts/gpu-hybrid-bench.sh > "$W/hybrid.log" 2>&1
  grep -E "decode tg64 after|roofline with|peak device|pp512|pp2048|^\| (0|8192|32768) \||T\(4\)/T\(1\) within|^\| 4 \||MTP off|^\| 0.84" \
    "$W/hybrid.log" | tee -a "$S"
fi
step "done"
tar czf "$OUT/logs.tgz" -C "$W" . 2>/dev/null
