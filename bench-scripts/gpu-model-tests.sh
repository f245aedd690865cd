#!/usr/bin/env bash
# Whole-model GPU checks and benchmark on the GPU host (no Rust there: builds nothing).
# Runs prebuilt, stripped binaries from $BIN_DIR (default .dev-carry/gpu; build here with
# `cargo build --release` and `strip -o .dev-carry/gpu/X target/release/X` for hybrid-run,
# gpu-check, gpu-model-check):
#   1. gpu-check --quick (kernels, including the head-dim instances the small models use);
#   2. gpu-model-check: GPU forward vs the CPU forward on tiny synthetic F32/Q8_0/Q4_K_M
#      models and models/qwen35-pystd-q8_0.gguf, and speculative decoding on == off (whole
#      GPU and hybrid; the benchmark is bench-scripts/gpu-spec.sh);
#   3. the CLI: `hybrid-run --gpu-layers all` prints the same greedy text as the CPU (and
#      `--gpu-layers 4`, the hybrid split, is compared too);
#   4. unless SKIP_27B=1: writes the synthetic 27B Q4_K_M and runs gpu-model-check --bench on
#      it (decode/prefill vs the bandwidth roofline, 6-position logits vs the CPU), then the
#      CLI end to end.
# Logs go to $OUT (or /tmp/gpu-model-tests). Exit status 1 if any step failed.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/cuda-libs.sh"  # cuBLAS on hosts that keep it in a Python venv
BIN=${BIN_DIR:-.dev-carry/gpu}
OUT=${OUT:-/tmp/gpu-model-tests}
mkdir -p "$OUT"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$OUT/device.txt"
nproc

echo "== 1. kernel checks (gpu-check --quick)"
"$BIN/gpu-check" --quick > "$OUT/gpu-check.log" 2>&1 || status=1
grep -v ' ok$' "$OUT/gpu-check.log" | tail -5

echo "== 2. model checks (gpu-model-check)"
"$BIN/gpu-model-check" 2>&1 | tee "$OUT/model-check.log" | grep -v "INFO"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== 3. CLI: --gpu-layers all vs the CPU, greedy, 96 tokens"
P=$'def fibonacci(n):\n'
for g in all 0; do
    "$BIN/hybrid-run" -m models/qwen35-pystd-q8_0.gguf --gpu-layers $g --draft-n 0 -n 96 -p "$P" \
        > "$OUT/cli-$g.txt" 2> "$OUT/cli-$g.err" || status=1
    tail -1 "$OUT/cli-$g.err"
done
if cmp -s "$OUT/cli-all.txt" "$OUT/cli-0.txt"; then echo "CLI text identical"; else echo "CLI text DIFFERS"; diff "$OUT/cli-all.txt" "$OUT/cli-0.txt" | head; status=1; fi
"$BIN/hybrid-run" -m models/qwen35-pystd-q8_0.gguf --gpu-layers 4 --draft-n 0 -n 96 -p "$P" \
    > "$OUT/cli-4.txt" 2> "$OUT/cli-4.err" || status=1
tail -1 "$OUT/cli-4.err"
if cmp -s "$OUT/cli-all.txt" "$OUT/cli-4.txt"; then echo "CLI hybrid (--gpu-layers 4) text identical to all-GPU"; else echo "CLI hybrid text differs (info)"; fi

if [ "${SKIP_27B:-0}" != 1 ]; then
    echo "== 4. synthetic 27B Q4_K_M"
    t0=$(date +%s)
    "$BIN/hybrid-run" synth --preset 27b --quant q4_k_m -o /tmp/27b.gguf > "$OUT/synth.log" 2>&1 || status=1
    echo "synth: $(( $(date +%s) - t0 )) s, $(stat -c %s /tmp/27b.gguf) bytes"
    "$BIN/gpu-model-check" --bench /tmp/27b.gguf 2>&1 | tee "$OUT/bench.log" | grep -v "INFO"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    "$BIN/hybrid-run" -m /tmp/27b.gguf --gpu-layers all --draft-n 0 -n 64 -p "hello world" \
        > "$OUT/cli-27b.txt" 2> "$OUT/cli-27b.err" || status=1
    grep -E "GPU|prompt:" "$OUT/cli-27b.err" | tail -4
fi
echo "gpu-model-tests: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
