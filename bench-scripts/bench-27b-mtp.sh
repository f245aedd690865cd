#!/usr/bin/env bash
# Decode benchmark of a Qwen3.5/3.6-27B GGUF with and without MTP speculation, CPU-only and
# hybrid (GPU + CPU). Same options and output as bench-27b-mtp.ps1; the table, JSON and plot
# are made by bench_27b_report.py from the --stats-json files hybrid-run writes.
#
#   bench-scripts/bench-27b-mtp.sh [--model PATH] [options]
#
# Without --model the synthetic 27B preset (random weights) is written once with
# `hybrid-run synth --preset 27b --quant q4_k_m` into $HYBRID_CACHE (default
# ~/.cache/hybrid-run) and reused.
#
# Options (defaults in brackets):
#   --model PATH         GGUF model (first shard of a split model)          [synthetic 27B]
#   --bin PATH           hybrid-run binary  [.dev-carry/bench/hybrid-run if present, else
#                        target/release/hybrid-run]
#   --out DIR            per-run files (stats JSON, text, logs)             [target/bench-27b-mtp]
#   --report PREFIX      writes PREFIX.md, PREFIX.json, PREFIX.png          [OUT/bench-27b-mtp]
#   -n, --n-predict N    decode tokens per run                              [64]
#   --ks LIST            draft lengths, 0 = MTP off                         [0,1,2,3,4,5]
#   --placements LIST    cpu, hybrid, gpu                                   [cpu,hybrid]
#   --hybrid-layers N    hybrid: dense FFN of layers 0..N-1 on the GPU, the rest on the CPU [18]
#   -t, --threads N      CPU threads for hybrid-run and llama-bench         [each one's default]
#   --timeout S          seconds per run before it is killed and marked     [900]
#   --host-bw GB/s       host memory read bandwidth for the roofline        [103]
#   --gpu-bw GB/s        GPU memory read bandwidth for the roofline         [3350]
#   --vs-llamacpp PATH   llama.cpp build folder (or its llama-bench): adds its rows and ratios
#   --quick              -n 16 --ks 0,1,3 (for a quick device run)
#   --dry-run            print the commands, run nothing
# The bandwidth defaults are assumptions, not measurements (103 GB/s: the 16-core H200 host
# of docs/benchmarks; 3350 GB/s: H100 SXM HBM3 nominal); the table header says which.
set -uo pipefail
# cuBLAS (GPU prefill GEMM path) is loaded at run time; some hosts keep it only inside a Python
# venv's NVIDIA wheels. Without it the GEMM path turns off with a warning.
for d in /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib /opt/torch/.venv/lib/python3*/site-packages/nvidia/cublas/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
cd "$(dirname "$0")/.."

MODEL="" ; BIN="" ; OUTDIR="target/bench-27b-mtp" ; REPORT="" ; N=64 ; KS="0,1,2,3,4,5"
PLACEMENTS="cpu,hybrid" ; HYB=18 ; THREADS="" ; TIMEOUT=900 ; HOST_BW="" ; GPU_BW=""
LCPP="" ; QUICK=0 ; DRY=0
die() { echo "bench-27b-mtp: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --model) need "$@"; MODEL=$2; shift ;;
    --bin) need "$@"; BIN=$2; shift ;;
    --out) need "$@"; OUTDIR=$2; shift ;;
    --report) need "$@"; REPORT=$2; shift ;;
    -n|--n-predict) need "$@"; N=$2; shift ;;
    --ks) need "$@"; KS=$2; shift ;;
    --placements) need "$@"; PLACEMENTS=$2; shift ;;
    --hybrid-layers) need "$@"; HYB=$2; shift ;;
    -t|--threads) need "$@"; THREADS=$2; shift ;;
    --timeout) need "$@"; TIMEOUT=$2; shift ;;
    --host-bw) need "$@"; HOST_BW=$2; shift ;;
    --gpu-bw) need "$@"; GPU_BW=$2; shift ;;
    --vs-llamacpp) need "$@"; LCPP=$2; shift ;;
    --quick) QUICK=1 ;;
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
  shift
