// norm.cu: RMSNorm, y = (x * scale) * w with scale = 1 / sqrtf(mean(x^2) + eps)
// (spec/qwen35-forward.md §1). The CPU reference sums squares in double; here the sum is f32
// in a fixed order (per-thread strided partials, then warp and block butterflies), so the
// result is deterministic and within a few f32 ulps of the double version for n <= 17408.
#include "common.cuh"

// NORM_REGS > 0: a thread keeps its (at most NORM_REGS) elements of x and w (and z) in
// registers from the first pass, loading w with x, so the second pass makes no memory round
// trip (a one-token norm is latency: one CTA). Same operations in the same order, so the
// results are bit-identical to NORM_REGS 0. Off until timed on a GPU (tuning knob for
// bench-scripts/gpu-decode-ab.sh through HYBRID_CUDA_SRC_DIR; written in session 7).
#ifndef NORM_REGS
#define NORM_REGS 0
#endif

// One block per row. x row r starts at x + r * x_stride, y row r at y + r * y_stride
// (strides let the per-head q norm read from the interleaved q|gate projection).
extern "C" __global__ void rms_norm(const float* __restrict__ x, int x_stride, const float* __restrict__ w,
                                    float* __restrict__ y, int y_stride, int n, float eps) { PDL_ENTER();
    __shared__ float red[32];
    const float* xr = x + (size_t)blockIdx.x * x_stride;
    float* yr = y + (size_t)blockIdx.x * y_stride;
    float s = 0.0f;
#if NORM_REGS > 0
    if (n <= NORM_REGS * (int)blockDim.x) {
        float xv[NORM_REGS], wv[NORM_REGS];
#pragma unroll
        for (int j = 0; j < NORM_REGS; j++) {
            const int i = threadIdx.x + j * blockDim.x;
            if (i < n) {
                xv[j] = xr[i];
                wv[j] = w[i];
                s = __fmaf_rn(xv[j], xv[j], s);
            }
        }
        s = block_sum(s, red);
        const float scale = 1.0f / sqrtf(s / (float)n + eps);
#pragma unroll
        for (int j = 0; j < NORM_REGS; j++) {
            const int i = threadIdx.x + j * blockDim.x;
            if (i < n) yr[i] = (xv[j] * scale) * wv[j];
        }
        return;
    }
#endif
    for (int i = threadIdx.x; i < n; i += blockDim.x) s = __fmaf_rn(xr[i], xr[i], s);
    s = block_sum(s, red);
    const float scale = 1.0f / sqrtf(s / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (xr[i] * scale) * w[i];
}

// Gated RMSNorm of the GDN output (spec §4 step 9): y = ((x * scale) * w) * silu(z), rows of n
// contiguous in x, z and y; w ([n]) is shared by all rows.
extern "C" __global__ void rms_norm_gated(const float* __restrict__ x, const float* __restrict__ w,
                                          const float* __restrict__ z, float* __restrict__ y, int n,
                                          float eps) { PDL_ENTER();
    __shared__ float red[32];
    const size_t off = (size_t)blockIdx.x * n;
    float s = 0.0f;
#if NORM_REGS > 0
    if (n <= NORM_REGS * (int)blockDim.x) {
        float xv[NORM_REGS], wv[NORM_REGS], zv[NORM_REGS];
#pragma unroll
        for (int j = 0; j < NORM_REGS; j++) {
            const int i = threadIdx.x + j * blockDim.x;
            if (i < n) {
                xv[j] = x[off + i];
                wv[j] = w[i];
                zv[j] = z[off + i];
                s = __fmaf_rn(xv[j], xv[j], s);
            }
        }
        s = block_sum(s, red);
        const float scale = 1.0f / sqrtf(s / (float)n + eps);
#pragma unroll
        for (int j = 0; j < NORM_REGS; j++) {
            const int i = threadIdx.x + j * blockDim.x;
            if (i < n) y[off + i] = ((xv[j] * scale) * wv[j]) * silu_f(zv[j]);
        }
        return;
    }
#endif
    for (int i = threadIdx.x; i < n; i += blockDim.x) s = __fmaf_rn(x[off + i], x[off + i], s);
    s = block_sum(s, red);
    const float scale = 1.0f / sqrtf(s / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        y[off + i] = ((x[off + i] * scale) * w[i]) * silu_f(z[off + i]);
}
