// attn.cu: gated-attention decode over an f16 KV cache (spec/qwen35-forward.md §3 steps 5-6).
//
// kv_store writes k and v of the new tokens (rounded to f16, nearest even) at cells pos0.. .
// pos0 = *pos_p (+ pos_off) is read from device memory, so a captured CUDA graph replays at any
// position; a graph launches attn_partial with the splits of the whole context, and the splits
// past a token's position only write an empty (m = -inf, l = 0) partial that attn_combine skips.
// attn_partial/attn_combine are split-KV ("flash decoding"): block (g, t, s) handles KV head
// g, batch token t and the cache positions [s*CHUNK, (s+1)*CHUNK) up to t's own position
// pos0 + t (causal), for all n_head / n_kv query heads of the group at once, so each K/V row
// is read once per group. Scores, softmax and the V sum are f32 (q is not rounded to f16).
// The output gate (sigmoid) is a separate elementwise launch.
// attn_partial is instanced per head_dim (64, 128, 256: the 27B and the small test models);
// one warp covers a head row, HD / 32 dims per lane.
#include "common.cuh"

#define ATTN_CHUNK 256  // cache positions per split
#define ATTN_MAXG 8     // query heads per KV head
#define ATTN_THREADS 256

// k, v: [ntok][kv_dim] f32; caches: [n_ctx][kv_dim] f16 bits. One thread per element.
extern "C" __global__ void kv_store(const float* __restrict__ k, const float* __restrict__ v,
                                    u16* __restrict__ k_cache, u16* __restrict__ v_cache, int kv_dim,
                                    int ntok, const int* __restrict__ pos_p) { PDL_ENTER();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)ntok * kv_dim) return;
    const int pos0 = *pos_p;
    const size_t dst = (size_t)pos0 * kv_dim + i;
    k_cache[dst] = f32_to_f16(k[i]);
    v_cache[dst] = f32_to_f16(v[i]);
}

// EPL consecutive f16 values from an address aligned to 2 * EPL bytes, as f32.
template <int EPL>
__device__ __forceinline__ void load_f16s(const u16* p, float* f);
template <>
__device__ __forceinline__ void load_f16s<8>(const u16* p, float* f) {
    const uint4 r = *(const uint4*)p;
    const u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = f16_to_f32((u16)(w[i] & 0xFFFF));
        f[2 * i + 1] = f16_to_f32((u16)(w[i] >> 16));
    }
}
template <>
__device__ __forceinline__ void load_f16s<4>(const u16* p, float* f) {
    const uint2 r = *(const uint2*)p;
    const u32 w[2] = {r.x, r.y};
#pragma unroll
    for (int i = 0; i < 2; i++) {
        f[2 * i] = f16_to_f32((u16)(w[i] & 0xFFFF));
        f[2 * i + 1] = f16_to_f32((u16)(w[i] >> 16));
    }
}
template <>
__device__ __forceinline__ void load_f16s<2>(const u16* p, float* f) {
    const u32 w = *(const u32*)p;
    f[0] = f16_to_f32((u16)(w & 0xFFFF));
    f[1] = f16_to_f32((u16)(w >> 16));
}

