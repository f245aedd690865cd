#!/usr/bin/env bash
# Builds and runs the CPU kernel benchmark (simd/src/bin/kernel-bench.rs) and saves the
# markdown report under docs/benchmarks/. Extra arguments go to kernel-bench, e.g.
#   bench-scripts/kernels.sh --threads 16
#   bench-scripts/kernels.sh --threads 2 --types Q4_K,Q8_0 --reps 3 --ks 1,4
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p simd --bin kernel-bench
threads=$(nproc)
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == "--threads" ]]; then j=$((i + 1)); threads="${!j}"; fi
done
out="docs/benchmarks/kernels-${threads}core-$(date -u +%Y-%m-%d).md"
mkdir -p docs/benchmarks
{
  echo "<!-- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(lscpu | sed -n 's/^Model name: *//p'); command: target/release/kernel-bench $* -->"
  target/release/kernel-bench "$@"
} | tee "$out"
echo "saved $out" >&2
