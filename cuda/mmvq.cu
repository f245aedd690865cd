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
    if (b >= nblocks) return;  // whole warps leave together
    q8_1_block(x[(size_t)b * 32 + (threadIdx.x & 31)], q + (size_t)b * 32, ds + b);
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
// Q4_K at K = 1 in the whole-row form: one row per warp. Measured on the H100
// (bench-scripts/mmv-variants.sh, 2026-12-06 session 10, one call): 17408x5120 20.8 -> 19.7
// us (79.6 -> 84.0% of the copy), but the split form 20.5 -> 21.5 and Q6_K 32.5 -> 35.9 (tall)
// / 33.5 -> 35.1 (split) with one row, so only this pair takes it. Rows per warp never change a
// row's float order (its lanes and units are the same for any R), only how many rows a warp
// walks at once.
#ifndef MMV_R1_Q4K_WHOLE
#define MMV_R1_Q4K_WHOLE 1
#endif
template <int FMT, int K, bool SPLIT>
struct RowsPerWarpQ {
    static constexpr int R = K == 1 ? (FMT == FMT_Q4_K && !SPLIT ? MMV_R1_Q4K_WHOLE : MMV_R1)
                             : (K <= 2 || ((FMT == FMT_Q8_0 || FMT == FMT_Q8_0_R) && K <= 4)) ? MMV_R_SMALL
                                                                       : MMV_R_LARGE;
};

// MMV_PF: software prefetch of the weights of the step MMV_PF_DIST steps ahead, issued after
// a step's loads and before its math, for K >= MMV_PF_MIN_K (prefetch_unit in quant.cuh;
// 0 off, 1 into L2, 2 into L1). Why: at K >= 2 a lane's math per step grows with K while its
// loads do not, and a warp waits for its next step's weights only after that math, so
// memory and math take turns instead of overlapping (Q4_K 17408x5120 on the H100: 20.8 us
// at K = 1, 27.3 at K = 4, where the memory floor is 16.6 us and the K = 4 issue time about
// 11). A prefetch keeps the next step's bytes in flight during the math. It changes no
// arithmetic: results are bit-identical with any setting. Tuning knobs for
// bench-scripts/mmv-variants.sh; 0 (off) until timed.
#ifndef MMV_PF
#define MMV_PF 0
#endif
#ifndef MMV_PF_MIN_K
#define MMV_PF_MIN_K 2
#endif
#ifndef MMV_PF_DIST
#define MMV_PF_DIST 1
#endif

// IPG activation ints (4 * IPG quants) from a 4 * IPG-byte aligned address.
template <int IPG>
__device__ __forceinline__ void load_acts(const i8* p, int* a);
template <>
__device__ __forceinline__ void load_acts<4>(const i8* p, int* a) {
    const int4 v = *(const int4*)p;
    a[0] = v.x; a[1] = v.y; a[2] = v.z; a[3] = v.w;
}
template <>
__device__ __forceinline__ void load_acts<8>(const i8* p, int* a) {
    const int4 v = *(const int4*)p, w = *(const int4*)(p + 16);
    a[0] = v.x; a[1] = v.y; a[2] = v.z; a[3] = v.w;
    a[4] = w.x; a[5] = w.y; a[6] = w.z; a[7] = w.w;
}
template <>
__device__ __forceinline__ void load_acts<2>(const i8* p, int* a) {
    const int2 v = *(const int2*)p;
    a[0] = v.x; a[1] = v.y;
}

// Lanes of a row set: LPR = 32, a warp walks one group of R rows; LPR = 16, each half-warp
// walks its own (lanes 0-15 rows row0 .. row0 + R - 1, lanes 16-31 the next R rows).
template <int R, int K, int LPR>
__device__ __forceinline__ void reduce_store(float (&acc)[R][K], float* out, int row0, int rows) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < K; t++) {
            const float v = warp_sum<LPR>(acc[r][t]);
            if (lane % LPR == 0 && row0 + r < rows) out[(size_t)t * rows + row0 + r] = v;
        }
}

