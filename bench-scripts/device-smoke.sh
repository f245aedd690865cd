#!/usr/bin/env bash
# GPU smoke checks of the user-facing commands on the GPU host (device tool): the planner
# (--gpu-layers auto / --vram-budget), --profile, and `serve --gpu-layers all` answering an
# OpenAI request. Expects a prebuilt binary in ${BIN:-.dev-carry/bin}. Prints PASS/FAIL lines.
set -uo pipefail
cd "$(dirname "$0")/.."
. "$(dirname "${BASH_SOURCE[0]}")/cuda-libs.sh"  # cuBLAS on hosts that keep it in a Python venv
bin=${BIN:-.dev-carry/bin}/hybrid-run
m=models/qwen35-pystd-q8_0.gguf
pass=0; fail=0
check() { if [ "$1" = 0 ]; then echo "PASS $2"; pass=$((pass+1)); else echo "FAIL $2"; fail=$((fail+1)); fi; }

cpu=$($bin -m $m -n 48 --draft-n 0 --no-display-prompt 2>/dev/null)
gpu=$($bin -m $m -n 48 --draft-n 0 --no-display-prompt --gpu-layers all 2>/tmp/gpu.err); tail -2 /tmp/gpu.err
[ -n "$gpu" ] && [ "$cpu" = "$gpu" ]; check $? "--gpu-layers all prints the CPU's greedy text"
out=$($bin -m $m -n 32 --gpu-layers auto --vram-budget 2G --profile --no-display-prompt 2>/tmp/plan.err); rc=$?
grep -iE "plan|ffn|profile|budget" /tmp/plan.err | head -20
[ $rc = 0 ] && [ -n "$out" ]; check $? "--gpu-layers auto --vram-budget 2G --profile runs"
$bin -m $m -n 8 --gpu-layers all --vram-budget 1M 2>/tmp/small.err >/dev/null; rc=$?; tail -3 /tmp/small.err
[ $rc != 0 ] && grep -qi "fit" /tmp/small.err; check $? "a 1 MiB budget is refused with a message"
req='{"messages":[{"role":"user","content":"def add(a, b):"}],"max_tokens":48,"temperature":0}'
serve_answer() { # port, extra flags...
  local port=$1; shift
  ($bin serve -m $m --gpu-layers all --port "$port" "$@" > "/tmp/serve-$port.log" 2>&1 &)
  for i in $(seq 1 60); do curl -s "localhost:$port/health" >/dev/null && break; sleep 0.5; done
  curl -s "localhost:$port/v1/chat/completions" -H 'content-type: application/json' -d "$req"
}
with_spec=$(serve_answer 18099)            # default: MTP speculation on for greedy requests
plain=$(serve_answer 18098 --draft-n 0)
echo "$with_spec" | head -c 300; echo
grep -iE "specul|ring|GPU " /tmp/serve-18099.log | head -4
echo "$with_spec" | grep -q '"completion_tokens":48'; check $? "serve --gpu-layers all answers a chat completion"
c1=$(echo "$with_spec" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
c2=$(echo "$plain" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["message"]["content"])')
[ -n "$c1" ] && [ "$c1" = "$c2" ]; check $? "serve on the GPU: speculative answer equals the plain answer"
pkill -f "hybrid-run serve" || true
echo "smoke: $pass passed, $fail failed"