// q: [ntok][n_head][HD]; part_o: [ntok][n_head][n_split][HD]; part_ml: [ntok][n_head][n_split]
// (running max m, sum l); a split with no position writes m = -inf, l = 0.
template <int ATTN_HD>
__device__ __forceinline__ void attn_partial_body(const float* __restrict__ q, const u16* __restrict__ k_cache,
                                                  const u16* __restrict__ v_cache, float* __restrict__ part_o,
                                                  float2* __restrict__ part_ml, int n_head, int n_kv,
                                                  const int* __restrict__ pos_p, int pos_off, int n_split,
                                                  float scale) {
    constexpr int EPL = ATTN_HD / 32;  // dims per lane in the score loop
    __shared__ float qs[ATTN_MAXG][ATTN_HD];
    __shared__ float ps[ATTN_MAXG][ATTN_CHUNK];
    __shared__ float ms[ATTN_MAXG], ls[ATTN_MAXG];
    const int g = blockIdx.x, t = blockIdx.y, s = blockIdx.z;
    const int G = n_head / n_kv;
    const int kv_dim = n_kv * ATTN_HD;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = ATTN_THREADS / 32;
    const int len = *pos_p + pos_off + t + 1;  // causal: positions 0..pos0+t
    const int start = s * ATTN_CHUNK;
    const int end = min(len, start + ATTN_CHUNK);
    const size_t prow = (size_t)t * n_head + (size_t)g * G;  // first query head row of the group
    if (start >= len) {  // a split past this token: an empty partial (the whole block leaves)
        if (threadIdx.x < G) {
            float2 ml;
            ml.x = NEG_INF;
            ml.y = 0.0f;
            part_ml[(prow + threadIdx.x) * n_split + s] = ml;
        }
        return;
    }

    for (int i = threadIdx.x; i < G * ATTN_HD; i += ATTN_THREADS)
        qs[i / ATTN_HD][i % ATTN_HD] = q[prow * ATTN_HD + i];
    __syncthreads();

    // Scores: one warp per position; a lane takes EPL consecutive dims (one load).
    for (int p = start + warp; p < end; p += nwarps) {
        float kf[EPL];
        load_f16s<EPL>(k_cache + (size_t)p * kv_dim + (size_t)g * ATTN_HD + lane * EPL, kf);
        for (int h = 0; h < G; h++) {
            float d = 0.0f;
#pragma unroll
            for (int i = 0; i < EPL; i++) d = __fmaf_rn(qs[h][lane * EPL + i], kf[i], d);
            d = warp_sum(d);
            if (lane == 0) ps[h][p - start] = d * scale;
        }
    }
    __syncthreads();

    // Softmax pieces per head: warp h handles head h.
    for (int h = warp; h < G; h += nwarps) {
        float m = NEG_INF;
        for (int p = lane; p < end - start; p += 32) m = fmaxf(m, ps[h][p]);
        m = warp_max(m);
        float l = 0.0f;
        for (int p = lane; p < end - start; p += 32) {
            const float e = expf(ps[h][p] - m);
            ps[h][p] = e;
            l += e;
        }
        l = warp_sum(l);
        if (lane == 0) { ms[h] = m; ls[h] = l; }
    }
    __syncthreads();

    // V: thread d < HD sums p * v[d] over the chunk for every head of the group.
    const int d = threadIdx.x;  // ATTN_THREADS >= ATTN_HD
    if (d >= ATTN_HD) return;   // no barrier follows
    float acc[ATTN_MAXG];
#pragma unroll
    for (int h = 0; h < ATTN_MAXG; h++) acc[h] = 0.0f;
    for (int p = start; p < end; p++) {
        const float vv = f16_to_f32(v_cache[(size_t)p * kv_dim + (size_t)g * ATTN_HD + d]);
#pragma unroll
        for (int h = 0; h < ATTN_MAXG; h++)
            if (h < G) acc[h] = __fmaf_rn(ps[h][p - start], vv, acc[h]);
    }
#pragma unroll
    for (int h = 0; h < ATTN_MAXG; h++) {
        if (h >= G) break;
        const size_t r = (prow + h) * n_split + s;
        part_o[r * ATTN_HD + d] = acc[h];
        if (d == 0) {
            float2 ml;
            ml.x = end > start ? ms[h] : NEG_INF;
            ml.y = end > start ? ls[h] : 0.0f;
            part_ml[r] = ml;
        }
    }
}

#define ATTN_PARTIAL(HD)                                                                         \
    extern "C" __global__ void __launch_bounds__(ATTN_THREADS)                                   \
        attn_partial_hd##HD(const float* q, const u16* k_cache, const u16* v_cache, float* part_o, \
                            float2* part_ml, int n_head, int n_kv, const int* pos_p, int pos_off, \
                            int n_split, float scale) { PDL_ENTER();                                          \
        attn_partial_body<HD>(q, k_cache, v_cache, part_o, part_ml, n_head, n_kv, pos_p, pos_off, \
                              n_split, scale);                                                   \
    }
ATTN_PARTIAL(64)
ATTN_PARTIAL(128)
ATTN_PARTIAL(256)

// grid (n_head, ntok), block hd (<= 256): o[t][h] = sum_s o_s e^(m_s - M) / sum_s l_s e^(m_s - M).
extern "C" __global__ void __launch_bounds__(256)
    attn_combine(const float* __restrict__ part_o, const float2* __restrict__ part_ml, float* __restrict__ o,
                 int n_head, int n_split, int hd) { PDL_ENTER();
    const int ATTN_HD = hd;
    const size_t row = (size_t)blockIdx.y * n_head + blockIdx.x;
    const int d = threadIdx.x;
    float M = NEG_INF;
    for (int s = 0; s < n_split; s++) {
        const float2 ml = part_ml[row * n_split + s];
        if (ml.y > 0.0f) M = fmaxf(M, ml.x);
    }
    float L = 0.0f, acc = 0.0f;
    for (int s = 0; s < n_split; s++) {
        const float2 ml = part_ml[row * n_split + s];
        if (!(ml.y > 0.0f)) continue;
        const float f = expf(ml.x - M);
        L = __fmaf_rn(ml.y, f, L);
        acc = __fmaf_rn(part_o[(row * n_split + s) * ATTN_HD + d], f, acc);
    }
    o[row * ATTN_HD + d] = acc / L;
}
