#!/usr/bin/env bash
# The GPU's PCIe share of CPU-placed FFN rows (src/gpu/share.rs) on the GPU host, one call:
#   1. gpu-check: every kernel, including the exact (CPU-order) mat-vecs bit for bit against
#      the CPU kernels, from device memory and through registered host memory;
#   2. gpu-model-check on the synthetic models (hybrid with the share == without, bit for bit);
#   3. the synthetic 27B Q4_K_M, 45 GPU FFN layers (the 16 GiB plan's split): spec-bench T(k)
#      and simulated-acceptance decode with the share (default) and without (HYBRID_PCIE_SHARE=0),
#      alternated, the first again at the end;
#   4. with SPLIT=1, split-bench on the 16 GiB plan (decode against its roofline, prefill).
# Binaries prebuilt here (no Rust there) in $BIN_DIR (default .dev-carry/gpu). Logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench-scripts/cuda-libs.sh
BIN=${BIN_DIR:-.dev-carry/gpu}
OUT=${OUT:-/tmp/pcie-share}
mkdir -p "$OUT"
status=0
HYBRID_RUN_CACHE=$(mktemp -d)
export HYBRID_RUN_CACHE
t00=$(date +%s)
el() { echo "[$(( $(date +%s) - t00 )) s]"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc; grep -m1 "model name" /proc/cpuinfo

if [ "${SKIP_CHECKS:-0}" != 1 ]; then
    echo "== 1. gpu-check $(el)"
    timeout 240 "$BIN/gpu-check" ${CHECK_ARGS:-} > "$OUT/gpu-check.log" 2>&1 || status=1
    grep -E "exact|PCIe|FAIL|passed" "$OUT/gpu-check.log" | grep -v " ok$" | tail -8
    grep -cE "(exact|PCIe).* ok$" "$OUT/gpu-check.log" | sed 's/^/exact\/share checks ok: /'
    echo "== 2. gpu-model-check $(el)"
    timeout 300 "$BIN/gpu-model-check" > "$OUT/model-check.log" 2>&1 || status=1
    grep -E "PCIe|FAIL|passed" "$OUT/model-check.log" | tail -8
fi

echo "== 3. 27B Q4_K_M split, 45 GPU FFN layers: spec-bench, share on / off $(el)"
M=/tmp/27b.gguf
[ -f "$M" ] || "$BIN/hybrid-run" synth --preset 27b --quant q4_k_m -o "$M" > "$OUT/synth.log" 2>&1
for v in ${SHARE_VARIANTS:-on off+HYBRID_PCIE_SHARE=0 on}; do
    name=${v%%+*}; envset=(HYBRID_X=1); [ "$v" != "$name" ] && envset=("${v#*+}")
    log="$OUT/spec-$name.log"; [ -f "$log" ] && log="$OUT/spec-$name-2.log"
    env "${envset[@]}" timeout 240 "$BIN/gpu-model-check" --spec-bench "$M" --spec-gpu-ffn ${GPU_FFN:-45} \
        --spec-n ${SPEC_N:-64} --threads 16 > "$log" 2>&1 || status=1
    echo "-- $name $(el)"; grep -vE "INFO" "$log" | grep -E "^\||PCIe|MTP off|share|error" | head -24
done
if [ "${SPLIT:-0}" = 1 ]; then
    echo "== 4. the 16 GiB split (split-bench: plan, roofline, decode, prefill) $(el)"
    timeout 300 "$BIN/gpu-model-check" --split-bench "$M" --vram-budget-gib 16 --split-ctx 32768 \
        --threads 16 > "$OUT/split.log" 2>&1 || status=1
    grep -v INFO "$OUT/split.log" | grep -iE "decode|roofline|fraction|peak|prefill|alone|read" | head -16
fi
echo "done $(el)"
echo "pcie-share: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
