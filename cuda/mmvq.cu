// mmvq.cu: weight-stationary mat-vec, out[t][r] = sum_c W[r][c] * x[t][c] for K = 1..8 tokens.
//
// Each warp owns R consecutive rows and walks them once; every weight byte is loaded from
// device memory once per call whatever K is, and the K activation rows come from L1/L2.
// Quantized weights (Q4_K, Q5_K, Q6_K, Q8_0) take activations quantized to 8 bits per
// 32-block (quantize_q8_1: d = amax / 127, q = roundf(x / d), s = d * sum(q), all f32) and use
// exact integer dp4a dots per group; float weights (F32, F16, BF16) take the f32 activations.
// Per-token results do not depend on K: each token's accumulation order is the same in every
// instance, and lanes reduce with the same butterfly.
#include "common.cuh"
#include "quant.cuh"

#define FMT_F32 4
#define FMT_F16 5
#define FMT_BF16 6

#define MMV_WARPS 4

// x: [nblocks][32] f32 -> q: int8 [nblocks][32], ds: [nblocks] (d, s). One warp per block.
extern "C" __global__ void quantize_q8_1(const float* __restrict__ x, i8* __restrict__ q,
                                         float2* __restrict__ ds, int nblocks) { PDL_ENTER();
    const int b = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
    const int lane = threadIdx.x & 31;
    if (b >= nblocks) return;  // whole warps leave together
    const float v = x[(size_t)b * 32 + lane];
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const int qi = amax == 0.0f ? 0 : (int)roundf(v / d);
    q[(size_t)b * 32 + lane] = (i8)qi;
    const int sum = warp_sum_int(qi);
    if (lane == 0) {
        float2 r;
        r.x = d;
        r.y = d * (float)sum;
        ds[b] = r;
    }
}

// Rows per warp: more rows share each activation load, which keeps L1 traffic per weight
// byte bounded as K grows. Warps walk row groups grid-stride (row0 += all warps of the grid
// x R), so any grid size covers every row; the launcher sizes the grid from its own idea of
// R and may cap it. The defaults below can be overridden with -D for tuning.
#ifndef MMV_R_SMALL
#define MMV_R_SMALL 2
#endif
#ifndef MMV_R_LARGE
#define MMV_R_LARGE 4
#endif
#ifndef MMV_U_SMALL
#define MMV_U_SMALL 2
#endif
// K = 1 on its own (rows per warp, units per lane per step). One unit per lane per step
// measured best on the H200 (bench-scripts/mmv-variants.sh, 2026-11-22 session 4): against
// two, Q4_K 17408x5120 22.0 -> 17.2 us, 5120x17408 25.3 -> 18.4 us, Q6_K 35.6 -> 29.9 and
// 47.9 -> 34.8 us, Q8_0 5120x17408 55.4 -> 47.8 us; 27B decode 98.5 -> 118.8 t/s. (Fewer
// registers, more resident warps: the clamped second unit of a short row cost a round trip.)
#ifndef MMV_R1
#define MMV_R1 2
#endif
#ifndef MMV_U1
#define MMV_U1 1
#endif
// Measured on the H200 (gpu-check --bench, 27B FFN shapes): at K = 4, four rows per warp
// instead of two cut Q4_K 32.5 -> 26.7 us (17408x5120) and 47.7 -> 34.6 us (5120x17408),
// Q6_K 64.9 -> 44.6 and 85.1 -> 56.9 us, but slowed Q8_0 5120x17408 84 -> 113 us; so K >= 3
// takes four rows except for Q8_0 (two up to K = 4).
template <int K>
struct RowsPerWarp {
    static constexpr int R = K <= 2 ? MMV_R_SMALL : MMV_R_LARGE;
};
template <int FMT, int K>
struct RowsPerWarpQ {
    static constexpr int R = K == 1 ? MMV_R1
                             : (K <= 2 || (FMT == FMT_Q8_0 && K <= 4)) ? MMV_R_SMALL
                                                                       : MMV_R_LARGE;
};

// IPG activation ints (4 * IPG quants) from a 4 * IPG-byte aligned address.
template <int IPG>
__device__ __forceinline__ void load_acts(const i8* p, int* a);
template <>
__device__ __forceinline__ void load_acts<4>(const i8* p, int* a) {
    const int4 v = *(const int4*)p;
    a[0] = v.x; a[1] = v.y; a[2] = v.z; a[3] = v.w;
}
template <>
__device__ __forceinline__ void load_acts<2>(const i8* p, int* a) {
    const int2 v = *(const int2*)p;
    a[0] = v.x; a[1] = v.y;
}

template <int R, int K>
__device__ __forceinline__ void reduce_store(float (&acc)[R][K], float* out, int row0, int rows) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < K; t++) {
            const float v = warp_sum(acc[r][t]);
            if (lane == 0 && row0 + r < rows) out[(size_t)t * rows + row0 + r] = v;
        }
}

