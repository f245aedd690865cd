// argmax.cu: greedy pick per token, (index, value) of the largest logit.
// Ties go to the lowest index (llama.cpp's greedy sampler scans in id order with a strict >).
// NaN never wins; a row of only NaN gives index n.
#include "common.cuh"

#define ARGMAX_THREADS 1024

__device__ __forceinline__ bool better(float v, int i, float bv, int bi, int n) {
    if (i >= n) return false;
    if (bi >= n) return v == v;  // anything but NaN beats "nothing yet"
    return v > bv || (v == bv && i < bi);
}

// x: [ntok][n]; one block of ARGMAX_THREADS per token.
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
    argmax_f32(const float* __restrict__ x, int n, int* __restrict__ idx, float* __restrict__ val) { PDL_ENTER();
    __shared__ float sv[32];
    __shared__ int si[32];
    const float* row = x + (size_t)blockIdx.x * n;
    float bv = 0.0f;
    int bi = n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = row[i];
        if (better(v, i, bv, bi, n)) { bv = v; bi = i; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(FULL_MASK, bv, o);
        const int oi = __shfl_xor_sync(FULL_MASK, bi, o);
        if (better(ov, oi, bv, bi, n)) { bv = ov; bi = oi; }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
    __syncthreads();
    if (warp == 0) {
        const int nw = blockDim.x >> 5;
        bv = lane < nw ? sv[lane] : 0.0f;
        bi = lane < nw ? si[lane] : n;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(FULL_MASK, bv, o);
            const int oi = __shfl_xor_sync(FULL_MASK, bi, o);
            if (better(ov, oi, bv, bi, n)) { bv = ov; bi = oi; }
        }
        if (lane == 0) { idx[blockIdx.x] = bi; val[blockIdx.x] = bv; }
    }
}