done
if [ $QUICK = 1 ]; then N=16; KS="0,1,3"; fi
isnum() { [[ "$1" =~ ^[0-9]+$ ]]; }
isnum "$N" && [ "$N" -gt 0 ] || die "-n must be a positive number, got '$N'"
isnum "$HYB" && [ "$HYB" -gt 0 ] && [ "$HYB" -lt 1000 ] || die "--hybrid-layers must be 1..999, got '$HYB'"
isnum "$TIMEOUT" || die "--timeout must be seconds, got '$TIMEOUT'"
[ -z "$THREADS" ] || isnum "$THREADS" || die "--threads must be a number, got '$THREADS'"
BW_SOURCE="given"
[ -n "$HOST_BW" ] || { HOST_BW=103; BW_SOURCE="assumed (defaults; pass --host-bw/--gpu-bw)"; }
[ -n "$GPU_BW" ] || { GPU_BW=3350; BW_SOURCE="assumed (defaults; pass --host-bw/--gpu-bw)"; }
IFS=, read -ra KLIST <<< "$KS"
IFS=, read -ra PLIST <<< "$PLACEMENTS"
for k in "${KLIST[@]}"; do isnum "$k" || die "--ks: '$k' is not a number"; done
for p in "${PLIST[@]}"; do case $p in cpu|hybrid|gpu) ;; *) die "--placements: '$p' is not cpu, hybrid or gpu";; esac; done
PROMPTS=(code prose)

if [ -z "$BIN" ]; then
  if [ -x .dev-carry/bench/hybrid-run ]; then BIN=.dev-carry/bench/hybrid-run; else BIN=target/release/hybrid-run; fi
fi
[ $DRY = 1 ] || [ -x "$BIN" ] || die "no hybrid-run binary at $BIN (cargo build --release, or --bin)"
LBENCH=""
if [ -n "$LCPP" ]; then
  if [ -f "$LCPP" ]; then LBENCH=$LCPP
  elif [ -e "$LCPP/bin/llama-bench" ]; then LBENCH=$LCPP/bin/llama-bench
  else LBENCH=$LCPP/llama-bench; fi
  [ $DRY = 1 ] || [ -x "$LBENCH" ] || die "--vs-llamacpp: no llama-bench at $LBENCH"
fi
[ -n "$REPORT" ] || REPORT=$OUTDIR/bench-27b-mtp
CACHE=${HYBRID_CACHE:-$HOME/.cache/hybrid-run}
SYNTH=0
if [ -z "$MODEL" ]; then
  MODEL=$CACHE/synthetic-27b-q4_k_m.gguf
  [ -f "$MODEL" ] || SYNTH=1
elif [ $DRY = 0 ] && [ ! -f "$MODEL" ]; then
  die "--model $MODEL: no such file"
fi

gpu_layers() { case $1 in cpu) echo 0 ;; hybrid) echo "$HYB" ;; gpu) echo all ;; esac; }
# llama.cpp -ot pattern for "block number >= N" (the blocks whose dense FFN stays on the CPU).
ge_regex() {
  local n=$1 t=$(( $1 / 10 )) u=$(( $1 % 10 ))
  if [ "$n" -lt 10 ]; then echo "([$u-9]|[1-9][0-9]+)"
  elif [ "$n" -lt 100 ]; then
    if [ $t -lt 9 ]; then echo "($t[$u-9]|[$((t + 1))-9][0-9]|[1-9][0-9][0-9]+)"
    else echo "($t[$u-9]|[1-9][0-9][0-9]+)"; fi
  else echo "([1-9][0-9][0-9]+)"; fi   # only used for N >= 100: approximate (all 3-digit)
}
llama_split() {
  case $1 in
    cpu) echo "-ngl 0" ;;
    gpu) echo "-ngl 99" ;;
    hybrid) echo "-ngl 99 -ot blk\\.$(ge_regex "$HYB")\\.ffn_(up|down|gate)=CPU" ;;
  esac
}
say() { echo "$*"; }

# ---- synthesis --------------------------------------------------------------------------
SYNTH_CMD=("$BIN" synth --preset 27b --quant q4_k_m -o "$MODEL")
if [ $SYNTH = 1 ]; then
  say "SYNTH: ${SYNTH_CMD[*]}"
  if [ $DRY = 0 ]; then
    mkdir -p "$CACHE" || die "cannot create $CACHE"
    tmp=$MODEL.part
    "$BIN" synth --preset 27b --quant q4_k_m -o "$tmp" > /dev/null || die "synth failed"
    mv "$tmp" "$MODEL" || die "cannot move $tmp to $MODEL"
  fi
fi

if [ $DRY = 0 ]; then
  rm -rf "$OUTDIR/runs"; mkdir -p "$OUTDIR/runs" "$(dirname "$REPORT")" || die "cannot create $OUTDIR"
  : > "$OUTDIR/runs/runs.tsv"
  GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  {
    printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)"
    printf 'model\t%s\n' "$MODEL"
    printf 'model_bytes\t%s\n' "$(stat -c %s "$MODEL" 2>/dev/null || wc -c < "$MODEL")"
    printf 'host\t%s, %s CPUs\n' "$(uname -sm)" "$(nproc 2>/dev/null || echo '?')"
    printf 'gpu\t%s\n' "${GPU_NAME:-none}"
    printf 'version\t%s\n' "$("$BIN" --version 2>/dev/null | head -1)"
    printf 'n_predict\t%s\n' "$N"
    printf 'threads\t%s\n' "${THREADS:-default}"
    printf 'hybrid_layers\t%s\n' "$HYB"
    printf 'host_bw_gbs\t%s\n' "$HOST_BW"
    printf 'gpu_bw_gbs\t%s\n' "$GPU_BW"
    printf 'bw_source\t%s\n' "$BW_SOURCE"
  } > "$OUTDIR/runs/meta.tsv"
