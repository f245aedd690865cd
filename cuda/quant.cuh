// quant.cuh: per-format weight decoding for the quantized mat-vec, written once.
//
// Block layouts: shared/spec/gguf-quant-formats.md §3. A block of QK weights is split into
// PARTS parts; one lane decodes one part per step into G groups of IPG ints, each int holding
// four signed 8-bit quants of consecutive weights. Group g covers the weights
// [elem(p, g), elem(p, g) + 4 * IPG) of the block, has the float scale sc[g], and, for formats
// with mins, the min mn[g], which is owed once per 32-weight activation block: only the lane
// with add_min set subtracts mn[g] * s (s = d_act * sum of the activation quants of that block).
//
// A weight w = sc * q - mn, so sum(w * a) over an activation block with a = d_act * qa is
// d_act * sc * sum(q * qa) - mn * s, exactly as the CPU K-quant dot (spec §4.3).
#pragma once
#include "common.cuh"

#define FMT_Q4_K 0
#define FMT_Q5_K 1
#define FMT_Q6_K 2
#define FMT_Q8_0 3
// The same formats with each row's blocks split into fields (gpu::layout in the Rust
// crate, done at upload): ids past the float formats of mmvq.cu (4, 5, 6).
#define FMT_Q6_K_R 7
#define FMT_Q8_0_R 8