// One lane's share of the row group row0 .. row0 + R - 1 of W (rows x row_bytes); aq: [K][n]
// int8; ads: [K][n/32] (d, s). The lane walks units first, first + stride, ... of its R rows
// and leaves its partial sums in acc (the caller reduces them): stride 32 when a warp owns
// whole rows, 32 * warps when the warps of a CTA split the columns of one row group
// (mmvq_body's split form).
template <int FMT, int K, int R>
__device__ __forceinline__ void mmvq_lane(const u8* __restrict__ W, u64 row_bytes, int rows, int n,
                                          const i8* __restrict__ aq, const float2* __restrict__ ads,
                                          int row0, int first, int stride, float (&acc)[R][K]) {
    typedef Fmt<FMT> F;
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
                load_unit<FMT>(W + (size_t)row * row_bytes, n / F::QK, b, p, w[j][r]);
            }
        }
        if (MMV_PF && K >= MMV_PF_MIN_K) {
#pragma unroll
            for (int j = 0; j < U; j++) {
                // Clamped like the loads, so every address lies inside the matrix.
                const int u = min(u0 + stride * (U * MMV_PF_DIST + j), units - 1);
                const int b = u / F::PARTS, p = u % F::PARTS;
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const int row = min(row0 + r, rows - 1);
                    prefetch_unit<FMT, MMV_PF>(W + (size_t)row * row_bytes, n / F::QK, b, p);
                }
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
                    int zero = 0;  // ZERO x the sum of these activation quants (exact)
                    if (F::ZERO) {
#pragma unroll
                        for (int i = 0; i < F::IPG; i++) zero = dp4a(0x01010101, a[i], zero);
                        zero *= F::ZERO;
                    }
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        int s = -zero;
#pragma unroll
                        for (int i = 0; i < F::IPG; i++)
                            s = F::U8 ? dp4a_us(w[j][r].q[g][i], a[i], s) : dp4a(w[j][r].q[g][i], a[i], s);
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

// The CTA's per-warp sums red[w][r][t] (rows r < R, tokens t < K, written by every warp)
// added in warp order and stored as out[t][row0 + r]; rows past `rows` are not stored. Both
// forms whose warps split a row group's columns (the dp4a split form, the tensor-core kernel)
// end their row groups here, so their sums are added the same way.
template <int W, int R, int KD, int K>
__device__ __forceinline__ void store_in_warp_order(float (&red)[W][R][KD], float* __restrict__ out,
                                                    int rows, int row0) {
    __syncthreads();
    if ((int)threadIdx.x < R * K) {
        const int r = threadIdx.x / K, t = threadIdx.x % K;
        float s = red[0][r][t];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) s += red[w][r][t];
        if (row0 + r < rows) out[(size_t)t * rows + row0 + r] = s;
    }
    __syncthreads();  // red is reused by the next row group
}

// W: rows x row_bytes; aq: [K][n] int8; ads: [K][n/32] (d, s); out: [K][rows].
// split == 0: each warp owns whole row groups. split != 0 (wide matrices, chosen by the
// launcher from the shape alone, so every K of one matrix takes the same form): the warps of
// a CTA share one row group and split its units (warp w takes lanes' units lane + 32w,
// + 32 * warps, ...); the per-warp sums are added in warp order through shared memory. A
// 5120 x 17408 matrix then runs on 4x the warps with a quarter of the sequential steps.
// LPR (lanes per row set, reduce_store): 16 when a row's units fill half-warps better than
// whole warps (mmvq_lpr16).
template <int FMT, int K, int LPR>
__device__ __forceinline__ void mmvq_body(const u8* __restrict__ W, u64 row_bytes, int rows, int n,
                                          const i8* __restrict__ aq, const float2* __restrict__ ads,
                                          float* __restrict__ out, int split) {
    constexpr int SETS = 32 / LPR;
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int set = lane / LPR, sl = lane % LPR;
    if (!split) {
        constexpr int R = RowsPerWarpQ<FMT, K, false>::R, RW = R * SETS;  // rows per warp
        for (int row0 = (blockIdx.x * warps + warp) * RW; row0 < rows; row0 += gridDim.x * warps * RW) {
            float acc[R][K];
            mmvq_lane<FMT, K, R>(W, row_bytes, rows, n, aq, ads, row0 + set * R, sl, LPR, acc);
            reduce_store<R, K, LPR>(acc, out, row0 + set * R, rows);
        }
        return;
    }
    constexpr int R = RowsPerWarpQ<FMT, K, true>::R, RW = R * SETS;  // rows per warp
    __shared__ float red[MMV_WARPS][RW][K];
    for (int row0 = blockIdx.x * RW; row0 < rows; row0 += gridDim.x * RW) {  // CTA-uniform
        float acc[R][K];
        mmvq_lane<FMT, K, R>(W, row_bytes, rows, n, aq, ads, row0 + set * R, sl + LPR * warp, LPR * warps, acc);
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < K; t++) {
                const float v = warp_sum<LPR>(acc[r][t]);
                if (sl == 0) red[warp][set * R + r][t] = v;
            }
        store_in_warp_order<MMV_WARPS, RW, K, K>(red, out, rows, row0);
    }
}