fi

# Runs "$@" with the timeout, sampling the GPU's memory; sets RC, WALL, TIMED_OUT, VRAM.
timed() {
  local out=$1 err=$2; shift 2
  local vfile="$OUTDIR/runs/vram.tmp" vpid=""
  VRAM=""
  if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$vfile" 2>/dev/null &
    vpid=$!
  fi
  local t0; t0=$(date +%s.%N)
  timeout "$TIMEOUT" "$@" > "$out" 2> "$err"
  RC=$?
  WALL=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  TIMED_OUT=0; [ $RC = 124 ] && TIMED_OUT=1
  if [ -n "$vpid" ]; then
    kill "$vpid" 2>/dev/null; wait "$vpid" 2>/dev/null
    VRAM=$(awk 'BEGIN { m = "" } /^[0-9]+/ { if (m == "" || $1 + 0 > m) m = $1 + 0 } END { print m }' "$vfile")
  fi
}
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUTDIR/runs/runs.tsv"; }

# ---- hybrid-run matrix ------------------------------------------------------------------
for place in "${PLIST[@]}"; do
  for prompt in "${PROMPTS[@]}"; do
    for k in "${KLIST[@]}"; do
      tag=$place-$prompt-k$k
      cmd=("$BIN" -m "$MODEL" -f "bench-scripts/prompts/$prompt.txt" -n "$N" --temp 0 --seed 0
           --draft mtp --draft-n "$k" --gpu-layers "$(gpu_layers "$place")" --no-display-prompt
           --stats-json "$OUTDIR/runs/$tag.json")
      [ -z "$THREADS" ] || cmd+=(-t "$THREADS")
      say "RUN $tag: ${cmd[*]}"
      [ $DRY = 1 ] && continue
      rm -f "$OUTDIR/runs/$tag.json"
      timed "$OUTDIR/runs/$tag.txt" "$OUTDIR/runs/$tag.err" "${cmd[@]}"
      stats=$tag.json; [ -f "$OUTDIR/runs/$stats" ] || stats=""
      record "$tag" hybrid-run "$place" "$prompt" "$k" "$RC" "$WALL" "$TIMED_OUT" "$VRAM" "$stats" "$tag.txt"
      echo "  rc $RC, ${WALL} s$([ $TIMED_OUT = 1 ] && echo ', TIMED OUT')"
    done
  done
done

# ---- llama.cpp rows (same model, same split, same prompt length) -----------------------
if [ -n "$LBENCH" ]; then
  for place in "${PLIST[@]}"; do
    for prompt in "${PROMPTS[@]}"; do
      tag=llamacpp-$place-$prompt
      np="<n_prompt:$prompt>"
      if [ $DRY = 0 ]; then
        np=""
        for f in "$OUTDIR"/runs/*-"$prompt"-k0.json; do
          [ -f "$f" ] && np=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["n_prompt"])' "$f" 2>/dev/null) && break
        done
        [ -n "$np" ] || { echo "  $tag: no MTP-off run of this prompt to take its length from; skipped"; continue; }
      fi
      read -ra split <<< "$(llama_split "$place")"
      cmd=("$LBENCH" -m "$MODEL" -p "$np" -n "$N" -r 1 -fa 1 "${split[@]}" -o json)
      [ -z "$THREADS" ] || cmd+=(-t "$THREADS")
      say "RUN $tag: ${cmd[*]}"
      [ $DRY = 1 ] && continue
      timed "$OUTDIR/runs/$tag.json" "$OUTDIR/runs/$tag.err" "${cmd[@]}"
      record "$tag" llama.cpp "$place" "$prompt" 0 "$RC" "$WALL" "$TIMED_OUT" "$VRAM" "$tag.json" ""
      echo "  rc $RC, ${WALL} s$([ $TIMED_OUT = 1 ] && echo ', TIMED OUT')"
    done
  done
fi

say "REPORT: python3 bench-scripts/bench_27b_report.py $OUTDIR/runs $REPORT"
[ $DRY = 1 ] && exit 0
rm -f "$OUTDIR/runs/vram.tmp"
python3 bench-scripts/bench_27b_report.py "$OUTDIR/runs" "$REPORT"
