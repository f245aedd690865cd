#!/usr/bin/env bash
# Mat-vec kernel variants timed without rebuilding (GPU host): each variant is cuda/ with some
# #define defaults of mmvq.cu changed, loaded through HYBRID_CUDA_SRC_DIR, and timed by
# `gpu-check --bench --bench-only` (27B FFN shapes, k = 1/2/4/8, against a device copy).
#
# Usage: bench-scripts/mmv-variants.sh TYPES VARIANT...
#   TYPES    e.g. Q4_K or Q4_K,Q6_K
#   VARIANT  base                      the embedded sources
#            NAME:MACRO=VAL[,MACRO=VAL][+ENV=VAL] mmvq.cu / *.cuh with those #define values
#                                      (and, after a +, an environment variable set)
#            NAME@FILE                  FILE in place of mmvq.cu (e.g. an older version)
#            NAME+ENV=VAL               base sources with an environment variable set
# Binary: $GPU_CHECK_BIN (default .dev-carry/gpu/gpu-check). Logs: $OUT (or /tmp/mmv).
# CHECK=1: run gpu-check's correctness checks with each variant's sources (not base) before timing it.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${GPU_CHECK_BIN:-.dev-carry/gpu/gpu-check}
OUT=${OUT:-/tmp/mmv}
SRC=$(mktemp -d)  # variant sources (not under $OUT: only the logs come back)
mkdir -p "$OUT"
types=$1
shift
for v in "$@"; do
    unset HYBRID_CUDA_SRC_DIR
    envset=()
    name=$v
    case "$v" in
    base) ;;
    *@*)
        name=${v%%@*}
        d="$SRC/$name"; mkdir -p "$d"; cp cuda/*.cuh "$d/"; cp "${v#*@}" "$d/mmvq.cu"
        export HYBRID_CUDA_SRC_DIR=$d ;;
    *:*)
        name=${v%%:*}
        d="$SRC/$name"; mkdir -p "$d"; cp cuda/*.cuh cuda/mmvq.cu "$d/"
        macros=${v#*:}
        case "$macros" in *+*) envset=("${macros#*+}"); macros=${macros%%+*} ;; esac
        IFS=, read -ra defs <<< "$macros"
        for def in "${defs[@]}"; do
            m=${def%%=*}; val=${def#*=}
            f=$(grep -l "^#define $m " "$d"/mmvq.cu "$d"/*.cuh | head -1)
            [ -n "$f" ] || { echo "variant $name: no #define $m"; continue 2; }
            sed -i "s/^#define $m .*/#define $m $val/" "$f"
        done
        export HYBRID_CUDA_SRC_DIR=$d ;;
    *+*)
        name=${v%%+*}
        envset=("${v#*+}") ;;
    esac
    echo "== variant $name ($v)"
    if [ "${CHECK:-0}" = 1 ] && [ "$v" != base ]; then
        env "${envset[@]}" "$BIN" > "$OUT/$name.check.log" 2>&1
        grep -E "FAIL|passed, .* failed" "$OUT/$name.check.log" | head -8 | sed "s/^/$name check: /"
    fi
    env "${envset[@]}" "$BIN" --bench --bench-only --bench-types "$types" > "$OUT/$name.log" 2>&1
    grep -E "^bench: (device|Q|type)|failed|error" "$OUT/$name.log" | sed "s/^bench:/$name:/"
done
