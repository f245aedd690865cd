// gdn.cu: Gated DeltaNet decode for 1..k tokens (spec/qwen35-forward.md §4 steps 2-8).
//
// gdn_conv: causal depthwise conv (kernel 4, no bias) + silu over all conv channels, with the
// conv state C[3][channels] (oldest first, raw pre-conv values) updated in place.
// gdn_recurrence: L2 norm of q and k, beta = sigmoid(b), g = softplus(a + dt_bias) * ssm_a,
// and the gated delta rule on S_j for every value head j with key head i = j mod H_k (tiled
// mapping). State layout as llama.cpp: element (a, b) of head j at j*D*D + b*D + a.
// Both kernels optionally write the state after each token into a snapshot buffer, so that a
// rejected draft can roll back to any token of the batch.
#include "common.cuh"

#define GDN_COLS_PER_WARP 4 // value columns b per warp
#define GDN_WARPS 4

// x: [ntok][channels] projection; w: [channels][4] taps (tap 3 multiplies the current token);
// state: [3][channels]; u: [ntok][channels] = silu(conv); snap: null or [n_snap][3][channels],
// the state after tokens 0..n_snap-1 (a verify batch skips the last: it is the live state).
extern "C" __global__ void gdn_conv(const float* __restrict__ x, const float* __restrict__ w,
                                    float* __restrict__ state, float* __restrict__ u,
                                    float* __restrict__ snap, int n_snap, int channels, int ntok) { PDL_ENTER();
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    float s0 = state[c], s1 = state[channels + c], s2 = state[2 * channels + c];
    const float w0 = w[4 * c], w1 = w[4 * c + 1], w2 = w[4 * c + 2], w3 = w[4 * c + 3];
    for (int t = 0; t < ntok; t++) {
        const float xt = x[(size_t)t * channels + c];
        // Tap order as the CPU loop: ((w0 s0 + w1 s1) + w2 s2) + w3 xt, rounded per step.
        float conv = __fmul_rn(w0, s0);
        conv = __fadd_rn(conv, __fmul_rn(w1, s1));
        conv = __fadd_rn(conv, __fmul_rn(w2, s2));
        conv = __fadd_rn(conv, __fmul_rn(w3, xt));
        u[(size_t)t * channels + c] = silu_f(conv);
        s0 = s1;
        s1 = s2;
        s2 = xt;
        if (snap && t < n_snap) {
            float* sn = snap + (size_t)t * 3 * channels;
            sn[c] = s0;
            sn[channels + c] = s1;
            sn[2 * channels + c] = s2;
        }
    }
    state[c] = s0;
    state[channels + c] = s1;
    state[2 * channels + c] = s2;
}

