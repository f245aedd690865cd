#!/usr/bin/env bash
# llama.cpp (CUDA build) on the same model and split as hybrid-run, on the GPU host.
# Needs the llama.cpp source tree in $LLAMA_SRC (default .dev-carry/llama.cpp: the tree vendored
# by llama-cpp-python 0.3.36, trimmed, never committed) and nvcc. Builds llama-bench with
# -DGGML_CUDA=ON for the device's architecture, then for each N in $SPLITS runs
#   llama-bench -ngl 99 -ot "blk.(layers >= N).ffn_(up|down|gate)=CPU" -fa 1 -p 512 -n 32
# (the dense FFN of layers N.. on the CPU, everything else on the GPU; N = n_layer: all GPU).
# Usage: MODEL=/tmp/27b.gguf SPLITS="18 45" bash bench-scripts/gpu-llamacpp-split.sh
set -uo pipefail
SRC=${LLAMA_SRC:-.dev-carry/llama.cpp}
MODEL=${MODEL:-/tmp/27b.gguf}
SPLITS=${SPLITS:-"18 45"}
NL=${N_LAYER:-64}
T=${THREADS:-$(nproc)}
B=${LLAMA_BUILD:-/tmp/lcpp-cuda}
OUT=${OUT:-/tmp/gpu-llamacpp-split}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
if [ ! -x "$B/bin/llama-bench" ]; then
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
  t0=$(date +%s)
  cmake -S "$SRC" -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="$cc" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF > "$OUT/cmake.log" 2>&1 &&
  cmake --build "$B" -j "$T" --target llama-bench > "$OUT/build.log" 2>&1
  echo "llama.cpp CUDA build rc=$? in $(( $(date +%s) - t0 )) s (sm_$cc)"
fi
# Layers >= N as a regex alternation of their numbers.
layers_from() { local s="" i; for ((i=$1; i<NL; i++)); do s+="${s:+|}$i"; done; echo "$s"; }
for n in $SPLITS; do
  if [ "$n" -ge "$NL" ]; then ot=(); else ot=(-ot "blk\\.($(layers_from "$n"))\\.ffn_(up|down|gate)=CPU"); fi
  echo "== llama.cpp, dense FFN of layers $n.. on the CPU"
  timeout 300 "$B/bin/llama-bench" -m "$MODEL" -ngl 99 "${ot[@]}" -fa 1 -t "$T" -p 512 -n 32 -r 2 \
    2>&1 | tee "$OUT/split-$n.log" | grep -E "^\|"
done
