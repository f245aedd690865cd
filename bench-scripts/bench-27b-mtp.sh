#!/usr/bin/env bash
# Decode benchmark of a Qwen3.5/3.6-27B GGUF with and without MTP speculation, CPU-only and
# hybrid (GPU + CPU). bench-27b-mtp.ps1 is its PowerShell twin. Both hand their options to
# `bench_27b_report.py plan`, which checks them, resolves the defaults and lists the commands
# (so the two accept the same options and run the same commands), then run that list and
# make the table, JSON and plot with `bench_27b_report.py RUNS PREFIX` from the
# --stats-json files hybrid-run writes.
#
#   bench-scripts/bench-27b-mtp.sh [--model PATH] [options]     (--help lists them all)
#
# Without --model the synthetic 27B preset (random weights) is written once with
# `hybrid-run synth --preset 27b --quant q4_k_m` into $HYBRID_CACHE (default
# ~/.cache/hybrid-run) and reused.
#
# Options (defaults in brackets; the planner's --help is the full list):
#   --model PATH --bin PATH --out DIR [target/bench-27b-mtp] --report PREFIX
#   -n, --n-predict N [64]  --ks LIST [0,1,2,3,4,5]  --placements LIST [cpu,hybrid]
#   --hybrid-layers N [18]  -t, --threads N  --timeout S [900]  --host-bw GB/s [103, assumed]
#   --gpu-bw GB/s [3350, assumed]  --vs-llamacpp PATH  --quick (-n 16 --ks 0,1,3)
#   --dry-run   print the commands (`RUN tag: argv`, one per run), run nothing; the .ps1's
#               -DryRun prints the same bytes
# Python 3 is needed (the planner and the report); matplotlib for the plot only.
set -uo pipefail   # bash 3.2 (macOS) is enough: no associative arrays, no mapfile
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SHARED=bench-scripts/bench_27b_report.py
die() { echo "bench-27b-mtp: $*" >&2; exit 2; }

# --help and --dry-run: the planner prints everything.
for a in "$@"; do
  case $a in -h | --help | --dry-run) exec "$PY" "$SHARED" plan "$@" ;; esac
done

PLAN_TEXT=$("$PY" "$SHARED" plan "$@") || exit $?
META=()
SYNTH=()
RUNS=()
while IFS= read -r line; do
  IFS=$'\t' read -r -a f <<< "$line"
  case ${f[0]} in
    SET) printf -v "SET_${f[1]}" '%s' "${f[2]}" ;;
    META) META+=("${f[1]}"$'\t'"${f[2]}") ;;
    SYNTH) SYNTH=("${f[@]:1}") ;;
    RUN) RUNS+=("$line") ;;
    *) die "the planner printed an unknown line: $line" ;;
  esac
done <<< "$PLAN_TEXT"
BIN=$SET_bin MODEL=$SET_model RUNSDIR=$SET_runs REPORT=$SET_report TIMEOUT=$SET_timeout

. "$(dirname "${BASH_SOURCE[0]}")/cuda-libs.sh"  # cuBLAS on hosts that keep it in a Python venv

