#!/usr/bin/env bash
# CPU benchmarks on the GPU host (16 cores), run through the device tool. No Rust there:
# expects prebuilt binaries in .dev-carry/bin/ (hybrid-run, kernel-bench; $BIN overrides) and, for the llama.cpp
# comparison, a trimmed llama.cpp source tree in .dev-carry/llama.cpp (git-ignored, never
# committed). Usage: bench-scripts/device-cpu-bench.sh small|27b
# Writes logs under $OUT (or /tmp/out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
what=${1:-small}
T=$(nproc)
bin=${BIN:-.dev-carry/bin}
models=/tmp/models; mkdir -p $models
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

build_llamacpp() {
  [ -x /tmp/lcpp/bin/llama-bench ] && return 0
  [ -d .dev-carry/llama.cpp ] || { log "no llama.cpp source carried"; return 1; }
  log "building llama.cpp (CPU, native) $(date -u +%T)"
  cmake -S .dev-carry/llama.cpp -B /tmp/lcpp -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DGGML_CUDA=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF > "$OUT/lcpp-cmake.log" 2>&1 &&
  cmake --build /tmp/lcpp -j "$T" --target llama-bench > "$OUT/lcpp-build.log" 2>&1
  local rc=$?; log "llama.cpp build rc=$rc $(date -u +%T)"; return $rc
}

case "$what" in
small)
  build_llamacpp
  if [ -z "${SKIP_KERNEL_BENCH:-}" ]; then
    log "kernel-bench --threads $T"
    $bin/kernel-bench --threads "$T" --reps 5 2>&1 | tee "$OUT/kernel-bench.md" | tail -40
  fi
  $bin/hybrid-run synth --preset small --quant q4_k_m -o $models/small.gguf 2>&1 | tail -1
  log "hybrid-run bench small (CPU, $T threads)"
  $bin/hybrid-run bench -m $models/small.gguf -t "$T" -p 512 -n 64 -r 3 --verify-k 1,2,4,8 --json "$OUT/ours-small.json" 2>&1 | grep '|' | tee -a "$OUT/summary.txt"
  if [ -x /tmp/lcpp/bin/llama-bench ]; then
    log "llama-bench small (CPU, $T threads)"
    /tmp/lcpp/bin/llama-bench -m $models/small.gguf -t "$T" -p 512 -n 64 -r 3 -fa 1 2>&1 | grep '|' | tee -a "$OUT/summary.txt"
    /tmp/lcpp/bin/llama-bench -m $models/small.gguf -t "$T" -p 1,2,4,8 -n 0 -r 5 -fa 1 2>&1 | grep '|' | tee -a "$OUT/summary.txt"
  fi
  ;;
27b)
  log "synth 27b q4_k_m $(date -u +%T)"
  /usr/bin/time -v $bin/hybrid-run synth --preset 27b --quant q4_k_m -o $models/27b.gguf 2> "$OUT/synth27b.err" | tail -1
  grep -E "Elapsed|Maximum resident" "$OUT/synth27b.err" | tee -a "$OUT/summary.txt"
  log "synth done $(date -u +%T)"; ls -la $models/27b.gguf | tee -a "$OUT/summary.txt"
  $bin/hybrid-run info $models/27b.gguf > "$OUT/info27b.txt" 2>&1; tail -14 "$OUT/info27b.txt"
  log "hybrid-run bench 27b CPU-only"
  $bin/hybrid-run bench -m $models/27b.gguf -t "$T" -p 32 -n 16 -r 1 --verify-k 1,4 --json "$OUT/ours-27b.json" 2>&1 | grep '|' | tee -a "$OUT/summary.txt"
  if build_llamacpp; then
    log "llama-bench 27b CPU-only"
    /tmp/lcpp/bin/llama-bench -m $models/27b.gguf -t "$T" -p 32 -n 16 -r 1 -fa 1 2>&1 | grep '|' | tee -a "$OUT/summary.txt"
  fi
  ;;
esac
log "done $(date -u +%T)"
