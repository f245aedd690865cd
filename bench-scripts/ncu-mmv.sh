#!/usr/bin/env bash
# Nsight Compute on single mat-vec launches of gpu-check's benchmark (GPU host, Firecracker
# runtime; clocks left alone): speed of light, occupancy, scheduler and warp-state stats,
# memory workload, for Q4_K k = 1 and k = 4 at both 27B FFN shapes (the bench runs each
# (shape, k) 16 + 9 x 16 times, tall shape first, so launch 20 of a k's kernel is the tall
# shape and launch 180 the wide one). Usage: bench-scripts/ncu-mmv.sh [TYPE] [KS]
# Reports: $OUT/ncu-<type>-k<k>-<shape>.txt (or /tmp/ncu). With HYBRID_MMV_MMA=1 in the
# environment it profiles the tensor-core kernels (mmv_<type>_t_k<k>, Q4_K/Q5_K) instead.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${GPU_CHECK_BIN:-.dev-carry/gpu/gpu-check}
OUT=${OUT:-/tmp/ncu}
mkdir -p "$OUT"
ty=${1:-Q4_K}
lower=$(echo "$ty" | tr 'A-Z' 'a-z')
[ "${HYBRID_MMV_MMA:-0}" = 1 ] && lower="${lower}_t"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu not found"; exit 1; }
for k in ${2:-1 4}; do
    for shape in tall:20 wide:180; do
        name=${shape%%:*}
        skip=${shape#*:}
        f="$OUT/ncu-$lower-k$k-$name.txt"
        timeout 150 "$NCU" --clock-control none -k "regex:mmv_${lower}_k${k}\$" --launch-skip "$skip" --launch-count 1 \
            --section SpeedOfLight --section Occupancy --section SchedulerStats --section WarpStateStats \
            --section MemoryWorkloadAnalysis --section LaunchStats \
            "$BIN" --bench --bench-only --bench-types "$ty" > "$f" 2>&1
        echo "== $ty k=$k $name"
        grep -E "Duration|Grid Size|Registers Per|Achieved Occupancy|Theoretical Occupancy|Memory Throughput|DRAM Throughput|L1/TEX Hit|L2 Hit|Issue Slots Busy|Issued Warp Per|No Eligible|Active Warps Per|Eligible Warps|Warp Cycles Per Issued|Compute \(SM\) Throughput" "$f" | sed 's/  */ /g'
        grep -iE "stall|est. speedup" "$f" | head -6 | cut -c1-220
    done
done
