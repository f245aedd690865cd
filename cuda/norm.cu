// norm.cu: RMSNorm, y = (x * scale) * w with scale = 1 / sqrtf(mean(x^2) + eps)
// (spec/qwen35-forward.md §1). The CPU reference sums squares in double; here the sum is f32
// in a fixed order (per-thread strided partials, then warp and block butterflies), so the
// result is deterministic and within a few f32 ulps of the double version for n <= 17408.
#include "common.cuh"

// One block per row. x row r starts at x + r * x_stride, y row r at y + r * y_stride
// (strides let the per-head q norm read from the interleaved q|gate projection).
// Fused steps, each done as its own kernel would (add_f32, quantize_q8_1), so the results
// are bit-identical to the three launches: o != nullptr first adds the residual o (rows of n
// contiguous) into x in place; q != nullptr quantizes y to q8_1 into q ([rows][n]) and ds
// ([rows][n / 32]), which needs n % 32 == 0 (blockDim.x is a multiple of 32, so a warp's 32
// elements of one pass are one 32-block).
extern "C" __global__ void rms_norm(float* __restrict__ x, int x_stride, const float* __restrict__ w,
                                    float* __restrict__ y, int y_stride, int n, float eps,
                                    const float* __restrict__ o, i8* __restrict__ q,
                                    float2* __restrict__ ds) { PDL_ENTER();
    __shared__ float red[32];
    float* xr = x + (size_t)blockIdx.x * x_stride;
    float* yr = y + (size_t)blockIdx.x * y_stride;
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
    if (q != nullptr) {
        const size_t r0 = (size_t)blockIdx.x * n;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {  // warp-uniform: n % 32 == 0
            const float v = (xr[i] * scale) * w[i];
            yr[i] = v;
            const int b = i & ~31;
            q8_1_block(v, q + r0 + b, ds + ((r0 + b) >> 5));
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = (xr[i] * scale) * w[i];
    }
}

// Gated RMSNorm of the GDN output (spec §4 step 9): y = ((x * scale) * w) * silu(z), rows of n
// contiguous in x and y; w ([n]) is shared by all rows. z: row r (head r % heads of token
// r / heads) at (r / heads) * z_stride + (r % heads) * n, so z may be columns of the stacked
// z|beta|alpha projection (contiguous: heads = 1, z_stride = n). q != nullptr: y is also quantized
// to q8_1 (as rms_norm does; n % 32 == 0).
extern "C" __global__ void rms_norm_gated(const float* __restrict__ x, const float* __restrict__ w,
                                          const float* __restrict__ z, float* __restrict__ y, int n,
                                          float eps, i8* __restrict__ q, float2* __restrict__ ds, int heads,
                                          int z_stride) { PDL_ENTER();
    __shared__ float red[32];
    const size_t off = (size_t)blockIdx.x * n;
    const float* zr = z + (size_t)(blockIdx.x / heads) * z_stride + (size_t)(blockIdx.x % heads) * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s = __fmaf_rn(x[off + i], x[off + i], s);
    s = block_sum(s, red);
    const float scale = 1.0f / sqrtf(s / (float)n + eps);
    if (q != nullptr) {
        for (int i = threadIdx.x; i < n; i += blockDim.x) {  // warp-uniform: n % 32 == 0
            const float v = ((x[off + i] * scale) * w[i]) * silu_f(zr[i]);
            y[off + i] = v;
            const int b = i & ~31;
            q8_1_block(v, q + off + b, ds + ((off + b) >> 5));
        }
    } else {
        for (int i = threadIdx.x; i < n; i += blockDim.x)
            y[off + i] = ((x[off + i] * scale) * w[i]) * silu_f(zr[i]);
    }
}
