#!/usr/bin/env bash
# GPU kernel checks on the GPU host (no Rust there: builds nothing). Runs the prebuilt
# gpu-check binary (default .dev-carry/gpu/gpu-check, built with `cargo build --release --bin
# gpu-check` and copied there): all checks with a cold NVRTC cache, a restart that must load
# every module from the cache, compute-sanitizer memcheck on the quick checks (on sm_80+ these
# include the tensor-core mat-vecs, which gpu-check runs in both modes), then the mat-vec
# benchmark. Logs go to $OUT (or /tmp/gpu-tests). Exit status 1 if any step failed.
set -uo pipefail
BIN=${GPU_CHECK_BIN:-.dev-carry/gpu/gpu-check}
OUT=${OUT:-/tmp/gpu-tests}
mkdir -p "$OUT"
HYBRID_RUN_CACHE=$(mktemp -d)
export HYBRID_RUN_CACHE
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$OUT/device.txt"

echo "== 1. all checks, cold kernel cache"
"$BIN" 2>&1 | tee "$OUT/checks.log" | grep -v ' ok$' || true
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 2. restart: modules must come from the cache"
"$BIN" --quick > "$OUT/checks-warm.log" 2>&1 || status=1
head -2 "$OUT/checks-warm.log"; tail -1 "$OUT/checks-warm.log"
grep -q "(modules: 0 compiled, " "$OUT/checks-warm.log" || { echo "cache miss on restart"; status=1; }

echo "== 3. compute-sanitizer memcheck (quick checks)"
if command -v compute-sanitizer > /dev/null; then
    compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN" --quick > "$OUT/memcheck.log" 2>&1 || status=1
    grep -E "ERROR SUMMARY|passed, " "$OUT/memcheck.log" | tail -2
else
    echo "compute-sanitizer not found"; status=1
fi

echo "== 4. benchmark"
"$BIN" --quick --bench > "$OUT/bench.log" 2>&1 || status=1
grep -E "^(device|bench)" "$OUT/bench.log"; tail -1 "$OUT/bench.log"

echo "gpu-tests: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
