// elementwise.cu: residual add, SwiGLU and the sigmoid output gate, all f32.
#include "common.cuh"

// y = a + b; y may be a (in-place residual add).
extern "C" __global__ void add_f32(const float* a, const float* __restrict__ b, float* y, long long n) { PDL_ENTER();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i];
}

// y = silu(g) * u, silu(x) = x / (1 + expf(-x)) (precise expf). q != nullptr: y is also
// quantized to q8_1 ([n] and [n / 32], as quantize_q8_1 would; n % 32 == 0 and blockDim.x a
// multiple of 32, so whole warps pass the bound test together).
extern "C" __global__ void swiglu_f32(const float* __restrict__ g, const float* __restrict__ u,
                                      float* __restrict__ y, long long n, i8* __restrict__ q,
                                      float2* __restrict__ ds) { PDL_ENTER();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float v = silu_f(g[i]) * u[i];
    y[i] = v;
    if (q != nullptr) q8_1_block(v, q + (i & ~31LL), ds + (i >> 5));
}

// o[r][i] *= sigmoid(gate[r * gate_stride + i]) for rows r < rows of n: the attention output
// gate, read straight from the interleaved q|gate projection (gate_stride = 2 * head_dim).
extern "C" __global__ void sigmoid_gate_f32(float* __restrict__ o, const float* __restrict__ gate, int rows,
                                            int n, int gate_stride) { PDL_ENTER();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)rows * n) return;
    const long long r = i / n, c = i % n;
    o[i] = o[i] * sigmoid_f(gate[r * gate_stride + c]);
}