# ---- synthesis (SYNTH FINAL ARGV...: the argv writes FINAL.part) --------------------------
if [ ${#SYNTH[@]} -gt 0 ]; then
  final=${SYNTH[0]}
  echo "SYNTH: ${SYNTH[*]:1}"
  mkdir -p "$(dirname "$final")" || die "cannot create $(dirname "$final")"
  "${SYNTH[@]:1}" > /dev/null || die "synth failed"
  mv "$final.part" "$final" || die "cannot move $final.part to $final"
fi

rm -rf "$RUNSDIR"
mkdir -p "$RUNSDIR" "$(dirname "$REPORT")" || die "cannot create $RUNSDIR"
: > "$RUNSDIR/runs.tsv"
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1)
{
  printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
  printf 'model\t%s\n' "$MODEL"
  printf 'model_bytes\t%s\n' "$(stat -c %s "$MODEL" 2> /dev/null || wc -c < "$MODEL")"
  printf 'host\t%s, %s CPUs\n' "$(uname -sm)" "$(nproc 2> /dev/null || echo '?')"
  printf 'gpu\t%s\n' "${GPU_NAME:-none}"
  printf 'version\t%s\n' "$("$BIN" --version 2> /dev/null | head -1)"
  for m in "${META[@]}"; do printf '%s\n' "$m"; done
} > "$RUNSDIR/meta.tsv"

# Runs "$@" with the timeout, sampling the GPU's memory; sets RC, WALL, TIMED_OUT, VRAM.
timed() {
  local out=$1 err=$2
  shift 2
  local vfile="$RUNSDIR/vram.tmp" vpid=""
  VRAM=""
  if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$vfile" 2> /dev/null &
    vpid=$!
  fi
  local t0
  t0=$(date +%s.%N)
  timeout "$TIMEOUT" "$@" > "$out" 2> "$err" < /dev/null
  RC=$?
  WALL=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  TIMED_OUT=0
  [ $RC = 124 ] && TIMED_OUT=1
  if [ -n "$vpid" ]; then
    kill "$vpid" 2> /dev/null
    wait "$vpid" 2> /dev/null
    VRAM=$(awk 'BEGIN { m = "" } /^[0-9]+/ { if (m == "" || $1 + 0 > m) m = $1 + 0 } END { print m }' "$vfile")
  fi
}
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RUNSDIR/runs.tsv"; }
# The prompt length of an MTP-off hybrid-run run of prompt $1 (llama-bench's -p).
n_prompt() {
  local f np
  for f in "$RUNSDIR"/*-"$1"-k0.json; do
    [ -f "$f" ] || continue
    np=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["n_prompt"])' "$f" 2> /dev/null) &&
      [ -n "$np" ] && echo "$np" && return 0
  done
  return 1
}

# ---- the runs (RUN TAG ENGINE PLACEMENT PROMPT K ARGV...) -----------------------------
for line in "${RUNS[@]}"; do
  IFS=$'\t' read -r -a f <<< "$line"
  tag=${f[1]} engine=${f[2]} place=${f[3]} prompt=${f[4]} k=${f[5]}
  cmd=("${f[@]:6}")
  if [ "$engine" = llama.cpp ]; then
    if ! np=$(n_prompt "$prompt"); then
      echo "  $tag: no MTP-off run of this prompt to take its length from; skipped"
      continue
    fi
    for i in "${!cmd[@]}"; do [ "${cmd[$i]}" = "<n_prompt:$prompt>" ] && cmd[$i]=$np; done
    echo "RUN $tag: ${cmd[*]}"
    timed "$RUNSDIR/$tag.json" "$RUNSDIR/$tag.err" "${cmd[@]}"
    record "$tag" "$engine" "$place" "$prompt" "$k" "$RC" "$WALL" "$TIMED_OUT" "$VRAM" "$tag.json" ""
  else
    echo "RUN $tag: ${cmd[*]}"
    rm -f "$RUNSDIR/$tag.json"
    timed "$RUNSDIR/$tag.txt" "$RUNSDIR/$tag.err" "${cmd[@]}"
    stats=$tag.json
    [ -f "$RUNSDIR/$stats" ] || stats=""
    record "$tag" "$engine" "$place" "$prompt" "$k" "$RC" "$WALL" "$TIMED_OUT" "$VRAM" "$stats" "$tag.txt"
  fi
  echo "  rc $RC, ${WALL} s$([ $TIMED_OUT = 1 ] && echo ', TIMED OUT')"
done

rm -f "$RUNSDIR/vram.tmp"
echo "REPORT: $RUNSDIR $REPORT"
"$PY" "$SHARED" "$RUNSDIR" "$REPORT"
