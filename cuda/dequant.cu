// dequant.cu: the prefill GEMM path's conversions to f16 (cuBLAS multiplies f16 x f16 with
// f32 accumulation, src/gpu/ops/gemm.rs).
//
// dequant_<fmt>_f16: W (rows x row_bytes, GGUF blocks) -> out [rows][n] f16, decoding with the
// same Fmt<>::load as the mat-vec (quant.cuh): weight = sc[g] * q - mn[g], rounded to f16
// (round to nearest even). One thread per (row, part) unit, grid-stride.
// f32_to_f16: activations [n] f32 -> f16.
#include "common.cuh"
#include "quant.cuh"

#define FMT_F32 4
#define FMT_F16 5
#define FMT_BF16 6

template <int FMT>
__device__ __forceinline__ void dequant_body(const u8* __restrict__ W, u64 row_bytes, int rows,
                                             int n, u32* __restrict__ out) {
    typedef Fmt<FMT> F;
    const long long per_row = (long long)(n / F::QK) * F::PARTS;
    const long long total = (long long)rows * per_row;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long row = i / per_row;
        const int u = (int)(i - row * per_row);
        const int b = u / F::PARTS, p = u % F::PARTS;
        Unit<F::G, F::IPG> w;
        load_unit<FMT>(W + (size_t)row * row_bytes, n / F::QK, b, p, w);
        // out as u32 pairs of f16; every group start is a multiple of 4 weights.
        u32* o = out + ((size_t)row * n + (size_t)b * F::QK) / 2;
#pragma unroll
        for (int g = 0; g < F::G; g++) {
            const int e = F::elem(p, g);
#pragma unroll
            for (int k = 0; k < F::IPG; k++) {
                const int v = w.q[g][k];
                float f[4];
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int byte = (v >> (8 * j)) & 0xFF;
                    const int q = (F::U8 ? byte : (int)(signed char)byte) - F::ZERO;
                    f[j] = __fsub_rn(__fmul_rn(w.sc[g], (float)q), w.mn[g]);
                }
                const int at = (e + 4 * k) / 2;
                o[at] = (u32)f32_to_f16(f[0]) | ((u32)f32_to_f16(f[1]) << 16);
                o[at + 1] = (u32)f32_to_f16(f[2]) | ((u32)f32_to_f16(f[3]) << 16);
            }
        }
    }
}

// Float weights: 2 values per thread step.
template <int FMT>
__device__ __forceinline__ float float_at(const u8* row, int c);
template <>
__device__ __forceinline__ float float_at<FMT_F32>(const u8* row, int c) { return ((const float*)row)[c]; }
template <>
__device__ __forceinline__ float float_at<FMT_F16>(const u8* row, int c) { return f16_to_f32(((const u16*)row)[c]); }
template <>
__device__ __forceinline__ float float_at<FMT_BF16>(const u8* row, int c) { return bf16_to_f32(((const u16*)row)[c]); }

template <int FMT>
__device__ __forceinline__ void dequant_float_body(const u8* __restrict__ W, u64 row_bytes, int rows,
                                                   int n, u32* __restrict__ out) {
    const long long per_row = n / 2;
    const long long total = (long long)rows * per_row;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long row = i / per_row;
        const int c = 2 * (int)(i - row * per_row);
        const u8* r = W + (size_t)row * row_bytes;
        out[i] = (u32)f32_to_f16(float_at<FMT>(r, c)) | ((u32)f32_to_f16(float_at<FMT>(r, c + 1)) << 16);
    }
}

#define DEQ(name, FMT)                                                                           \
    extern "C" __global__ void name(const u8* W, u64 row_bytes, int rows, int n, u32* out) { PDL_ENTER();     \
        dequant_body<FMT>(W, row_bytes, rows, n, out);                                           \
    }
#define DEQF(name, FMT)                                                                          \
    extern "C" __global__ void name(const u8* W, u64 row_bytes, int rows, int n, u32* out) { PDL_ENTER();     \
        dequant_float_body<FMT>(W, row_bytes, rows, n, out);                                     \
    }

DEQ(dequant_q4_k_f16, FMT_Q4_K)
DEQ(dequant_q5_k_f16, FMT_Q5_K)
DEQ(dequant_q6_k_f16, FMT_Q6_K)
DEQ(dequant_q8_0_f16, FMT_Q8_0)
DEQ(dequant_q6_k_r_f16, FMT_Q6_K_R)
DEQ(dequant_q8_0_r_f16, FMT_Q8_0_R)
DEQF(dequant_f32_f16, FMT_F32)
DEQF(dequant_f16_f16, FMT_F16)
DEQF(dequant_bf16_f16, FMT_BF16)

extern "C" __global__ void f32_to_f16_rn(const float* __restrict__ x, u16* __restrict__ y, long long n) { PDL_ENTER();
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x)
        y[i] = f32_to_f16(x[i]);
}
