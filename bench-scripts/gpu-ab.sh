#!/usr/bin/env bash
# The open GPU questions in one time-boxed device call, most informative first:
#  1. gpu-check --quick (every kernel against the CPU; both Q6_K/Q8_0 layouts bit for bit);
#  2. the mat-vec prefetch variants (MMV_PF in cuda/mmvq.cu) at the 27B FFN shapes, k = 1/2/4/8;
#  3. gpu-model-check (tiny models: GPU forward vs CPU, speculation on == off, the MTP
#     catch-up form without logits) with the row-split layout on everywhere;
#  4. kernel-bench, 16 threads, Q4_K and Q6_K (the Q4_K 3-line prefetch on a 16-core host);
#  5. the synthetic 27B Q4_K_M fully on the GPU with the default layout (wide Q6_K row-split)
#     and with it off (HYBRID_GPU_ROW_SPLIT=0);
#  6. spec-bench on the 16 GiB split (T(k)/T(1), simulated acceptance with adaptive rows);
#  7. the CLI's default speculation against --draft-n 0 on the full-GPU 27B;
#  8. (MMV_ROUNDS > 0) Q6_K/Q8_0 row-split on/off mat-vec rounds (measured in session 13).
# Prebuilt binaries in $BIN_DIR (default .dev-carry/gpu). Logs in $OUT (default /tmp/gpu-ab):
# summary.txt and logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench-scripts/cuda-libs.sh  # cuBLAS on hosts that keep it in a Python venv
BIN=${BIN_DIR:-.dev-carry/gpu}
OUT=${OUT:-/tmp/gpu-ab}
BUDGET=${BUDGET:-560}
W=$(mktemp -d)
mkdir -p "$OUT"
S="$OUT/summary.txt"
M=/tmp/27b-q4km.gguf  # the synthetic 27B Q4_K_M (step 5 writes it)
left() { [ $((BUDGET - SECONDS)) -gt "$1" ]; }
step() { echo "== $* (t = ${SECONDS} s)" | tee -a "$S"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$S"
lscpu | grep -E "Model name|^CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|MHz" | tee -a "$S"

step "1. gpu-check --quick"
timeout 200 "$BIN/gpu-check" --quick > "$W/gpu-check.log" 2>&1
echo "rc=$? $(tail -1 "$W/gpu-check.log")" | tee -a "$S"
grep -E "FAIL|row-split" "$W/gpu-check.log" | head -20 | tee -a "$S"

if left 300; then
  # Software prefetch of the next step's weights (MMV_PF in cuda/mmvq.cu; bit-identical
  # results, so only speed is compared): off, into L2 for k >= 2, into L2 for every k, into L1
  # for k >= 2, then off again.
  step "2. mat-vec prefetch variants (MMV_PF)"
  OUT="$W/pf" GPU_CHECK_BIN="$BIN/gpu-check" timeout 200 bash bench-scripts/mmv-variants.sh Q4_K,Q6_K,Q5_K,Q8_0 \
    base pf1:MMV_PF=1 pf1all:MMV_PF=1,MMV_PF_MIN_K=1 pf2:MMV_PF=2 base2@cuda/mmvq.cu 2>&1 | tee -a "$S"
fi

if left 240; then
  step "3. gpu-model-check with the row-split layout (tiny models: GPU forward vs CPU, speculation on == off)"
  HYBRID_GPU_ROW_SPLIT=1 timeout 180 "$BIN/gpu-model-check" > "$W/model-check.log" 2>&1
  echo "rc=$? $(grep -v INFO "$W/model-check.log" | tail -1)" | tee -a "$S"
  grep -E "FAIL" "$W/model-check.log" | head -10 | tee -a "$S"
fi

if left 330; then
  step "4. kernel-bench --threads $(nproc) (Q4_K, Q6_K; k = 1, 4)"
  timeout 120 "$BIN/kernel-bench" --threads "$(nproc)" --reps 3 --types Q4_K,Q6_K --ks 1,4 > "$W/kernel-bench.md" 2>&1
  grep -E "sequential|single-thread|worst|compute-bound at" "$W/kernel-bench.md" | tee -a "$S"
fi
if left 200; then
  step "5. synthetic 27B Q4_K_M, full GPU, row-split default (wide Q6_K) / off"
  timeout 120 "$BIN/hybrid-run" synth --preset 27b --quant q4_k_m -o "$M" > "$W/synth.log" 2>&1
  for s in default 0; do
    left 60 || break
    e=(); [ "$s" = 0 ] && e=(HYBRID_GPU_ROW_SPLIT=0)
    env "${e[@]}" timeout $((BUDGET - SECONDS - 20)) "$BIN/gpu-model-check" --ctx-bench "$M" \
      > "$W/ctx-split$s.log" 2>&1
    echo "-- HYBRID_GPU_ROW_SPLIT=$s" | tee -a "$S"
    grep -v INFO "$W/ctx-split$s.log" | grep -E "^\||roofline|t/s" | head -12 | tee -a "$S"
  done
fi
if left 150 && [ -f "$M" ]; then
  # The default layout, the planner's 16 GiB split of earlier runs (45 GPU FFN layers):
  # T(k)/T(1) and simulated acceptance, each rate with an adaptive row (at most 6 drafts)
  # next to the fixed N.
  step "6. spec-bench, 16 GiB split (45 GPU FFN layers), 128 tokens"
  timeout $((BUDGET - SECONDS - 10)) "$BIN/gpu-model-check" --spec-bench "$M" --spec-gpu-ffn 45 --spec-n 128 \
    --threads "$(nproc)" > "$W/spec-45.log" 2>&1
  grep -v INFO "$W/spec-45.log" | grep -E "^\| [0-9]|within|MTP off|profile" | tee -a "$S"
fi
if left 70 && [ -f "$M" ]; then
  # The CLI's default speculation (adaptive MTP, at most 3) on the random-weight MTP head,
  # whose drafts are never kept, against --draft-n 0: what the default costs when drafting
  # does not pay (the catch-up is deferred and skips the MTP LM head).
  step "7. CLI full GPU, default speculation vs --draft-n 0, 64 tokens"
  for dn in default 0; do
    a=(); [ "$dn" = 0 ] && a=(--draft-n 0)
    timeout 40 "$BIN/hybrid-run" -m "$M" --gpu-layers all -p "The capital of France is" -n 64 "${a[@]}" \
      --stats-json "$W/cli-$dn.json" > "$W/cli-$dn.log" 2>&1
    echo "-- draft-n $dn rc=$? $(grep -oE '"(decode_tps|catchup_ms|drafted)": [0-9.]+' "$W/cli-$dn.json" 2>/dev/null | tr '\n' ' ')" | tee -a "$S"
  done
fi
if [ "${MMV_ROUNDS:-0}" -gt 0 ] && left 60; then
  step "8. mat-vec, 27B FFN shapes, row-split on / off ($MMV_ROUNDS rounds)"
  for i in $(seq 1 "$MMV_ROUNDS"); do
    for s in 1 0; do
      HYBRID_GPU_ROW_SPLIT=$s timeout 90 "$BIN/gpu-check" --bench --bench-only --bench-types Q6_K,Q8_0 \
        > "$W/mmv-split$s-$i.log" 2>&1
      echo "-- HYBRID_GPU_ROW_SPLIT=$s run $i" | tee -a "$S"
      grep -E "^bench: (device|Q)" "$W/mmv-split$s-$i.log" | tee -a "$S"
    done
  done
fi
step "done"
tar czf "$OUT/logs.tgz" -C "$W" . 2>/dev/null
