#!/usr/bin/env bash
# Speculative decoding on the GPU placements (issue 8), on the GPU host; runs prebuilt,
# stripped binaries from $BIN_DIR (default .dev-carry/gspec: `strip -o .dev-carry/gspec/X
# target/release/X` for hybrid-run and gpu-model-check):
#   1. gpu-model-check (includes spec.rs: speculation on == off token for token, whole GPU and
#      hybrid, MTP / lookup / cycling oracle, N = 1..4, on tiny-q4_k_m and the trained model);
#   2. the CLI on the trained model: --draft-n 0 vs --draft-n 1..4 (MTP and lookup),
#      --gpu-layers all and 4, same text; real MTP acceptance and t/s on the whole GPU;
#   3. unless SKIP_27B=1: synthetic 27B Q4_K_M, gpu-model-check --spec-bench on the whole GPU
#      and the hybrid split with 18 GPU FFN layers (T(k), simulated acceptance).
# Logs go to $OUT (or /tmp/gpu-spec). Exit status 1 if any step failed.
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/cuda-libs.sh"  # cuBLAS on hosts that keep it in a Python venv
BIN=${BIN_DIR:-.dev-carry/gspec}
OUT=${OUT:-/tmp/gpu-spec}
mkdir -p "$OUT"
status=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/device.txt"
echo "cores: $(nproc)"

echo "== 1. gpu-model-check (forward + speculative checks)"
t0=$(date +%s)
"$BIN/gpu-model-check" > "$OUT/model-check.log" 2>&1 || status=1
grep -E "spec|FAIL|passed|error|skipped" "$OUT/model-check.log" | grep -v " INFO " | tail -70
echo "($(( $(date +%s) - t0 )) s)"

echo "== 2. CLI on the trained model: speculation on vs off, greedy, 256 tokens"
M=models/qwen35-pystd-q8_0.gguf
P=$'import os\nimport sys\n\n\ndef main():\n'
for g in all 4; do
    "$BIN/hybrid-run" -m $M --gpu-layers $g --draft-n 0 -n 256 -p "$P" > "$OUT/cli-$g-off.txt" 2> "$OUT/cli-$g-off.err" || status=1
    echo "gpu-layers $g off: $(grep 'decode:' "$OUT/cli-$g-off.err" | tail -1)"
    for d in mtp lookup; do
        for n in 1 2 3 4; do
            f="$OUT/cli-$g-$d-$n"
            "$BIN/hybrid-run" -m $M --gpu-layers $g --draft $d --draft-n $n -n 256 -p "$P" > "$f.txt" 2> "$f.err" || status=1
            if cmp -s "$f.txt" "$OUT/cli-$g-off.txt"; then same=same; else same=DIFFERS; status=1; fi
            echo "gpu-layers $g $d N=$n: text $same | $(grep 'decode:' "$f.err" | tail -1 | sed 's/.*decode: //')"
            grep -iE "accept|spec" "$f.err" | grep -v INFO | tail -2 | sed 's/^/    /'
        done
    done
done

if [ "${SKIP_27B:-0}" != 1 ]; then
    echo "== 3. synthetic 27B Q4_K_M"
    t0=$(date +%s)
    "$BIN/hybrid-run" synth --preset 27b --quant q4_k_m -o /tmp/27b.gguf > "$OUT/synth.log" 2>&1 || status=1
    echo "synth: $(( $(date +%s) - t0 )) s"
    "$BIN/gpu-model-check" --spec-bench /tmp/27b.gguf --spec-n ${SPEC_N_GPU:-128} 2>&1 | tee "$OUT/bench-gpu.log" | grep -v " INFO "
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
    "$BIN/gpu-model-check" --spec-bench /tmp/27b.gguf --spec-gpu-ffn 18 --spec-n ${SPEC_N_HYB:-64} 2>&1 | tee "$OUT/bench-hybrid.log" | grep -v " INFO "
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
echo "gpu-spec: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
