#!/usr/bin/env bash
# Where a full-GPU decode step's time goes, from a real timeline (GPU host): Nsight Systems
# traces `hybrid-run` decoding greedily on the synthetic 27B Q4_K_M with every layer on the GPU
# (CUDA graphs traced per node), once with programmatic dependent launch and once without
# (HYBRID_PDL=0, so each kernel's span is its own run, not its wait for the one before), and
# the trace is reduced to: steps per second, kernel-busy time per step, the idle gaps between
# consecutive kernels (count and total per step), and the largest kernels by total time.
# Usage: bench-scripts/gpu-timeline.sh [TOKENS] (default 48). Binaries: $BIN_DIR
# (default .dev-carry/gpu). Reports and traces: $OUT (or /tmp/gpu-timeline).
set -uo pipefail
cd "$(dirname "$0")/.."
. bench-scripts/cuda-libs.sh
BIN=${BIN_DIR:-.dev-carry/gpu}
OUT=${OUT:-/tmp/gpu-timeline}
mkdir -p "$OUT"
HYBRID_RUN_CACHE=$(mktemp -d)
export HYBRID_RUN_CACHE
NSYS=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda*/bin/nsys 2>/dev/null | head -1)
[ -n "$NSYS" ] || { echo "nsys not found"; exit 1; }
M=/tmp/27b.gguf
[ -f "$M" ] || "$BIN/hybrid-run" synth --preset 27b --quant q4_k_m -o "$M" > "$OUT/synth.log" 2>&1
n=${1:-48}
for v in pdl nopdl+HYBRID_PDL=0; do
    name=${v%%+*}; envset=(HYBRID_X=1); [ "$v" != "$name" ] && envset=("${v#*+}")
    env "${envset[@]}" timeout 240 "$NSYS" profile -o "$OUT/$name" --force-overwrite true -t cuda \
        --cuda-graph-trace=node "$BIN/hybrid-run" -m "$M" -p "The quick brown fox" -n "$n" \
        --gpu-layers all --draft-n 0 --temp 0 > "$OUT/run-$name.log" 2>&1
    "$NSYS" stats -q -r cuda_gpu_trace -f csv -o "$OUT/$name" "$OUT/$name.nsys-rep" > /dev/null 2>&1
    echo "== $name ($(tail -1 "$OUT/run-$name.log" | cut -c1-120))"
    python3 - "$OUT/${name}_cuda_gpu_trace.csv" "$n" <<'PY'
import csv, sys, collections
rows = []
with open(sys.argv[1]) as f:
    for r in csv.DictReader(f):
        name = r.get("Name", "")
        if "[CUDA mem" in name or "memcpy" in name.lower() or "memset" in name.lower():
            continue
        rows.append((int(r["Start (ns)"]), int(r["Duration (ns)"]), name))
rows.sort()
# The decode steps are the last part of the run: take the last 3/4 of the kernels (after
# load, compile and prefill), between the first and last argmax of that window.
tail = rows[len(rows) // 4:]
marks = [i for i, r in enumerate(tail) if r[2].startswith("argmax")]
if len(marks) < 3:
    print("too few argmax launches found"); sys.exit(0)
win = tail[marks[0] + 1: marks[-1] + 1]
steps = len(marks) - 1
t0, t1 = win[0][0], win[-1][0] + win[-1][1]
busy, gaps, end = 0, [], win[0][0]
for s, d, _ in win:
    if s > end:
        gaps.append(s - end)
    busy += max(0, s + d - max(s, end))
    end = max(end, s + d)
wall = t1 - t0
print(f"steps {steps}: {wall / steps / 1e3:.1f} us per step ({1e9 * steps / wall:.1f} t/s), "
      f"kernels {len(win) / steps:.0f} per step, busy {busy / steps / 1e3:.1f} us per step, "
      f"idle {sum(gaps) / steps / 1e3:.1f} us in {len(gaps) / steps:.0f} gaps per step "
      f"(median gap {sorted(gaps)[len(gaps) // 2] / 1e3 if gaps else 0:.2f} us)")
by = collections.defaultdict(lambda: [0, 0])
for s, d, name in win:
    k = name.split("(")[0]
    by[k][0] += 1; by[k][1] += d
print("| kernel | per step | us per step | us each |")
print("|---|---:|---:|---:|")
for k, (c, d) in sorted(by.items(), key=lambda kv: -kv[1][1])[:16]:
    print(f"| {k} | {c / steps:.0f} | {d / steps / 1e3:.1f} | {d / c / 1e3:.2f} |")
PY
done
