#!/usr/bin/env bash
# Installs the llama.cpp oracle (llama-cpp-python 0.3.36, CPU build) into the current python3.
# The wheel is built once per machine and cached outside the clone, in
# ${HYBRID_CACHE:-$HOME/.cache/hybrid-run}/wheels (the build takes ~5-10 minutes on 2 cores).
# Also unpacks the source package there (its gguf-py and test vocab are used by tests).
set -euo pipefail
CACHE="${HYBRID_CACHE:-$HOME/.cache/hybrid-run}"
VER=0.3.36
mkdir -p "$CACHE/wheels" "$CACHE/sdist"
py=${PYTHON:-python3}

# The source package: the wheel is built from it, and tests read its gguf-py and vocab files.
sdist="$CACHE/sdist/llama_cpp_python-$VER.tar.gz"
if [ ! -f "$sdist" ]; then
  "$py" -m pip download -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VER" -d "$CACHE/sdist"
fi
if "$py" -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.__version__ == '$VER' else 1)" 2>/dev/null; then
  echo "llama-cpp-python $VER already installed"
else
  wheel=$(ls "$CACHE"/wheels/llama_cpp_python-$VER-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    echo "building llama-cpp-python $VER wheel (one time, several minutes)..." >&2
    # Portable CPU build: AVX2/FMA/F16C, no -march=native, so the cached wheel runs on any x86-64-v3 host.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      "$py" -m pip wheel -q --no-deps "$sdist" -w "$CACHE/wheels"
    wheel=$(ls "$CACHE"/wheels/llama_cpp_python-$VER-*.whl | head -1)
  fi
  "$py" -m pip install -q "$wheel" numpy typing-extensions diskcache jinja2
fi

# Unpacked source: gguf-py (with the qwen35 NEXTN tensor names) and the qwen35 test vocab.
src="$CACHE/src/llama_cpp_python-$VER"
if [ ! -d "$src/vendor/llama.cpp/gguf-py" ]; then
  mkdir -p "$CACHE/src"
  tar -xzf "$CACHE/sdist/llama_cpp_python-$VER.tar.gz" -C "$CACHE/src" \
    "llama_cpp_python-$VER/vendor/llama.cpp/gguf-py" \
    "llama_cpp_python-$VER/vendor/llama.cpp/models" 2>/dev/null || \
  tar -xzf "$CACHE/sdist/llama_cpp_python-$VER.tar.gz" -C "$CACHE/src"
fi
if ! "$py" -c "import gguf, sys; sys.exit(0 if hasattr(gguf.MODEL_TENSOR, 'NEXTN_EH_PROJ') else 1)" 2>/dev/null; then
  "$py" -m pip install -q "$src/vendor/llama.cpp/gguf-py"
fi
echo "llama.cpp oracle ready (llama-cpp-python $VER, gguf-py from its source)"
