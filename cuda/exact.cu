// exact.cu: mat-vec over Q8_K activations that reproduces the CPU kernels' float order bit
// for bit (simd/src/kq.rs, q4_k.rs and q6_k.rs `dot_ref`), so that the GPU can take a share
// of a CPU-placed layer's rows, read from host memory over PCIe (zero-copy, registered
// read-only), without changing a single output bit: whichever device computes a row, the
// value is the same, so the share can move between calls and tokens stay independent of k.
//
// One warp per row. Lane = l + 8c: l is the canonical lane (0..7; element e belongs to lane
// (e / 4) % 8) and c (0..3) a 64-element chunk of the 256-element block. Each lane computes
// the exact integer sum of its 2 x 4 elements of lane l in chunk c with dp4a; two xor
// shuffles add the four chunks (integers: exact in any order), and then every lane holds
// sumi[l] and applies acc = fma(d_y * d_x, f32(sumi), acc) in block order, as the CPU does.
// The end is hsum8's tree (xor 4, 2, 1 butterflies = (a0+a4 + a2+a6) + (a1+a5 + a3+a7)).
// Rounding is pinned with __fmul_rn / __fmaf_rn / __fadd_rn (NVRTC contracts a*b+c by default).
//
// Weights: each block is first copied by the warp into shared memory with 4-byte loads that
// cover it (coalesced, one request per 128 bytes, whatever the block's alignment: Q6_K
// blocks are 210 bytes), while the next block's words are already in flight. The covering
// words reach up to 3 bytes past a block whose end is not 4-aligned: the caller's mapping
// must hold them (registered host ranges are whole pages; gpu-check pads its device copy).
#include "common.cuh"

#define EX_MAX_K 8
#define EX_WARPS 4
// Words staged per block: the 4-byte words covering a block of up to 210 bytes at any
// 2-byte alignment (53), rounded up to two loads per lane.
#define EX_WORDS 64

__device__ __forceinline__ u32 ld_u32_bytes(const u8* p) {
    return (u32)p[0] | ((u32)p[1] << 8) | ((u32)p[2] << 16) | ((u32)p[3] << 24);
}

// Loads the words covering bytes [base, base + size) of the row into two registers per lane.
__device__ __forceinline__ void ex_fetch(const u8* __restrict__ base, int size, int lane,
                                         u32& w0, u32& w1) {
    const u32* p = (const u32*)((u64)base & ~(u64)3);
    const int n = (int)((((u64)base & 3) + (u64)size + 3) >> 2);
    w0 = lane < n ? p[lane] : 0u;
    w1 = lane + 32 < n ? p[lane + 32] : 0u;
}

// The canonical end of a dot: hsum8 of acc (lane l holds acc[l]) plus, for Q4_K, hsum4 of
// acc_m (lane l holds acc_m[l & 3]); every lane ends with the same value.
__device__ __forceinline__ float ex_hsum8(float a) {
    a = __fadd_rn(a, __shfl_xor_sync(FULL_MASK, a, 4));
    a = __fadd_rn(a, __shfl_xor_sync(FULL_MASK, a, 2));
    return __fadd_rn(a, __shfl_xor_sync(FULL_MASK, a, 1));
}

__device__ __forceinline__ float ex_hsum4(float a) {
    a = __fadd_rn(a, __shfl_xor_sync(FULL_MASK, a, 2));
    return __fadd_rn(a, __shfl_xor_sync(FULL_MASK, a, 1));
}

__device__ __forceinline__ int ex_chunk_sum(int v) {
    v += __shfl_xor_sync(FULL_MASK, v, 8);
    return v + __shfl_xor_sync(FULL_MASK, v, 16);
}