// MMV_HALF 1: whether a row's units go to half-warps (LPR 16) rather than whole warps: when
// that leaves fewer idle lane-steps. units per row (Q4_K with MMV_Q4K_WIDE: 80 for 5120
// columns, 272 for 17408) against 32 lanes (or 32 x warps in the split form): 80 units take 3
// whole-warp steps (96 lane-steps) or 5 half-warp steps (80). Depends on the shape alone.
// Timed only together with the wide parts (quant.cuh), whose split-form matrices it made
// slower; 0 stays the default.
#ifndef MMV_HALF
#define MMV_HALF 0
#endif
template <int FMT>
__device__ __forceinline__ bool mmvq_lpr16(int n, int split) {
    if (!MMV_HALF) return false;
    const int units = (n / Fmt<FMT>::QK) * Fmt<FMT>::PARTS, L = split ? 32 * (int)(blockDim.x >> 5) : 32;
    const int pad32 = (units + L - 1) / L * L, pad16 = (units + L / 2 - 1) / (L / 2) * (L / 2);
    return pad16 < pad32;
}

// ---------------------------------------------------------------------------------------------
// Q4_K on the tensor cores (sm_80+): mmvt_q4_k_kK. One CTA owns 16 rows; its warps split the
// row's 256-weight blocks (warp w takes blocks w, w + warps, ...). Per 64-weight chunk of a
// block (32 bytes of nibbles) a warp issues two integer MMAs m16n8k32: A = the 16 rows' 32
// low (then high) nibbles of the chunk, i.e. one 32-weight sub-block, B = the activation
// quants of up to 8 tokens for the same 32 weights, C = the exact integer dots of every
// (row, token) pair of that sub-block. Then, per (row, token), in sub-block order:
//     acc = fma(d_act, sc * (float)C, acc); acc = fma(-mn, s_act, acc)
// (the same roundings as mmv_q4_k), and the warps' sums are added in warp order. Every token
// takes the same path whatever K is (tokens past K are zero columns of B), so a token's result
// does not depend on K or on its place in the batch; the accumulator registers do not grow
// with K, and the weights are read once per call for any K <= 8.
//
// Fragment layouts (PTX ISA, mma.m16n8k32 with .s8): lane = 4 * gq + tq; A: a0 row gq,
// bytes 4tq..4tq+3 of the K dimension, a1 row gq + 8 (same bytes), a2 row gq bytes 16 + 4tq..,
// a3 row gq + 8 (same); B: b0 bytes 4tq.. of column (token) gq, b1 bytes 16 + 4tq..; C: c0, c1
// row gq, tokens 2tq, 2tq + 1; c2, c3 row gq + 8. The K dimension may be any permutation of
// the sub-block's 32 weights as long as A and B use the same one: lane (gq, tq) puts weights
// 8tq .. 8tq + 7 of the sub-block in its bytes (4tq.. and 16 + 4tq..), which are 8
// consecutive nibbles of the row's chunk (bytes 8tq .. 8tq + 7) and 8 consecutive activation
// quants (one 8-byte load).
#ifndef MMVT_MAX_WARPS
#define MMVT_MAX_WARPS 8
#endif
// MMVT_DEPTH: blocks loaded ahead of the one computed (tuning knob for
// bench-scripts/mmv-variants.sh). Contiguous block runs per warp and cp.async staging of the
// 16-row tiles in shared memory were both slower at k = 1 (H100, 2026-12-06:
// docs/benchmarks/gpu-fused-norms-2026-12-06.md) and were removed.
#ifndef MMVT_DEPTH
#define MMVT_DEPTH 1
#endif

