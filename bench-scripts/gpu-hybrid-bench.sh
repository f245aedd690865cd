#!/usr/bin/env bash
# Hybrid-split checks and benchmarks on the GPU host (issues #6, #7, #8). No Rust there: runs
# prebuilt, stripped binaries from $BIN_DIR (default .dev-carry/gpu: hybrid-run, gpu-check,
# gpu-model-check, built here with `cargo build --release` and `strip -o`).
#   1. gpu-model-check --prefill-only on the tiny synthetic models: the GEMM prefill path vs
#      the f32 reference, and the streamed hybrid prefill == the full-GPU GEMM path bit for bit;
#   2. writes the synthetic 27B Q4_K_M (/tmp/27b.gguf, reused when present);
#   3. split-bench: the planner's split under --vram-budget 16 GiB with -c 32768, measured
#      device memory, prefill pp512/pp2048 with weight streaming, decode vs the roofline from
#      the copy bandwidth, host read bandwidth and activation round trip measured in the run;
#   4. prefill-bench on the 18-layer split (llama.cpp's ANCHORS split): streamed vs CPU FFN;
#   5. ctx-bench: the whole model on the GPU, decode at 0 / 8K / 32K context;
#   6. spec-bench on the 16 GiB split: T(k)/T(1), k = 1..6, and simulated acceptance;
#   7. unless SKIP_SANITIZER=1: compute-sanitizer memcheck over gpu-check --quick and over
#      gpu-model-check --prefill-only on the tiny models.
# STEPS="1 2 3 ..." picks steps. Logs go to $OUT (default /tmp/gpu-hybrid-bench).
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/cuda-libs.sh"  # cuBLAS on hosts that keep it in a Python venv
BIN=${BIN_DIR:-.dev-carry/gpu}
OUT=${OUT:-/tmp/gpu-hybrid-bench}
T=${THREADS:-$(nproc)}
STEPS=${STEPS:-"1 2 3 4 5 6 7"}
M=/tmp/27b.gguf
mkdir -p "$OUT"
status=0
want() { [[ " $STEPS " == *" $1 "* ]]; }
step() { echo "== $* ($(date -u +%T))"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/device.txt"
echo "threads: $T"

if want 1; then
  step "1. prefill checks (tiny models, streaming bit-identity)"
  "$BIN/gpu-model-check" --prefill-only --no-spec --threads "$T" > "$OUT/prefill-check.log" 2>&1 || status=1
  grep -vE "INFO| ok$" "$OUT/prefill-check.log" | tail -25
fi
if want 2 && [ ! -s "$M" ]; then
  step "2. synthetic 27B Q4_K_M"
  "$BIN/hybrid-run" synth --preset 27b --quant q4_k_m -o "$M" > "$OUT/synth.log" 2>&1 || status=1
  ls -la "$M"
fi
if want 3; then
  step "3. split-bench: 16 GiB budget, -c 32768"
  # NVML's view of the device memory, sampled every 100 ms, next to the binary's own readings.
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/nvml-split.csv" 2>/dev/null &
  smi=$!
  timeout 300 "$BIN/gpu-model-check" --split-bench "$M" --vram-budget-gib 16 --split-ctx 32768 --threads "$T" \
    2>&1 | grep -v INFO | tee "$OUT/split.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  kill $smi 2>/dev/null
  echo "NVML peak memory.used during split-bench: $(sort -n "$OUT/nvml-split.csv" | tail -1) MiB"
fi
NGPU=$(grep -oE "dense FFN of [0-9]+ of" "$OUT/split.log" 2>/dev/null | head -1 | grep -oE "[0-9]+" | head -1)
NGPU=${NGPU:-45}
if want 4; then
  step "4. prefill-bench, 18 GPU FFN layers (streamed vs CPU FFN)"
  timeout 240 "$BIN/gpu-model-check" --prefill-bench "$M" --prefill-gpu-ffn 18 --threads "$T" \
    2>&1 | grep -v INFO | tee "$OUT/prefill-18.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if want 5; then
  step "5. ctx-bench (whole model on the GPU)"
  timeout 240 "$BIN/gpu-model-check" --ctx-bench "$M" 2>&1 | grep -v INFO | tee "$OUT/ctx.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if want 6; then
  step "6. spec-bench on the 16 GiB split ($NGPU GPU FFN layers)"
  timeout 300 "$BIN/gpu-model-check" --spec-bench "$M" --spec-gpu-ffn "$NGPU" --spec-n 64 --threads "$T" \
    2>&1 | grep -v INFO | tee "$OUT/spec-$NGPU.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
if want 7 && [ "${SKIP_SANITIZER:-0}" != 1 ]; then
  step "7. compute-sanitizer memcheck"
  CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  if [ -z "$CS" ]; then
    echo "compute-sanitizer not found"
  else
    timeout ${SAN_TIMEOUT:-200} "$CS" --tool memcheck --leak-check no "$BIN/gpu-check" --quick > "$OUT/memcheck-gpu-check.log" 2>&1
    echo "gpu-check under memcheck: rc=$? $(grep -E "ERROR SUMMARY" "$OUT/memcheck-gpu-check.log" | tail -1)"
    timeout ${SAN_TIMEOUT:-200} "$CS" --tool memcheck --leak-check no "$BIN/gpu-model-check" --prefill-only --no-spec --threads "$T" > "$OUT/memcheck-model.log" 2>&1
    echo "gpu-model-check --prefill-only under memcheck: rc=$? $(grep -E "ERROR SUMMARY" "$OUT/memcheck-model.log" | tail -1)"
  fi
fi
echo "gpu-hybrid-bench: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