// get_scale_min_k4 for sub-block j from the 12 scale bytes.
__device__ __forceinline__ void ex_scale_min(const u8* s, int j, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// w: row-major blocks (row r at w + r * row_bytes), rows [0, rows); q8: k x (nb * 256) int8;
// d8: k x nb; bsums: k x (nb * 16); out[t * out_stride + r].
#define EX_PROLOGUE(BLOCK_BYTES)                                                              \
    PDL_ENTER();                                                                              \
    __shared__ u32 stage[EX_WARPS][2][EX_WORDS];                                              \
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;                               \
    const int r = blockIdx.x * EX_WARPS + warp;                                               \
    if (r >= rows) return; /* whole warps leave together */                                   \
    const int l = lane & 7, c = lane >> 3;                                                    \
    const u8* row = w + (u64)r * (u64)row_bytes;                                              \
    const int cols = nb * 256;                                                                \
    float acc[EX_MAX_K];                                                                      \
    _Pragma("unroll") for (int t = 0; t < EX_MAX_K; ++t) acc[t] = 0.0f;                       \
    u32 n0, n1;                                                                               \
    ex_fetch(row, BLOCK_BYTES, lane, n0, n1);

#define EX_STAGE(BLOCK_BYTES)                                                                 \
    u32* buf = stage[warp][i & 1];                                                            \
    buf[lane] = n0;                                                                           \
    buf[lane + 32] = n1;                                                                      \
    __syncwarp();                                                                             \
    if (i + 1 < nb) ex_fetch(row + (u64)(i + 1) * BLOCK_BYTES, BLOCK_BYTES, lane, n0, n1);    \
    const u8* b = (const u8*)buf + ((u64)(row + (u64)i * BLOCK_BYTES) & 3);

extern "C" __global__ void __launch_bounds__(32 * EX_WARPS)
    exact_q4_k(const u8* __restrict__ w, u64 row_bytes, int rows, int nb,
               const i8* __restrict__ q8, const float* __restrict__ d8,
               const short* __restrict__ bsums, int k, float* __restrict__ out,
               int out_stride) {
    EX_PROLOGUE(144)
    float acc_m[EX_MAX_K];
#pragma unroll
    for (int t = 0; t < EX_MAX_K; ++t) acc_m[t] = 0.0f;
    const int lm = l & 3;
    for (int i = 0; i < nb; ++i) {
        EX_STAGE(144)
        // Block: d (f16), dmin (f16), scales[12], qs[128]; chunk c's 32 bytes hold elements
        // 64c + x (low nibble) and 64c + 32 + x (high nibble).
        const float dx = f16_to_f32((u16)(b[0] | (b[1] << 8)));
        const float dminx = f16_to_f32((u16)(b[2] | (b[3] << 8)));
        const u8* sc = b + 4;
        int s0, m0, s1, m1, ma, mb, dummy;
        ex_scale_min(sc, 2 * c, s0, m0);
        ex_scale_min(sc, 2 * c + 1, s1, m1);
        ex_scale_min(sc, 2 * lm, dummy, ma);
        ex_scale_min(sc, 2 * lm + 1, dummy, mb);
        const u32 qw = ld_u32_bytes(b + 16 + 32 * c + 4 * l);
        const int lo = (int)(qw & 0x0F0F0F0Fu), hi = (int)((qw >> 4) & 0x0F0F0F0Fu);
#pragma unroll
        for (int t = 0; t < EX_MAX_K; ++t) {
            if (t < k) {
                const i8* y = q8 + (u64)t * cols + (u64)i * 256 + 64 * c + 4 * l;
                const int ya = *(const int*)y, yb = *(const int*)(y + 32);
                const int part = s0 * dp4a(lo, ya, 0) + s1 * dp4a(hi, yb, 0);
                const int sumi = ex_chunk_sum(part);
                const short* bs = bsums + ((u64)t * nb + i) * 16 + 4 * lm;
                const int summ = ma * ((int)bs[0] + (int)bs[1]) + mb * ((int)bs[2] + (int)bs[3]);
                const float dy = d8[(u64)t * nb + i];
                acc[t] = __fmaf_rn(__fmul_rn(dy, dx), __int2float_rn(sumi), acc[t]);
                acc_m[t] = __fmaf_rn(__fmul_rn(-dy, dminx), __int2float_rn(summ), acc_m[t]);
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int t = 0; t < EX_MAX_K; ++t) {
        if (t < k) {
            const float v = __fadd_rn(ex_hsum8(acc[t]), ex_hsum4(acc_m[t]));
            if (lane == 0) out[(u64)t * out_stride + r] = v;
        }
    }
}

extern "C" __global__ void __launch_bounds__(32 * EX_WARPS)
    exact_q6_k(const u8* __restrict__ w, u64 row_bytes, int rows, int nb,
               const i8* __restrict__ q8, const float* __restrict__ d8,
               const short* __restrict__ bsums, int k, float* __restrict__ out,
               int out_stride) {
    EX_PROLOGUE(210)
    // Sub-blocks j = 2c, 2c+1 of lane l: half n = c / 2, parts 2(c % 2) and 2(c % 2) + 1.
    const int n = c >> 1, odd = c & 1;
    for (int i = 0; i < nb; ++i) {
        EX_STAGE(210)
        // Block: ql[128], qh[64], scales[16] (int8), d (f16); u = q + 32 in [0, 63].
        const u8* ql = b + 64 * n + 4 * l;
        const u32 la = ld_u32_bytes(ql), lb = ld_u32_bytes(ql + 32);
        const u32 h = ld_u32_bytes(b + 128 + 32 * n + 4 * l);
        const u32 sh = odd ? 4u : 0u;
        // part pa = 2 * odd uses qh bits 2 * pa; part pb = pa + 1 uses bits 2 * pb.
        const u32 pa = 2u * (u32)odd, pb = pa + 1u;
        const int u0 = (int)(((la >> sh) & 0x0F0F0F0Fu) | (((h >> (2u * pa)) & 0x03030303u) << 4));
        const int u1 = (int)(((lb >> sh) & 0x0F0F0F0Fu) | (((h >> (2u * pb)) & 0x03030303u) << 4));
        const i8* scales = (const i8*)(b + 192);
        const int j0 = 2 * c, j1 = 2 * c + 1;
        const int s0 = scales[2 * j0 + (l >> 2)], s1 = scales[2 * j1 + (l >> 2)];
        const int sl0 = scales[2 * l], sl1 = scales[2 * l + 1];
        const float dx = f16_to_f32((u16)(b[208] | (b[209] << 8)));
#pragma unroll
        for (int t = 0; t < EX_MAX_K; ++t) {
            if (t < k) {
                const i8* y = q8 + (u64)t * cols + (u64)i * 256 + 32 * j0 + 4 * l;
                const int ya = *(const int*)y, yb = *(const int*)(y + 32);
                const int part = s0 * dp4a(u0, ya, 0) + s1 * dp4a(u1, yb, 0);
                const short* bs = bsums + ((u64)t * nb + i) * 16 + 2 * l;
                const int sumi = ex_chunk_sum(part) - 32 * ((int)bs[0] * sl0 + (int)bs[1] * sl1);
                const float dy = d8[(u64)t * nb + i];
                acc[t] = __fmaf_rn(__fmul_rn(dy, dx), __int2float_rn(sumi), acc[t]);
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int t = 0; t < EX_MAX_K; ++t) {
        if (t < k) {
            const float v = ex_hsum8(acc[t]);
            if (lane == 0) out[(u64)t * out_stride + r] = v;
        }
    }
}