__device__ __forceinline__ void mma_s8_m16n8k32(int (&c)[4], int a0, int a1, int a2, int a3, int b0, int b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    // volatile, like the weight loads (ldv_*): volatile asm keeps its program order, so every
    // weight load of a block is issued before the MMAs that use the block before it.
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%10, %11, %12, %13};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0), "r"(0), "r"(0), "r"(0));
#else
    c[0] = c[1] = c[2] = c[3] = 0;  // never launched before sm_80 (src/gpu/ops/matvec.rs)
#endif
}

// Weight loads of the tensor-core kernels as volatile asm (read-only path): the compiler may
// not sink them to their first use, so a warp has the next block's bytes in flight while it
// computes the current one (without this NVCC issued each 64-weight chunk's load just before
// its MMA: four dependent DRAM round trips per block).
__device__ __forceinline__ int2 ldv_v2(const u8* p) {
    int2 v;
    asm volatile("ld.global.nc.v2.s32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}
__device__ __forceinline__ int4 ldv_v4(const u8* p) {
    int4 v;
    asm volatile("ld.global.nc.v4.s32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// The bytes of one 256-weight block of rows gq and gq + 8 that lane (gq, tq) needs.
struct BlockW {
    int4 ha, hb;         // headers (d, dmin, scales)
    int2 qa[4], qb[4];   // nibbles: bytes 32c + 8tq .. + 7 of qs, c = 0..3
    int2 hha, hhb;       // Q5_K: bytes 8tq .. + 7 of qh
};

template <bool Q5>
__device__ __forceinline__ void load_block(const u8* ba, const u8* bb, int tq, BlockW& w) {
    constexpr int QS = Q5 ? 48 : 16;
    w.ha = ldv_v4(ba);
    w.hb = ldv_v4(bb);
#pragma unroll
    for (int c = 0; c < 4; c++) {
        w.qa[c] = ldv_v2(ba + QS + 32 * c + 8 * tq);
        w.qb[c] = ldv_v2(bb + QS + 32 * c + 8 * tq);
    }
    if (Q5) {
        w.hha = ldv_v2(ba + 16 + 8 * tq);
        w.hhb = ldv_v2(bb + 16 + 8 * tq);
    } else {
        w.hha = w.hhb = make_int2(0, 0);
    }
}

// One (row, token) accumulator through one sub-block: the mat-vec's expression.
__device__ __forceinline__ float q4k_step(float acc, int c, float sc, float mn, float2 ds) {
    acc = __fmaf_rn(ds.x, __fmul_rn(sc, (float)c), acc);
    return __fmaf_rn(-mn, ds.y, acc);
}

// The warps' (row, token) sums added in warp order and stored (acc as in mmvt_k4_body).
template <int K>
__device__ __forceinline__ void mmvt_store(const float (&acc)[4], float (&red)[MMVT_MAX_WARPS][16][8],
                                           float* __restrict__ out, int rows, int row0) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int gq = lane >> 2, tq = lane & 3;
    red[warp][gq][2 * tq] = acc[0];
    red[warp][gq][2 * tq + 1] = acc[1];
    red[warp][gq + 8][2 * tq] = acc[2];
    red[warp][gq + 8][2 * tq + 1] = acc[3];
    store_in_warp_order<MMVT_MAX_WARPS, 16, 8, K>(red, out, rows, row0);
}

// Q4_K (144-byte blocks: header, qs at 16) and Q5_K (176 bytes: header, qh[32] at 16, qs at
// 48; the fifth bit of weight 64c + l is bit 2c of qh[l], of weight 64c + 32 + l bit 2c + 1).
template <int FMT, int K>
__device__ __forceinline__ void mmvt_k4_body(const u8* __restrict__ W, u64 row_bytes, int rows, int n,
                                             const i8* __restrict__ aq, const float2* __restrict__ ads,
                                             float* __restrict__ out) {
    constexpr bool Q5 = FMT == FMT_Q5_K;
    constexpr int BYTES = Q5 ? 176 : 144;
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int gq = lane >> 2, tq = lane & 3;
    const int nb = n >> 8, n32 = n >> 5;
    const int t0 = 2 * tq, t1 = 2 * tq + 1;  // this lane's two tokens in C
    __shared__ float red[MMVT_MAX_WARPS][16][8];
    for (int row0 = blockIdx.x * 16; row0 < rows; row0 += gridDim.x * 16) {  // CTA-uniform
        // Tail rows are computed from the last row and never stored.
        const u8* wa = W + (size_t)min(row0 + gq, rows - 1) * row_bytes;
        const u8* wb = W + (size_t)min(row0 + gq + 8, rows - 1) * row_bytes;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // (row gq | gq + 8) x (token t0 | t1)
        // Warp w's blocks of its 16 rows: w, w + warps, ... The next MMVT_DEPTH blocks are
        // loaded (volatile loads, so they are issued here) while one is computed.
        BlockW pf[MMVT_DEPTH];
#pragma unroll
        for (int i = 0; i < MMVT_DEPTH; i++) {
            const int b = warp + i * warps;
            if (b < nb) load_block<Q5>(wa + (size_t)b * BYTES, wb + (size_t)b * BYTES, tq, pf[i]);
        }
        for (int b = warp; b < nb; b += warps) {
            const BlockW cu = pf[0];
#pragma unroll
            for (int i = 0; i + 1 < MMVT_DEPTH; i++) pf[i] = pf[i + 1];
            const int bn = b + MMVT_DEPTH * warps;
            if (bn < nb) load_block<Q5>(wa + (size_t)bn * BYTES, wb + (size_t)bn * BYTES, tq, pf[MMVT_DEPTH - 1]);
            const int2 hha = cu.hha, hhb = cu.hhb;
            const int2* qa = cu.qa;
            const int2* qb = cu.qb;
            const K4Scales sa(cu.ha), sb(cu.hb);
#pragma unroll
            for (int c = 0; c < 4; c++) {
                // Activations of token gq for weights 64c + 8tq .. + 7 (sub-block 2c) and
                // 64c + 32 + 8tq .. + 7 (sub-block 2c + 1); zero columns past K.
                int2 xl = make_int2(0, 0), xh = make_int2(0, 0);
                if (gq < K) {
                    const i8* xp = aq + (size_t)gq * n + b * 256 + 64 * c + 8 * tq;
                    xl = *(const int2*)xp;
                    xh = *(const int2*)(xp + 32);
                }
                // (d, s) of sub-blocks 2c and 2c + 1 for tokens t0 and t1 (one 16-byte load).
                float4 s0 = make_float4(0.0f, 0.0f, 0.0f, 0.0f), s1 = s0;
                if (t0 < K) s0 = *(const float4*)(ads + (size_t)t0 * n32 + b * 8 + 2 * c);
                if (K > 1 && t1 < K) s1 = *(const float4*)(ads + (size_t)t1 * n32 + b * 8 + 2 * c);
                int la0 = qa[c].x & 0x0F0F0F0F, la1 = qa[c].y & 0x0F0F0F0F;
                int lb0 = qb[c].x & 0x0F0F0F0F, lb1 = qb[c].y & 0x0F0F0F0F;
                int ua0 = (qa[c].x >> 4) & 0x0F0F0F0F, ua1 = (qa[c].y >> 4) & 0x0F0F0F0F;
                int ub0 = (qb[c].x >> 4) & 0x0F0F0F0F, ub1 = (qb[c].y >> 4) & 0x0F0F0F0F;
                if (Q5) {
                    la0 |= (int)((((u32)hha.x >> (2 * c)) & 0x01010101u) << 4);
                    la1 |= (int)((((u32)hha.y >> (2 * c)) & 0x01010101u) << 4);
                    lb0 |= (int)((((u32)hhb.x >> (2 * c)) & 0x01010101u) << 4);
                    lb1 |= (int)((((u32)hhb.y >> (2 * c)) & 0x01010101u) << 4);
                    ua0 |= (int)((((u32)hha.x >> (2 * c + 1)) & 0x01010101u) << 4);
                    ua1 |= (int)((((u32)hha.y >> (2 * c + 1)) & 0x01010101u) << 4);
                    ub0 |= (int)((((u32)hhb.x >> (2 * c + 1)) & 0x01010101u) << 4);
                    ub1 |= (int)((((u32)hhb.y >> (2 * c + 1)) & 0x01010101u) << 4);
                }
                int cl[4], ch[4];
                mma_s8_m16n8k32(cl, la0, lb0, la1, lb1, xl.x, xl.y);
                mma_s8_m16n8k32(ch, ua0, ub0, ua1, ub1, xh.x, xh.y);
                const float2 dl0 = make_float2(s0.x, s0.y), dh0 = make_float2(s0.z, s0.w);
                const float2 dl1 = make_float2(s1.x, s1.y), dh1 = make_float2(s1.z, s1.w);
                // Sub-block 2c, then 2c + 1 (token t1 is never stored when K = 1).
                const float sla = sa.sc(2 * c), mla = sa.mn(2 * c), slb = sb.sc(2 * c), mlb = sb.mn(2 * c);
                acc[0] = q4k_step(acc[0], cl[0], sla, mla, dl0);
                acc[2] = q4k_step(acc[2], cl[2], slb, mlb, dl0);
                if (K > 1) {
                    acc[1] = q4k_step(acc[1], cl[1], sla, mla, dl1);
                    acc[3] = q4k_step(acc[3], cl[3], slb, mlb, dl1);
                }
                const float sha = sa.sc(2 * c + 1), mha = sa.mn(2 * c + 1);
                const float shb = sb.sc(2 * c + 1), mhb = sb.mn(2 * c + 1);
                acc[0] = q4k_step(acc[0], ch[0], sha, mha, dh0);
                acc[2] = q4k_step(acc[2], ch[2], shb, mhb, dh0);
                if (K > 1) {
                    acc[1] = q4k_step(acc[1], ch[1], sha, mha, dh1);
                    acc[3] = q4k_step(acc[3], ch[3], shb, mhb, dh1);
                }
            }
        }
        mmvt_store<K>(acc, red, out, rows, row0);
    }
}

#define MMVT(name, FMT, K)                                                                       \
    extern "C" __global__ void __launch_bounds__(32 * MMVT_MAX_WARPS)                            \
        name(const u8* W, u64 row_bytes, int rows, int n, const i8* aq, const float2* ads,       \
             float* out) { PDL_ENTER();                                                          \
        mmvt_k4_body<FMT, K>(W, row_bytes, rows, n, aq, ads, out);                               \
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
    reduce_store<R, K, 32>(acc, out, row0, rows);
    }
}

// MMV_MIN_BLOCKS > 0: ask the compiler for that many resident CTAs per SM in the quantized
// mat-vecs with K >= 3 (a register cap: at K = 4 the Q4_K kernel takes 127 registers, 16
// warps per SM).
// Tuning knob for bench-scripts/mmv-variants.sh; 0 leaves the launch bounds as they were.
#ifndef MMV_MIN_BLOCKS
#define MMV_MIN_BLOCKS 0
#endif
#define MMVQ_BOUNDS_1 __launch_bounds__(32 * MMV_WARPS)
#define MMVQ_BOUNDS_2 MMVQ_BOUNDS_1
#if MMV_MIN_BLOCKS > 0
#define MMVQ_BOUNDS_3 __launch_bounds__(32 * MMV_WARPS, MMV_MIN_BLOCKS)
#else
#define MMVQ_BOUNDS_3 MMVQ_BOUNDS_1
#endif
#define MMVQ_BOUNDS_4 MMVQ_BOUNDS_3
#define MMVQ_BOUNDS_5 MMVQ_BOUNDS_3
#define MMVQ_BOUNDS_6 MMVQ_BOUNDS_3
#define MMVQ_BOUNDS_7 MMVQ_BOUNDS_3
#define MMVQ_BOUNDS_8 MMVQ_BOUNDS_3
#define MMVQ(name, FMT, K)                                                                       \
    extern "C" __global__ void MMVQ_BOUNDS_##K                                                   \
        name(const u8* W, u64 row_bytes, int rows, int n, const i8* aq, const float2* ads,       \
             float* out, int split) { PDL_ENTER();                                               \
        if (mmvq_lpr16<FMT>(n, split))                                                           \
            mmvq_body<FMT, K, 16>(W, row_bytes, rows, n, aq, ads, out, split);                   \
        else                                                                                     \
            mmvq_body<FMT, K, 32>(W, row_bytes, rows, n, aq, ads, out, split);                   \
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
ALL_K(MMVQ, q6_k_r, FMT_Q6_K_R)
ALL_K(MMVQ, q8_0_r, FMT_Q8_0_R)
ALL_K(MMVF, f32, FMT_F32)
ALL_K(MMVF, f16, FMT_F16)
ALL_K(MMVF, bf16, FMT_BF16)
// The tensor-core forms (sm_80+): mmv_q4_k_t_k*, mmv_q5_k_t_k*.
ALL_K(MMVT, q4_k_t, FMT_Q4_K)
ALL_K(MMVT, q5_k_t, FMT_Q5_K)