// One lane's share of the row group row0 .. row0 + R - 1 of W (rows x row_bytes); aq: [K][n]
// int8; ads: [K][n/32] (d, s). The lane walks units first, first + stride, ... of its R rows
// and leaves its partial sums in acc (the caller reduces them): stride 32 when a warp owns
// whole rows, 32 * warps when the warps of a CTA split the columns of one row group
// (mmvq_body's split form).
template <int FMT, int K>
__device__ __forceinline__ void mmvq_lane(const u8* __restrict__ W, u64 row_bytes, int rows, int n,
                                          const i8* __restrict__ aq, const float2* __restrict__ ads,
                                          int row0, int first, int stride,
                                          float (&acc)[RowsPerWarpQ<FMT, K>::R][K]) {
    typedef Fmt<FMT> F;
    constexpr int R = RowsPerWarpQ<FMT, K>::R;
    const int units = (n / F::QK) * F::PARTS;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < K; t++) acc[r][t] = 0.0f;

    // U units per lane per step, all loads issued before any math (memory-level parallelism).
    constexpr int U = K == 1 ? MMV_U1 : K <= 2 ? MMV_U_SMALL : 1;
    for (int u0 = first; u0 < units; u0 += stride * U) {
        Unit<F::G, F::IPG> w[U][R];
#pragma unroll
        for (int j = 0; j < U; j++) {
            const int u = min(u0 + stride * j, units - 1);  // a clamped unit is loaded, not used
            const int b = u / F::PARTS, p = u % F::PARTS;
#pragma unroll
            for (int r = 0; r < R; r++) {
                const int row = min(row0 + r, rows - 1);  // tail rows are computed, never stored
                F::load(W + (size_t)row * row_bytes + (size_t)b * F::BYTES, p, w[j][r]);
            }
        }
#pragma unroll
        for (int j = 0; j < U; j++) {
            const int u = u0 + stride * j;
            if (u >= units) break;
            const int b = u / F::PARTS, p = u % F::PARTS;
#pragma unroll
            for (int t = 0; t < K; t++) {
#pragma unroll
                for (int g = 0; g < F::G; g++) {
                    const int e = b * F::QK + F::elem(p, g);
                    const size_t ai = (size_t)t * n + e;
                    int a[F::IPG];
                    load_acts<F::IPG>(aq + ai, a);
                    const float2 ds = ads[ai >> 5];
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        int s = 0;
#pragma unroll
                        for (int i = 0; i < F::IPG; i++) s = dp4a(w[j][r].q[g][i], a[i], s);
                        // Explicit roundings (no contraction choices left to the compiler), the
                        // same expression for every K, so a token's result does not depend on K.
                        float a_ = __fmaf_rn(ds.x, __fmul_rn(w[j][r].sc[g], (float)s), acc[r][t]);
                        if (w[j][r].add_min) a_ = __fmaf_rn(-w[j][r].mn[g], ds.y, a_);
                        acc[r][t] = a_;
                    }
                }
            }
        }
    }
}

// One warp's row group: rows row0 .. row0 + R - 1 of W (rows x row_bytes); aq: [K][n] int8;
// ads: [K][n/32] (d, s); out: [K][rows].
template <int FMT, int K>
__device__ __forceinline__ void mmvq_group(const u8* __restrict__ W, u64 row_bytes, int rows, int n,
                                           const i8* __restrict__ aq, const float2* __restrict__ ads,
                                           float* __restrict__ out, int row0) {
    float acc[RowsPerWarpQ<FMT, K>::R][K];
    mmvq_lane<FMT, K>(W, row_bytes, rows, n, aq, ads, row0, threadIdx.x & 31, 32, acc);
    reduce_store<RowsPerWarpQ<FMT, K>::R, K>(acc, out, row0, rows);
}

// W: rows x row_bytes; aq: [K][n] int8; ads: [K][n/32] (d, s); out: [K][rows].
// split == 0: each warp owns whole row groups. split != 0 (wide matrices, chosen by the
// launcher from the shape alone, so every K of one matrix takes the same form): the warps of
// a CTA share one row group and split its units (warp w takes lanes' units lane + 32w,
// + 32 * warps, ...); the per-warp sums are added in warp order through shared memory. A
// 5120 x 17408 matrix then runs on 4x the warps with a quarter of the sequential steps.
template <int FMT, int K>
__device__ __forceinline__ void mmvq_body(const u8* __restrict__ W, u64 row_bytes, int rows, int n,
                                          const i8* __restrict__ aq, const float2* __restrict__ ads,
                                          float* __restrict__ out, int split) {
    constexpr int R = RowsPerWarpQ<FMT, K>::R;
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (!split) {
        for (int row0 = (blockIdx.x * warps + warp) * R; row0 < rows; row0 += gridDim.x * warps * R)
            mmvq_group<FMT, K>(W, row_bytes, rows, n, aq, ads, out, row0);
        return;
    }
    __shared__ float red[MMV_WARPS][R][K];
    for (int row0 = blockIdx.x * R; row0 < rows; row0 += gridDim.x * R) {  // CTA-uniform
        float acc[R][K];
        mmvq_lane<FMT, K>(W, row_bytes, rows, n, aq, ads, row0, lane + 32 * warp, 32 * warps, acc);
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < K; t++) {
                const float v = warp_sum(acc[r][t]);
                if (lane == 0) red[warp][r][t] = v;
            }
        __syncthreads();
        if ((int)threadIdx.x < R * K) {
            const int r = threadIdx.x / K, t = threadIdx.x % K;
            float s = red[0][r][t];
            for (int w = 1; w < warps; w++) s += red[w][r][t];
            if (row0 + r < rows) out[(size_t)t * rows + row0 + r] = s;
        }
        __syncthreads();  // red is reused by the next row group
    }
}

