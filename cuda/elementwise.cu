// elementwise.cu: residual add, SwiGLU and the sigmoid output gate, all f32.
#include "common.cuh"

// y = a + b; y may be a (in-place residual add).
extern "C" __global__ void add_f32(const float* a, const float* __restrict__ b, float* y, long long n) { PDL_ENTER();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a[i] + b[i];
}

// y = silu(g) * u, silu(x) = x / (1 + expf(-x)) (precise expf).
extern "C" __global__ void swiglu_f32(const float* __restrict__ g, const float* __restrict__ u,
                                      float* __restrict__ y, long long n) { PDL_ENTER();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = silu_f(g[i]) * u[i];
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