// Weight loads, in one of three flavours: 0 plain loads, 1 read-only loads that do not
// allocate in L1, 2 read-only loads marked streaming (evict first). Weights are read once per
// call, so they need not stay in L1, where they compete with the activations that every row
// group of an SM reads again. Measured on the H100 (docs/benchmarks/gpu-mma-mmv-2026-12-06.md,
// one call, 27B FFN shapes): flavour 2 speeds up Q5_K (k = 1 24.5 -> 23.3 us, k = 4
// 43.1 -> 40.2 tall) and Q8_0 (k = 1 45.7 -> 41.4, k = 4 67.7 -> 51.2, k = 8 140 -> 94 tall),
// is mixed for Q4_K and Q6_K (wide k = 1 slower: 20.6 -> 21.5, 31.2 -> 34.0) and flavour 1 is
// 2x slower for the formats read in 2-byte pieces (Q6_K, Q8_0). Per format below; the
// MMV_WLOAD_* macros are tuning knobs for bench-scripts/mmv-variants.sh.
#ifndef MMV_WLOAD_Q4K
#define MMV_WLOAD_Q4K 0
#endif
#ifndef MMV_WLOAD_Q5K
#define MMV_WLOAD_Q5K 2
#endif
#ifndef MMV_WLOAD_Q6K
#define MMV_WLOAD_Q6K 0
#endif
#ifndef MMV_WLOAD_Q80
#define MMV_WLOAD_Q80 2
#endif
template <int LD>
__device__ __forceinline__ int4 ldw_v4(const u8* p) {
    int4 v;
    if (LD == 1)
        asm("ld.global.nc.L1::no_allocate.v4.s32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    else if (LD == 2)
        asm("ld.global.cs.nc.v4.s32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    else
        v = *(const int4*)p;
    return v;
}
template <int LD>
__device__ __forceinline__ int2 ldw_v2(const u8* p) {
    int2 v;
    if (LD == 1)
        asm("ld.global.nc.L1::no_allocate.v2.s32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    else if (LD == 2)
        asm("ld.global.cs.nc.v2.s32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    else
        v = *(const int2*)p;
    return v;
}
template <int LD>
__device__ __forceinline__ u16 ldw_u16(const u8* p) {
    u16 v;
    if (LD == 1)
        asm("ld.global.nc.L1::no_allocate.u16 %0, [%1];" : "=h"(v) : "l"(p));
    else if (LD == 2)
        asm("ld.global.cs.nc.u16 %0, [%1];" : "=h"(v) : "l"(p));
    else
        v = *(const u16*)p;
    return v;
}
// 32 bits from an address that is only 2-byte aligned (Q6_K and Q8_0 blocks are 210 and 34
// bytes long, so their fields are only 2-byte aligned), as two 16-bit loads.
template <int LD>
__device__ __forceinline__ int ldw_i32_a2(const u8* p) {
    return (int)((u32)ldw_u16<LD>(p) | ((u32)ldw_u16<LD>(p + 2) << 16));
}
// 16 bytes from an address that is only 2-byte aligned, as three aligned 8-byte loads (the
// 24 bytes from p rounded down to 8; the caller makes sure they lie inside the tensor) and
// funnel shifts: v[i] = bytes p + 4i .. p + 4i + 3.
template <int LD>
__device__ __forceinline__ void ldw_16_a2(const u8* p, int (&v)[4]) {
    const int off = (int)((size_t)p & 7);  // 0, 2, 4 or 6
    const u8* a = p - off;
    const int2 w0 = ldw_v2<LD>(a), w1 = ldw_v2<LD>(a + 8), w2 = ldw_v2<LD>(a + 16);
    const bool hi = off >= 4;  // the 16 bytes start in the second word
    const u32 w[5] = {(u32)(hi ? w0.y : w0.x), (u32)(hi ? w1.x : w0.y), (u32)(hi ? w1.y : w1.x),
                      (u32)(hi ? w2.x : w1.y), (u32)(hi ? w2.y : w2.x)};
    const int sh = 8 * (off & 3);  // 0 or 16
#pragma unroll
    for (int i = 0; i < 4; i++) v[i] = (int)__funnelshift_r(w[i], w[i + 1], sh);
}
template <int LD>
__device__ __forceinline__ int ldw_i8(const u8* p) {
    int v;
    if (LD == 1)
        asm("ld.global.nc.L1::no_allocate.s8 %0, [%1];" : "=r"(v) : "l"(p));
    else if (LD == 2)
        asm("ld.global.cs.nc.s8 %0, [%1];" : "=r"(v) : "l"(p));
    else
        v = *(const i8*)p;
    return v;
}

// Per format: U8, whether the quant bytes are unsigned; ZERO, the offset they carry (weight
// quant = byte - ZERO), which the mat-vec takes off the integer dot as ZERO x the activations'
// sum.
template <int G, int IPG>
struct Unit {
    int q[G][IPG];
    float sc[G];
    float mn[G];
    bool add_min;
};

// The eight 6-bit scales and mins of a Q4_K/Q5_K block (get_scale_min_k4 in ggml-quants.c
// for every j at once), from its 12 scale bytes read as three words (4-byte aligned: blocks
// are 144/176 bytes, scales start at byte 4): byte i of sc[0] is the scale of sub-block i,
// of sc[1] that of sub-block 4 + i; m likewise for the mins.
struct K4Words {
    u32 sc[2], m[2];
};
__device__ __forceinline__ K4Words k4_scale_words(u32 s0, u32 s1, u32 s2) {
    K4Words w;
    w.sc[0] = s0 & 0x3f3f3f3fu;
    w.m[0] = s1 & 0x3f3f3f3fu;
    w.sc[1] = (s2 & 0x0f0f0f0fu) | ((s0 >> 2) & 0x30303030u);
    w.m[1] = ((s2 >> 4) & 0x0f0f0f0fu) | ((s1 >> 2) & 0x30303030u);
    return w;
}

// The eight (scale, min) pairs of a Q4_K/Q5_K block as float, d * sc and dmin * m, from its
// 16-byte header: the 6-bit values gathered into bytes (k4_scale_words), and byte j becomes a
// float through 2^23 + byte (one byte permute): fma(d, 2^23 + sc, -d * 2^23) is d * sc rounded
// once, bit for bit d * (float)sc.
struct K4Scales {
    K4Words w;
    float d, dmin, d23, dmin23;
    __device__ __forceinline__ explicit K4Scales(int4 h) : w(k4_scale_words((u32)h.y, (u32)h.z, (u32)h.w)) {
        d = f16_to_f32((u16)((u32)h.x & 0xFFFF));
        dmin = f16_to_f32((u16)((u32)h.x >> 16));
        d23 = d * 8388608.0f;
        dmin23 = dmin * 8388608.0f;
    }
    __device__ __forceinline__ static float byte_f(u32 w, int i) {
        return __uint_as_float(__byte_perm(w, 0x4B000000u, 0x7540 + i));  // 2^23 + byte i
    }
    __device__ __forceinline__ float sc(int j) const { return __fmaf_rn(d, byte_f(w.sc[j >> 2], j & 3), -d23); }
    __device__ __forceinline__ float mn(int j) const { return __fmaf_rn(dmin, byte_f(w.m[j >> 2], j & 3), -dmin23); }
    // Sub-blocks 2c and 2c + 1 for a c that differs between lanes (word picks instead of an
    // indexed word: sc(j) with a run-time j compiles to selects over every word).
    __device__ __forceinline__ void pair(int c, float (&s)[2], float (&m)[2]) const {
        const u32 sw = c < 2 ? w.sc[0] : w.sc[1], mw = c < 2 ? w.m[0] : w.m[1];
        const int i = 2 * (c & 1);  // bytes 2c mod 4 and 2c + 1 mod 4
        s[0] = __fmaf_rn(d, byte_f(sw, i), -d23);
        s[1] = __fmaf_rn(d, byte_f(sw, i + 1), -d23);
        m[0] = __fmaf_rn(dmin, byte_f(mw, i), -dmin23);
        m[1] = __fmaf_rn(dmin, byte_f(mw, i + 1), -dmin23);
    }
};

// (scale, min) of sub-blocks j = 2c and 2c + 1, branch-free: lanes of one warp ask for
// different j.
__device__ __forceinline__ void scale_min_k4_words(u32 s0, u32 s1, u32 s2, int c, int* sc, int* m) {
    const K4Words w = k4_scale_words(s0, s1, s2);
    const u32 scw = c < 2 ? w.sc[0] : w.sc[1], mw = c < 2 ? w.m[0] : w.m[1];
    const int sh = 16 * (c & 1);  // byte 2c mod 4 and 2c+1 mod 4
    sc[0] = (scw >> sh) & 0xFF;
    sc[1] = (scw >> (sh + 8)) & 0xFF;
    m[0] = (mw >> sh) & 0xFF;
    m[1] = (mw >> (sh + 8)) & 0xFF;
}

__device__ __forceinline__ void scale_min_k4_pair(const u8* s, int c, int* sc, int* m) {
    scale_min_k4_words(*(const u32*)s, *(const u32*)(s + 4), *(const u32*)(s + 8), c, sc, m);
}

template <int FMT>
struct Fmt;

// Q4_K, 144 bytes: d f16, dmin f16, scales[12], qs[128]. Two ways to cut a block into parts:
//
// MMV_Q4K_WIDE 0: part p = 2c + h covers chunk c's bytes qs[32c + 16h, +16): low nibbles are
// weights 64c + 16h + i (sub-block 2c), high nibbles weights 64c + 32 + 16h + i (sub-block
// 2c + 1); each sub-block's float terms are computed by two lanes, each on half its dot.
//
// MMV_Q4K_WIDE 1: part p = c covers the whole chunk qs[32c, +32): group 0 is sub-block 2c (low
// nibbles), group 1 sub-block 2c + 1, whose nibbles stay in the high half of each byte (masked,
// not shifted) and are dotted as unsigned bytes: the integer dot is 16x the true one, exactly,
// so the group's scale is d * sc / 16 (an exact power-of-two step: sc * (float)s rounds to the
// same bits). One lane owns each sub-block: half the float work and scale decoding per weight.
// Timed on the H100 with MMV_Q6K_WIDE and MMV_HALF (docs/benchmarks/gpu-wide-mmv-2026-12-06.md):
// 5% faster on tall matrices at k = 1 in the model, but slower at k = 4 and in the split form,
// and 27B decode 111.2 -> 108.8 t/s; half the instructions per weight did not make it faster,
// so 0 stays the default (a tuning knob for bench-scripts/mmv-variants.sh).
#ifndef MMV_Q4K_WIDE
#define MMV_Q4K_WIDE 0
#endif
#if MMV_Q4K_WIDE
template <>
struct Fmt<FMT_Q4_K> {
    static constexpr int LD = MMV_WLOAD_Q4K;
    static constexpr int QK = 256, BYTES = 144, PARTS = 4, G = 2, IPG = 8;
    static constexpr bool U8 = true;
    static constexpr int ZERO = 0;
    __device__ static int elem(int p, int g) { return 64 * p + 32 * g; }
    __device__ static void load(const u8* blk, int c, Unit<G, IPG>& u) {
        // 16-byte aligned: blocks are 144 = 9 * 16 bytes; the header (d, dmin, 12 scale
        // bytes) is one 16-byte load, qs starts at byte 16.
        const int4 hd = ldw_v4<LD>(blk);
        const int4 v0 = ldw_v4<LD>(blk + 16 + 32 * c);
        const int4 v1 = ldw_v4<LD>(blk + 16 + 32 * c + 16);
        const int w[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
        for (int i = 0; i < 8; i++) {
            u.q[0][i] = w[i] & 0x0F0F0F0F;
            u.q[1][i] = w[i] & (int)0xF0F0F0F0u;
        }
        float sc[2], mn[2];
        K4Scales(hd).pair(c, sc, mn);
        u.sc[0] = sc[0];
        u.sc[1] = sc[1] * 0.0625f;
        u.mn[0] = mn[0];
        u.mn[1] = mn[1];
        u.add_min = true;
    }
};
#else
template <>
struct Fmt<FMT_Q4_K> {
    static constexpr int LD = MMV_WLOAD_Q4K;
    static constexpr int QK = 256, BYTES = 144, PARTS = 8, G = 2, IPG = 4;
    static constexpr bool U8 = false;
    static constexpr int ZERO = 0;
    __device__ static int elem(int p, int g) { return 64 * (p >> 1) + 16 * (p & 1) + 32 * g; }
    __device__ static void load(const u8* blk, int p, Unit<G, IPG>& u) {
        const int c = p >> 1, h = p & 1;
        // 16-byte aligned: blocks are 144 = 9 * 16 bytes; the header (d, dmin, 12 scale
        // bytes) is one 16-byte load, qs starts at byte 16.
        const int4 hd = ldw_v4<LD>(blk);
        const float d = f16_to_f32((u16)((u32)hd.x & 0xFFFF)), dmin = f16_to_f32((u16)((u32)hd.x >> 16));
        const int4 v = ldw_v4<LD>(blk + 16 + 32 * c + 16 * h);
        const int w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            u.q[0][i] = w[i] & 0x0F0F0F0F;
            u.q[1][i] = (w[i] >> 4) & 0x0F0F0F0F;
        }
        int sc[2], m[2];
        scale_min_k4_words((u32)hd.y, (u32)hd.z, (u32)hd.w, c, sc, m);
        u.sc[0] = d * (float)sc[0];
        u.mn[0] = dmin * (float)m[0];
        u.sc[1] = d * (float)sc[1];
        u.mn[1] = dmin * (float)m[1];
        u.add_min = h == 0;
    }
};

#endif

// Q5_K, 176 bytes: d, dmin, scales[12], qh[32], qs[128]. Same parts as Q4_K; the fifth bit of
// weight 64c + l is bit 2c of qh[l], of weight 64c + 32 + l bit 2c + 1 of qh[l].
template <>
struct Fmt<FMT_Q5_K> {
    static constexpr int LD = MMV_WLOAD_Q5K;
    static constexpr int QK = 256, BYTES = 176, PARTS = 8, G = 2, IPG = 4;
    static constexpr bool U8 = false;
    static constexpr int ZERO = 0;
    __device__ static int elem(int p, int g) { return 64 * (p >> 1) + 16 * (p & 1) + 32 * g; }
    __device__ static void load(const u8* blk, int p, Unit<G, IPG>& u) {
        const int c = p >> 1, h = p & 1;
        const float d = f16_to_f32(ldw_u16<LD>(blk)), dmin = f16_to_f32(ldw_u16<LD>(blk + 2));
        // 16-byte aligned: blocks are 176 = 11 * 16 bytes, qh starts at 16 and qs at 48.
        const int4 vh = ldw_v4<LD>(blk + 16 + 16 * h);
        const int4 vl = ldw_v4<LD>(blk + 48 + 32 * c + 16 * h);
        const int hh[4] = {vh.x, vh.y, vh.z, vh.w};
        const int ll[4] = {vl.x, vl.y, vl.z, vl.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            u.q[0][i] = (ll[i] & 0x0F0F0F0F) | ((((u32)hh[i] >> (2 * c)) & 0x01010101) << 4);
            u.q[1][i] = (((u32)ll[i] >> 4) & 0x0F0F0F0F) | ((((u32)hh[i] >> (2 * c + 1)) & 0x01010101) << 4);
        }
        int sc[2], m[2];
        scale_min_k4_pair(blk + 4, c, sc, m);
        u.sc[0] = d * (float)sc[0];
        u.mn[0] = dmin * (float)m[0];
        u.sc[1] = d * (float)sc[1];
        u.mn[1] = dmin * (float)m[1];
        u.add_min = h == 0;
    }
};

// Per byte x - 32 for bytes in [0, 63], without borrows between bytes: set each byte's top
// bit first so no byte can borrow, then flip it back.
__device__ __forceinline__ int sub32_bytes(u32 x) { return (int)(((x | 0x80808080u) - 0x20202020u) ^ 0x80808080u); }

// Q6_K, 210 bytes: ql[128], qh[64], scales[16] (int8), d f16. Weight 128n + 32m + l (half n,
// m = 0..3, l = 0..31) is built from ql[64n + l] (m = 0, 2: low, high nibble), ql[64n + l + 32]
// (m = 1, 3) and bits 2m, 2m + 1 of qh[32n + l], minus 32; it has scale d * scales[8n + l/16 +
// 2m]. Two ways to cut a block into parts:
//
// MMV_Q6K_WIDE 0: part p = 4n + r covers l = 8r .. 8r + 7 of half n (group m: the 8 weights
// 128n + 32m + l), read in 16-bit pieces (blocks are only 2-byte aligned).
//
// MMV_Q6K_WIDE 1: part p = 2n + h covers l = 16h .. 16h + 15 (group m: 16 weights with one
// scale), its three 16-byte fields (ql, ql + 32, qh) read as aligned 8-byte words and funnel
// shifts (ldw_16_a2): twice the weights per part, half the loads, scale conversions and float
// terms per weight; the quants stay unsigned (0..63, ZERO = 32) and the mat-vec takes 32 x the
// activation group's sum off the integer dot once per group and token. Timed with the Q4_K
// one (see there): slower, 0 stays the default.
// The 6-bit quants (unsigned, 0..63) of four consecutive l for m = 0..3 (weights 128n + 32m +
// l), from 4 bytes each of ql[64n + l] (x), ql[64n + l + 32] (y) and qh[32n + l] (z).
__device__ __forceinline__ void q6_quants(u32 x, u32 y, u32 z, u32 (&q)[4]) {
    q[0] = (x & 0x0F0F0F0Fu) | ((z << 4) & 0x30303030u);
    q[1] = (y & 0x0F0F0F0Fu) | ((z << 2) & 0x30303030u);
    q[2] = ((x >> 4) & 0x0F0F0F0Fu) | (z & 0x30303030u);
    q[3] = ((y >> 4) & 0x0F0F0F0Fu) | ((z >> 2) & 0x30303030u);
}

// Group m's scale d * scales[j + 2m] (sc = &scales[j]) for m = 0..3; Q6_K has no mins.
template <int LD, int IPG>
__device__ __forceinline__ void q6_scales(const u8* sc, float d, Unit<4, IPG>& u) {
#pragma unroll
    for (int m = 0; m < 4; m++) {
        u.sc[m] = d * (float)ldw_i8<LD>(sc + 2 * m);
        u.mn[m] = 0.0f;
    }
    u.add_min = false;
}

// Ints i of groups m = 0..3 (four quants each, the -32 offset taken off every byte) from 4
// bytes each of ql[64n + l] (x), ql[64n + l + 32] (y) and qh[32n + l] (z).
template <int IPG>
__device__ __forceinline__ void q6_signed(u32 x, u32 y, u32 z, int i, Unit<4, IPG>& u) {
    u32 q[4];
    q6_quants(x, y, z, q);
#pragma unroll
    for (int m = 0; m < 4; m++) u.q[m][i] = sub32_bytes(q[m]);
}

// The parts of MMV_Q6K_WIDE 0, shared by the file layout (below) and the row-split one.
struct Q6Narrow {
    static constexpr int LD = MMV_WLOAD_Q6K;
    static constexpr int QK = 256, BYTES = 210, PARTS = 8, G = 4, IPG = 2;
    static constexpr bool U8 = false;
    static constexpr int ZERO = 0;
    __device__ static int elem(int p, int g) { return 128 * (p >> 2) + 32 * g + 8 * (p & 3); }
};

#ifndef MMV_Q6K_WIDE
#define MMV_Q6K_WIDE 0
#endif
#if MMV_Q6K_WIDE
template <>
struct Fmt<FMT_Q6_K> {
    static constexpr int LD = MMV_WLOAD_Q6K;
    static constexpr int QK = 256, BYTES = 210, PARTS = 4, G = 4, IPG = 4;
    static constexpr bool U8 = true;
    static constexpr int ZERO = 32;
    __device__ static int elem(int p, int g) { return 128 * (p >> 1) + 32 * g + 16 * (p & 1); }
    __device__ static void load(const u8* blk, int p, Unit<G, IPG>& u) {
        const int n = p >> 1, l0 = 16 * (p & 1);
        int a[4], b[4], h[4];
        // The last 8-byte word read ends at most 8 bytes past a field, inside the block (the
        // qh fields end at byte 192 at most; scales and d follow).
        ldw_16_a2<LD>(blk + 64 * n + l0, a);
        ldw_16_a2<LD>(blk + 64 * n + 32 + l0, b);
        ldw_16_a2<LD>(blk + 128 + 32 * n + l0, h);
        const float d = f16_to_f32(ldw_u16<LD>(blk + 208));
#pragma unroll
        for (int i = 0; i < 4; i++) {
            u32 q[4];
            q6_quants((u32)a[i], (u32)b[i], (u32)h[i], q);
#pragma unroll
            for (int m = 0; m < 4; m++) u.q[m][i] = (int)q[m];
        }
        q6_scales<LD>(blk + 192 + 8 * n + (p & 1), d, u);
    }
};
#else
template <>
struct Fmt<FMT_Q6_K> : Q6Narrow {
    __device__ static void load(const u8* blk, int p, Unit<G, IPG>& u) {
        const int n = p >> 2, l0 = 8 * (p & 3);
        const float d = f16_to_f32(ldw_u16<LD>(blk + 208));
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const u32 a = (u32)ldw_i32_a2<LD>(blk + 64 * n + l0 + 4 * i);
            const u32 b = (u32)ldw_i32_a2<LD>(blk + 64 * n + l0 + 32 + 4 * i);
            const u32 h = (u32)ldw_i32_a2<LD>(blk + 128 + 32 * n + l0 + 4 * i);
            q6_signed(a, b, h, i, u);
        }
        q6_scales<LD>(blk + 192 + 8 * n + (l0 >> 4), d, u);
    }
};
#endif

// Q8_0, 34 bytes: d f16, qs[32] int8. Part p covers weights 8p .. 8p + 7.
template <>
struct Fmt<FMT_Q8_0> {
    static constexpr int LD = MMV_WLOAD_Q80;
    static constexpr int QK = 32, BYTES = 34, PARTS = 4, G = 1, IPG = 2;
    static constexpr bool U8 = false;
    static constexpr int ZERO = 0;
    __device__ static int elem(int p, int g) { return 8 * p; }
    __device__ static void load(const u8* blk, int p, Unit<G, IPG>& u) {
        u.q[0][0] = ldw_i32_a2<LD>(blk + 2 + 8 * p);
        u.q[0][1] = ldw_i32_a2<LD>(blk + 2 + 8 * p + 4);
        u.sc[0] = f16_to_f32(ldw_u16<LD>(blk));
        u.mn[0] = 0.0f;
        u.add_min = false;
    }
};

// ---------------------------------------------------------------------------------------------
// Row-split layouts (FMT_*_R): the upload (src/gpu/layout.rs) rewrites each row of nb blocks
// as one array per block field, so the quants that the GGUF stores 2-byte aligned (210- and
// 34-byte blocks) become 8-byte aligned: one 8-byte load where the GGUF layout needs four
// 16-bit ones. Row bytes do not change; rows start 8-byte aligned when nb is a multiple of 4
// (the Rust side splits only such matrices). Each unit decodes to the same ints and scales as
// the GGUF layout's, so results are bit-identical to the FMT_Q6_K / FMT_Q8_0 kernels.

// Q8_0 split: [qs: 32 nb][d: 2 nb]; parts, groups and constants as Q8_0's.
template <>
struct Fmt<FMT_Q8_0_R> : Fmt<FMT_Q8_0> {
    __device__ static void load_row(const u8* row, int nb, int b, int p, Unit<G, IPG>& u) {
        const int2 q = ldw_v2<LD>(row + 32 * (size_t)b + 8 * p);
        u.q[0][0] = q.x;
        u.q[0][1] = q.y;
        u.sc[0] = f16_to_f32(ldw_u16<LD>(row + 32 * (size_t)nb + 2 * (size_t)b));
        u.mn[0] = 0.0f;
        u.add_min = false;
    }
};

// Q6_K split: [ql: 128 nb][qh: 64 nb][scales: 16 nb][d: 2 nb]; parts as MMV_Q6K_WIDE 0.
template <>
struct Fmt<FMT_Q6_K_R> : Q6Narrow {
    __device__ static void load_row(const u8* row, int nb, int b, int p, Unit<G, IPG>& u) {
        const int n = p >> 2, l0 = 8 * (p & 3);
        const u8* ql = row + 128 * (size_t)b + 64 * n + l0;
        const u8* qh = row + 128 * (size_t)nb + 64 * (size_t)b + 32 * n + l0;
        const int2 a = ldw_v2<LD>(ql), bb = ldw_v2<LD>(ql + 32), h = ldw_v2<LD>(qh);
        q6_signed((u32)a.x, (u32)bb.x, (u32)h.x, 0, u);
        q6_signed((u32)a.y, (u32)bb.y, (u32)h.y, 1, u);
        const float d = f16_to_f32(ldw_u16<LD>(row + 208 * (size_t)nb + 2 * (size_t)b));
        q6_scales<LD>(row + 192 * (size_t)nb + 16 * (size_t)b + 8 * n + (l0 >> 4), d, u);
    }
};

template <int FMT>
struct RowSplit {
    static constexpr bool value = FMT == FMT_Q6_K_R || FMT == FMT_Q8_0_R;
};

// Software prefetch of the weights a later step will load (MMV_PF in mmvq.cu): level 1 =
// L2, 2 = L1. One address per unit, which need not be the unit's own first byte: the lanes of
// a warp take consecutive units, and the addresses they prefetch together have to touch every
// 128-byte line of the bytes those units read. File layout: the unit's even share of its block
// (BYTES / PARTS apart, 18-26 bytes, so every line of the warp's blocks is touched). Row-split
// layouts: the quant fields (Q6_K's ql and qh, Q8_0's qs), 8-16 bytes apart per lane.
template <int LEVEL>
__device__ __forceinline__ void prefetch_line(const u8* p) {
    if (LEVEL == 1)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
    else if (LEVEL == 2)
        asm volatile("prefetch.global.L1 [%0];" ::"l"(p));
}
template <int FMT, int LEVEL>
__device__ __forceinline__ void prefetch_unit(const u8* row, int nb, int b, int p) {
    if constexpr (FMT == FMT_Q6_K_R) {
        const int n = p >> 2, l0 = 8 * (p & 3);
        prefetch_line<LEVEL>(row + 128 * (size_t)b + 64 * n + l0);
        prefetch_line<LEVEL>(row + 128 * (size_t)nb + 64 * (size_t)b + 32 * n + l0);
    } else if constexpr (FMT == FMT_Q8_0_R) {
        prefetch_line<LEVEL>(row + 32 * (size_t)b + 8 * p);
    } else {
        prefetch_line<LEVEL>(row + (size_t)b * Fmt<FMT>::BYTES + p * (Fmt<FMT>::BYTES / Fmt<FMT>::PARTS));
    }
}

// Unit p of block b of a row (row: its first byte; nb: blocks per row), in either layout.
template <int FMT>
__device__ __forceinline__ void load_unit(const u8* row, int nb, int b, int p,
                                          Unit<Fmt<FMT>::G, Fmt<FMT>::IPG>& u) {
    if constexpr (RowSplit<FMT>::value)
        Fmt<FMT>::load_row(row, nb, b, p, u);
    else
        Fmt<FMT>::load(row + (size_t)b * Fmt<FMT>::BYTES, p, u);
}
