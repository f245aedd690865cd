#!/usr/bin/env bash
# The project's test command (the README and .ci/run call this).
# 1. installs what the tests need (llama.cpp oracle, test data, the openai Python client,
#    libnvrtc for compiling the CUDA kernels without a GPU), cached outside the clone;
# 2. runs the whole Rust test suite. GPU tests report themselves skipped without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-llamacpp.sh
if [ -f scripts/fetch-test-data.sh ]; then bash scripts/fetch-test-data.sh; fi
bash scripts/setup-python-test-deps.sh
NVRTC_LIB=$(bash scripts/setup-nvrtc.sh | tail -1)
export LD_LIBRARY_PATH="$NVRTC_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export HYBRID_REQUIRE_NVRTC=1
export HYBRID_REQUIRE_OPENAI=1
cargo test --workspace --release "$@"