// Float weights: a unit is 16 bytes (8 f16/bf16 or 4 f32 weights); x: [K][n] f32.
template <int FMT>
struct FloatFmt;
template <>
struct FloatFmt<FMT_F32> {
    static constexpr int EPU = 4;
    __device__ static void load(const u8* p, float* w) {
        const float4 v = *(const float4*)p;
        w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
    }
};
template <>
struct FloatFmt<FMT_F16> {
    static constexpr int EPU = 8;
    __device__ static void load(const u8* p, float* w) {
        const uint4 v = *(const uint4*)p;
        const u32 x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = f16_to_f32((u16)(x[i] & 0xFFFF));
            w[2 * i + 1] = f16_to_f32((u16)(x[i] >> 16));
        }
    }
};
template <>
struct FloatFmt<FMT_BF16> {
    static constexpr int EPU = 8;
    __device__ static void load(const u8* p, float* w) {
        const uint4 v = *(const uint4*)p;
        const u32 x[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            w[2 * i] = bf16_to_f32((u16)(x[i] & 0xFFFF));
            w[2 * i + 1] = bf16_to_f32((u16)(x[i] >> 16));
        }
    }
};

template <int FMT, int K>
__device__ __forceinline__ void mmvf_body(const u8* __restrict__ W, u64 row_bytes, int rows, int n,
                                          const float* __restrict__ x, float* __restrict__ out) {
    typedef FloatFmt<FMT> F;
    constexpr int R = RowsPerWarp<K>::R;
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const int units = n / F::EPU;
    for (int row0 = (blockIdx.x * warps + (threadIdx.x >> 5)) * R; row0 < rows;
         row0 += gridDim.x * warps * R) {
    float acc[R][K];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < K; t++) acc[r][t] = 0.0f;
    for (int u = lane; u < units; u += 32) {
        float w[R][F::EPU];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int row = min(row0 + r, rows - 1);
            F::load(W + (size_t)row * row_bytes + (size_t)u * 16, w[r]);
        }
#pragma unroll
        for (int t = 0; t < K; t++) {
            float a[F::EPU];
#pragma unroll
            for (int i = 0; i < F::EPU; i += 4) {
                const float4 v = *(const float4*)(x + (size_t)t * n + (size_t)u * F::EPU + i);
                a[i] = v.x; a[i + 1] = v.y; a[i + 2] = v.z; a[i + 3] = v.w;
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                float s = acc[r][t];
#pragma unroll
                for (int i = 0; i < F::EPU; i++) s = __fmaf_rn(w[r][i], a[i], s);
                acc[r][t] = s;
            }
        }
    }
    reduce_store<R, K>(acc, out, row0, rows);
    }
}

#define MMVQ(name, FMT, K)                                                                       \
    extern "C" __global__ void __launch_bounds__(32 * MMV_WARPS)                                 \
        name(const u8* W, u64 row_bytes, int rows, int n, const i8* aq, const float2* ads,       \
             float* out, int split) { PDL_ENTER();                                               \
        mmvq_body<FMT, K>(W, row_bytes, rows, n, aq, ads, out, split);                           \
    }
#define MMVF(name, FMT, K)                                                                       \
    extern "C" __global__ void __launch_bounds__(32 * MMV_WARPS)                                 \
        name(const u8* W, u64 row_bytes, int rows, int n, const float* x, float* out) { PDL_ENTER();          \
        mmvf_body<FMT, K>(W, row_bytes, rows, n, x, out);                                        \
    }
#define ALL_K(M, fmt, FMT)                                                                       \
    M(mmv_##fmt##_k1, FMT, 1) M(mmv_##fmt##_k2, FMT, 2) M(mmv_##fmt##_k3, FMT, 3)                \
    M(mmv_##fmt##_k4, FMT, 4) M(mmv_##fmt##_k5, FMT, 5) M(mmv_##fmt##_k6, FMT, 6)                \
    M(mmv_##fmt##_k7, FMT, 7) M(mmv_##fmt##_k8, FMT, 8)

ALL_K(MMVQ, q4_k, FMT_Q4_K)
ALL_K(MMVQ, q5_k, FMT_Q5_K)
ALL_K(MMVQ, q6_k, FMT_Q6_K)
ALL_K(MMVQ, q8_0, FMT_Q8_0)
ALL_K(MMVF, f32, FMT_F32)
ALL_K(MMVF, f16, FMT_F16)
ALL_K(MMVF, bf16, FMT_BF16)
