// norm.cu: RMSNorm, y = (x * scale) * w with scale = 1 / sqrtf(mean(x^2) + eps)
// (spec/qwen35-forward.md §1). The CPU reference sums squares in double; here the sum is f32
// in a fixed order (per-thread strided partials, then warp and block butterflies), so the
// result is deterministic and within a few f32 ulps of the double version for n <= 17408.
#include "common.cuh"

// One block per row. x row r starts at x + r * x_stride, y row r at y + r * y_stride
// (strides let the per-head q norm read from the interleaved q|gate projection).
extern "C" __global__ void rms_norm(const float* __restrict__ x, int x_stride, const float* __restrict__ w,
                                    float* __restrict__ y, int y_stride, int n, float eps) {
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
                                          float eps) {
    __shared__ float red[32];
    const size_t off = (size_t)blockIdx.x * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s = __fmaf_rn(x[off + i], x[off + i], s);
    s = block_sum(s, red);
    const float scale = 1.0f / sqrtf(s / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        y[off + i] = ((x[off + i] * scale) * w[i]) * silu_f(z[off + i]);
}

// Fused residual add + RMSNorm + 8-bit activation quantization, one block per row of n
// contiguous values: x += o (when o is not null; add_f32's a + b), y = (x * scale) * w (as
// rms_norm, same per-thread order and block size, so the same bits), and, when q is not null,
// y quantized per 32-block exactly as quantize_q8_1 (d = amax / 127, q = roundf(y / d),
// s = d * sum(q)) into q [rows][n] and ds [rows][n / 32]. One launch instead of three.
extern "C" __global__ void add_rms_norm_q8(float* __restrict__ x, const float* __restrict__ o,
                                           const float* __restrict__ w, float* __restrict__ y,
                                           i8* __restrict__ q, float2* __restrict__ ds, int n,
                                           float eps) {
    __shared__ float red[32];
    float* xr = x + (size_t)blockIdx.x * n;
    float* yr = y + (size_t)blockIdx.x * n;
    float s = 0.0f;
    if (o != nullptr) {
        const float* orow = o + (size_t)blockIdx.x * n;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = xr[i] + orow[i];
            xr[i] = v;
            s = __fmaf_rn(v, v, s);
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) s = __fmaf_rn(xr[i], xr[i], s);
    }
    s = block_sum(s, red);
    const float scale = 1.0f / sqrtf(s / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (xr[i] * scale) * w[i];
    if (q == nullptr) return;
    __syncthreads();  // y of a 32-block was written by other threads
    const int lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int b = threadIdx.x >> 5; b < n / 32; b += nw) {
        const float v = yr[b * 32 + lane];
        const float amax = warp_max(fabsf(v));
        const float d = amax / 127.0f;
        const int qi = amax == 0.0f ? 0 : (int)roundf(v / d);
        q[(size_t)blockIdx.x * n + b * 32 + lane] = (i8)qi;
        const int sum = warp_sum_int(qi);
        if (lane == 0) {
            float2 r;
            r.x = d;
            r.y = d * (float)sum;
            ds[(size_t)blockIdx.x * (n / 32) + b] = r;
        }
    }
}
