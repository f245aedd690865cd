#!/usr/bin/env bash
# Checks, then A/B timings of the decode-path launch changes on the GPU host (no Rust there:
# runs the prebuilt, stripped binaries in $BIN_DIR, default .dev-carry/gpu):
#   1. gpu-check: kernel checks, cold NVRTC cache ($CHECK_ARGS, e.g. --quick);
#   2. gpu-model-check: GPU vs CPU forward, graphs vs eager, speculation on == off
#      (SKIP_MODEL=1 skips it);
#   3. mat-vec at the 27B FFN shapes (gpu-check --bench) for each variant in $VARIANTS
#      (NAME or NAME+ENV=VAL; default: base and the split form off);
#   4. the synthetic 27B Q4_K_M fully on the GPU, decode at depth 0 (ctx-bench, with its
#      kernel profile), each variant in turn, then the first again;
#   5. with SPLIT_VARIANTS set, the 16 GiB split (split-bench, -c 32768) for each of those.
# Logs go to $OUT (or /tmp/gpu-decode-ab). Exit status 1 if a check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench-scripts/cuda-libs.sh
BIN=${BIN_DIR:-.dev-carry/gpu}
OUT=${OUT:-/tmp/gpu-decode-ab}
mkdir -p "$OUT"
status=0
HYBRID_RUN_CACHE=$(mktemp -d)
export HYBRID_RUN_CACHE
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$OUT/device.txt"
t00=$(date +%s)
el() { echo "[$(( $(date +%s) - t00 )) s]"; }

echo "== 1. gpu-check $(el)"
timeout 240 "$BIN/gpu-check" ${CHECK_ARGS:-} > "$OUT/gpu-check.log" 2>&1 || status=1
grep -v ' ok$' "$OUT/gpu-check.log" | tail -6

if [ "${SKIP_MODEL:-0}" != 1 ]; then
    echo "== 2. gpu-model-check $(el)"
    timeout 300 "$BIN/gpu-model-check" > "$OUT/model-check.log" 2>&1 || status=1
    grep -v "INFO\| ok$" "$OUT/model-check.log" | tail -8
fi

# Variants: NAME or NAME+ENV=VAL[+ENV=VAL...] (environment for the binaries), from $VARIANTS.
VARIANTS=${VARIANTS:-"base nosplit+HYBRID_MMV_SPLIT=0"}
echo "== 3. mat-vec at the 27B FFN shapes $(el)"
mkdir -p "$OUT/mmv"
for v in $VARIANTS; do
    name=${v%%+*}; envset=(HYBRID_X=1); [ "$v" != "$name" ] && IFS=+ read -ra envset <<< "${v#*+}"
    env "${envset[@]}" timeout 100 "$BIN/gpu-check" --bench --bench-only --bench-types "${MMV_TYPES:-Q4_K,Q6_K}" \
        > "$OUT/mmv/$name.log" 2>&1
    grep -E "^bench: Q" "$OUT/mmv/$name.log" | sed "s/^bench:/$name:/"
done

echo "== 4. 27B decode, whole model on the GPU $(el)"
M=/tmp/27b.gguf
[ -f "$M" ] || "$BIN/hybrid-run" synth --preset 27b --quant q4_k_m -o "$M" > "$OUT/synth.log" 2>&1
for v in $VARIANTS ${VARIANTS%% *}; do
    name=${v%%+*}; envset=(HYBRID_X=1); [ "$v" != "$name" ] && IFS=+ read -ra envset <<< "${v#*+}"
    env "${envset[@]}" timeout 150 "$BIN/gpu-model-check" --ctx-bench "$M" --ctx-depths 0 > "$OUT/ctx-$name.log" 2>&1
    echo "$name: $(grep -E "^depth 0:|^\| 0 \|" "$OUT/ctx-$name.log" | tr '\n' ' ')"
done

if [ -n "${SPLIT_VARIANTS:-}" ]; then
    echo "== 5. the 16 GiB split (split-bench) $(el)"
    for v in $SPLIT_VARIANTS; do
        name=${v%%+*}; envset=(HYBRID_X=1); [ "$v" != "$name" ] && IFS=+ read -ra envset <<< "${v#*+}"
        env "${envset[@]}" timeout 200 "$BIN/gpu-model-check" --split-bench "$M" --vram-budget-gib 16 \
            --split-ctx 32768 --threads 16 > "$OUT/split-$name.log" 2>&1
        echo "$name:"; grep -v INFO "$OUT/split-$name.log" | grep -iE "decode|roofline|fraction|peak|prefill|alone" | head -12
    done
fi
echo "done $(el)"
echo "gpu-decode-ab: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
