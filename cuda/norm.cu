// norm.cu: RMSNorm, y = (x * scale) * w with scale = 1 / sqrtf(mean(x^2) + eps)
// (spec/qwen35-forward.md §1). The CPU reference sums squares in double; here the sum is f32
// in a fixed order (per-thread strided partials, then warp and block butterflies), so the
// result is deterministic and within a few f32 ulps of the double version for n <= 17408.
#include "common.cuh"

// One block per row. x row r starts at x + r * x_stride, y row r at y + r * y_stride
// (strides let the per-head q norm read from the interleaved q|gate projection).
extern "C" __global__ void rms_norm(const float* __restrict__ x, int x_stride, const float* __restrict__ w,
                                    float* __restrict__ y, int y_stride, int n, float eps) { PDL_ENTER();
    __shared__ float red[32];
    const float* xr = x + (size_t)blockIdx.x * x_stride;
    float* yr = y + (size_t)blockIdx.x * y_stride;
    float s = 0.0f;
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
    for (int i = threadIdx.x; i < n; i += blockDim.x) s = __fmaf_rn(x[off + i], x[off + i], s);
    s = block_sum(s, red);
    const float scale = 1.0f / sqrtf(s / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        y[off + i] = ((x[off + i] * scale) * w[i]) * silu_f(z[off + i]);
}
