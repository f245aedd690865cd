#!/usr/bin/env bash
# Single-thread Q4_K x Q8_K vec-dot rate of llama.cpp's CPU backend (the oracle wheel's
# libggml-cpu, llama-cpp-python 0.3.36) on the 27B gate shape (17408 x 5120), for the
# comparison issue #3 asks for. Writes a small C program (ours) that quantizes random weights
# with ggml_quantize_chunk, the activations with the CPU type traits' from_float, and times
# `vec_dot` over every row, one thread. Like kernel-bench, it cycles through copies of the
# weights totalling >= 2 GiB so every pass streams them from DRAM, not from the LLC.
# Needs: bash scripts/setup-llamacpp.sh (the wheel and its cached source package), a C compiler.
# Prints one line: "llama.cpp vec_dot Q4_K 17408x5120, 1 thread: X ms per pass, Y GB/s".
set -euo pipefail
SITE=$(python3 -c "import llama_cpp, os; print(os.path.dirname(llama_cpp.__file__))")
SDIST=${HYBRID_CACHE:-$HOME/.cache/hybrid-run}/sdist/llama_cpp_python-0.3.36.tar.gz
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
tar -xzf "$SDIST" -C "$W" llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/include
INC=$W/llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/include
cat > "$W/vd.c" <<'C'
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ggml.h"
#include "ggml-cpu.h"
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(void) {
    const int64_t rows = 17408, cols = 5120;
    ggml_cpu_init();
    const struct ggml_type_traits_cpu *tr = ggml_get_type_traits_cpu(GGML_TYPE_Q4_K);
    float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * cols);
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < rows * cols; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; w[i] = (float)((s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }
    for (int64_t i = 0; i < cols; i++) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; x[i] = (float)((s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f; }
    const size_t rb = ggml_row_size(GGML_TYPE_Q4_K, cols);
    uint8_t *q = malloc(rb * rows);
    ggml_quantize_chunk(GGML_TYPE_Q4_K, w, q, 0, rows, cols, NULL);
    uint8_t *xq = malloc(ggml_row_size(tr->vec_dot_type, cols));
    ggml_get_type_traits_cpu(tr->vec_dot_type)->from_float(x, xq, cols);
    float *out = malloc(sizeof(float) * rows);
    const size_t mat = rb * rows;
    const int copies = (int)((2ull << 30) / mat + 1);
    uint8_t *qs = malloc(mat * copies);
    for (int c = 0; c < copies; c++) memcpy(qs + (size_t)c * mat, q, mat);
    double best = 1e9;
    for (int rep = 0; rep < 2 * copies; rep++) {
        const uint8_t *qc = qs + (size_t)(rep % copies) * mat;
        double t0 = now();
        for (int64_t r = 0; r < rows; r++) tr->vec_dot((int)cols, &out[r], 0, qc + r * rb, 0, xq, 0, 1);
        double t = now() - t0;
        if (rep > 0 && t < best) best = t;
    }
    double sum = 0; for (int64_t r = 0; r < rows; r++) sum += out[r];
    printf("llama.cpp vec_dot Q4_K %lldx%lld, 1 thread, %d rotating copies: %.2f ms per pass (best), %.2f GB/s (checksum %.3f)\n",
           (long long)rows, (long long)cols, copies, best * 1e3, rb * rows / best / 1e9, sum);
    return 0;
}
C
cc -O2 -o "$W/vd" "$W/vd.c" -I"$INC" -L"$SITE/lib" -lggml-cpu -lggml-base -Wl,-rpath,"$SITE/lib"
"$W/vd"