// gdn_recurrence_d<D> for d_k = d_v = D in {64, 128} (128: every real qwen35 size; 64: the
// tiny test model). grid (H_v, D / (GDN_WARPS * GDN_COLS_PER_WARP)), block 32 * GDN_WARPS.
// u: [ntok][u_stride] conv output with q at [0, H_k*D), k at [H_k*D, 2*H_k*D), v after;
// b, a: raw beta/alpha projections, token t's H_v values at t * ba_stride (ba_stride >= H_v:
// they may be columns of the stacked z|beta|alpha projection); dt_bias, ssm_a: [H_v];
// state: [H_v][D][D]; out: [ntok][H_v][D]; snap: null or [n_snap][H_v][D][D] (tokens < n_snap).
template <int GDN_D>
__device__ __forceinline__ void gdn_recurrence_body(const float* __restrict__ u, int u_stride,
                                                    const float* __restrict__ b, const float* __restrict__ a, int ba_stride,
                                                    const float* __restrict__ dt_bias,
                                                    const float* __restrict__ ssm_a, float* __restrict__ state,
                                                    float* __restrict__ out, float* __restrict__ snap, int n_snap, int h_k,
                                                    int h_v, int ntok, float eps, float out_scale) {
    const int j = blockIdx.x;
    const int hk = j % h_k;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int col0 = (blockIdx.y * GDN_WARPS + warp) * GDN_COLS_PER_WARP;
    float* sj = state + (size_t)j * GDN_D * GDN_D;
    constexpr int PER = GDN_D / 32;  // key rows a per lane: a = lane + 32 * i
    float S[GDN_COLS_PER_WARP][PER];
#pragma unroll
    for (int c = 0; c < GDN_COLS_PER_WARP; c++)
#pragma unroll
        for (int i = 0; i < PER; i++) S[c][i] = sj[(size_t)(col0 + c) * GDN_D + lane + 32 * i];

    for (int t = 0; t < ntok; t++) {
        const float* ut = u + (size_t)t * u_stride;
        float q[PER], k[PER];
        float sq = 0.0f, sk = 0.0f;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            q[i] = ut[hk * GDN_D + lane + 32 * i];
            k[i] = ut[(h_k + hk) * GDN_D + lane + 32 * i];
            sq = __fmaf_rn(q[i], q[i], sq);
            sk = __fmaf_rn(k[i], k[i], sk);
        }
        // L2 norm, scale = 1 / max(sqrt(sum x^2), eps) (f32 sum; the CPU sums in double).
        const float qs = 1.0f / fmaxf(sqrtf(warp_sum(sq)), eps);
        const float ks = 1.0f / fmaxf(sqrtf(warp_sum(sk)), eps);
#pragma unroll
        for (int i = 0; i < PER; i++) {
            q[i] *= qs;
            k[i] *= ks;
        }
        const float beta = sigmoid_f(b[(size_t)t * ba_stride + j]);
        const float g = softplus_f(a[(size_t)t * ba_stride + j] + dt_bias[j]) * ssm_a[j];
        const float decay = expf(g);
        const float* vt = ut + (size_t)2 * h_k * GDN_D + (size_t)j * GDN_D;
#pragma unroll
        for (int c = 0; c < GDN_COLS_PER_WARP; c++) {
            float kv = 0.0f;
#pragma unroll
            for (int i = 0; i < PER; i++) {
                S[c][i] *= decay;
                kv = __fmaf_rn(S[c][i], k[i], kv);
            }
            kv = warp_sum(kv);
            const float delta = beta * (vt[col0 + c] - kv);
            float o = 0.0f;
#pragma unroll
            for (int i = 0; i < PER; i++) {
                S[c][i] = __fmaf_rn(k[i], delta, S[c][i]);
                o = __fmaf_rn(S[c][i], q[i], o);
            }
            o = warp_sum(o);
            if (lane == 0) out[((size_t)t * h_v + j) * GDN_D + col0 + c] = o * out_scale;
        }
        if (snap && t < n_snap) {
            float* sn = snap + ((size_t)t * h_v + j) * GDN_D * GDN_D;
#pragma unroll
            for (int c = 0; c < GDN_COLS_PER_WARP; c++)
#pragma unroll
                for (int i = 0; i < PER; i++) sn[(size_t)(col0 + c) * GDN_D + lane + 32 * i] = S[c][i];
        }
    }
#pragma unroll
    for (int c = 0; c < GDN_COLS_PER_WARP; c++)
#pragma unroll
        for (int i = 0; i < PER; i++) sj[(size_t)(col0 + c) * GDN_D + lane + 32 * i] = S[c][i];
}

#define GDN_RECURRENCE(D)                                                                        \
    extern "C" __global__ void __launch_bounds__(32 * GDN_WARPS)                                 \
        gdn_recurrence_d##D(const float* u, int u_stride, const float* b, const float* a,          \
                            int ba_stride, const float* dt_bias, const float* ssm_a, float* state, float* out,   \
                            float* snap, int n_snap, int h_k, int h_v, int ntok, float eps,  \
                            float out_scale) { PDL_ENTER();                                                 \
        gdn_recurrence_body<D>(u, u_stride, b, a, ba_stride, dt_bias, ssm_a, state, out, snap, n_snap, h_k, h_v, \
                               ntok, eps, out_scale);                                            \
    }
GDN_RECURRENCE(64)
GDN_RECURRENCE(128)
