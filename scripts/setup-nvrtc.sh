#!/usr/bin/env bash
# Fetches NVIDIA's run-time CUDA compiler (libnvrtc, from the `nvidia-cuda-nvrtc-cu12` wheel on
# PyPI; no driver, no GPU, no toolkit) into a cache outside the clone, so that the tests can
# compile every cuda/*.cu module for several architectures on a machine without a GPU
# (tests/cuda_compile.rs). Idempotent. Prints the directory holding libnvrtc.so.12 as its last
# line. The cache: $HYBRID_CACHE (default ~/.cache/hybrid-run)/nvrtc-<version>.
set -euo pipefail
py=${PYTHON:-python3}
ver=12.9.86
dir="${HYBRID_CACHE:-$HOME/.cache/hybrid-run}/nvrtc-$ver"
lib="$dir/nvidia/cuda_nvrtc/lib"
if [ ! -f "$lib/libnvrtc.so.12" ]; then
  echo "fetching libnvrtc $ver (nvidia-cuda-nvrtc-cu12 wheel, ~90 MB, one time)..." >&2
  tmp=$(mktemp -d)
  "$py" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "nvidia-cuda-nvrtc-cu12==$ver" >&2
  mkdir -p "$dir"
  "$py" -m zipfile -e "$tmp"/nvidia_cuda_nvrtc_cu12-*.whl "$dir"
  rm -rf "$tmp"
fi
echo "$lib"
