#!/usr/bin/env bash
# The untimed kernel variants of docs/benchmarks/gpu-mma-mmv-2026-12-06.md in one GPU call
# (GPU host; prebuilt binaries in $BIN_DIR, default .dev-carry/gpu):
#   1. gpu-check (full) with each variant's sources through HYBRID_CUDA_SRC_DIR (the
#      tensor-core checks run in both modes);
#   2. mat-vec timings at the 27B FFN shapes: dp4a, tensor cores as built, contiguous block
#      runs, shared-memory staging (with and without contiguous runs), Q6_K 8-byte loads,
#      then dp4a again;
#   3. unless DECODE=0, full-GPU decode of the synthetic 27B (ctx-bench, depth 0) for the
#      built kernels, NORM_REGS=8, the tensor cores with shared-memory staging, and the
#      built kernels again.
# Logs in $OUT (or /tmp/kernel-variants). Exit status 1 if a check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench-scripts/cuda-libs.sh
BIN=${BIN_DIR:-.dev-carry/gpu}
OUT=${OUT:-/tmp/kernel-variants}
mkdir -p "$OUT"
SRC=$(mktemp -d)
HYBRID_RUN_CACHE=$(mktemp -d)
export HYBRID_RUN_CACHE
status=0
t00=$(date +%s)
el() { echo "[$(( $(date +%s) - t00 )) s]"; }
# mk NAME FILE MACRO=VAL...: a copy of cuda/ with those #define values in FILE.
mk() {
    local name=$1 file=$2 d def m v
    shift 2
    d="$SRC/$name"
    mkdir -p "$d"
    cp cuda/*.cu cuda/*.cuh "$d/"
    for def in "$@"; do
        m=${def%%=*}; v=${def#*=}
        sed -i "s/^#define $m .*/#define $m $v/" "$d/$file"
        grep -q "^#define $m $v\$" "$d/$file" || { echo "kernel-variants-ab: no #define $m in $file"; exit 1; }
    done
}
mk contig mmvq.cu MMVT_INTERLEAVE=0
mk smem mmvq.cu MMVT_SMEM=1
mk smemc mmvq.cu MMVT_SMEM=1 MMVT_INTERLEAVE=0
mk q6ld8 quant.cuh MMV_Q6K_LD8=1
mk normregs norm.cu NORM_REGS=8

echo "== 1. gpu-check per variant $(el)"
for v in base contig smem smemc q6ld8 normregs; do
    envset=(HYBRID_X=1); [ "$v" != base ] && envset=("HYBRID_CUDA_SRC_DIR=$SRC/$v")
    env "${envset[@]}" timeout 240 "$BIN/gpu-check" > "$OUT/check-$v.log" 2>&1 || status=1
    echo "$v: $(tail -1 "$OUT/check-$v.log")"
    grep -E "FAIL|error" "$OUT/check-$v.log" | head -3
done

echo "== 2. mat-vec at the 27B FFN shapes $(el)"
bench() {
    local name=$1
    shift
    env "$@" timeout 100 "$BIN/gpu-check" --bench --bench-only --bench-types Q4_K,Q5_K,Q6_K \
        > "$OUT/mmv-$name.log" 2>&1
    grep -E "^bench: (Q|device)" "$OUT/mmv-$name.log" | sed "s/^bench:/$name:/"
}
bench dp4a HYBRID_X=1
bench mma HYBRID_MMV_MMA=1
bench contig HYBRID_MMV_MMA=1 "HYBRID_CUDA_SRC_DIR=$SRC/contig"
bench smem HYBRID_MMV_MMA=1 "HYBRID_CUDA_SRC_DIR=$SRC/smem"
bench smemc HYBRID_MMV_MMA=1 "HYBRID_CUDA_SRC_DIR=$SRC/smemc"
bench q6ld8 "HYBRID_CUDA_SRC_DIR=$SRC/q6ld8"
bench dp4a-again HYBRID_X=1

if [ "${DECODE:-1}" != 0 ]; then
    echo "== 3. 27B decode, whole model on the GPU $(el)"
    M=/tmp/27b.gguf
    [ -f "$M" ] || "$BIN/hybrid-run" synth --preset 27b --quant q4_k_m -o "$M" > "$OUT/synth.log" 2>&1
    for v in base normregs smem-mma base-again; do
        case $v in
        base*) envset=(HYBRID_X=1) ;;
        normregs) envset=("HYBRID_CUDA_SRC_DIR=$SRC/normregs") ;;
        smem-mma) envset=(HYBRID_MMV_MMA=1 "HYBRID_CUDA_SRC_DIR=$SRC/smem") ;;
        esac
        env "${envset[@]}" timeout 150 "$BIN/gpu-model-check" --ctx-bench "$M" --ctx-depths 0 \
            > "$OUT/ctx-$v.log" 2>&1
        echo "$v: $(grep -E "^depth 0:|^\| 0 \|" "$OUT/ctx-$v.log" | tr '\n' ' ')"
    done
fi
echo "done $(el)"
echo "kernel-variants-ab: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
