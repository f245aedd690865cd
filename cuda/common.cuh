// common.cuh: helpers shared by every hybrid-run kernel.
//
// These sources are compiled at run time by NVRTC (src/gpu/compile.rs), which pastes this
// header in place of its #include line. No system or CUDA headers are used, so no CUDA
// toolkit is needed to build or run hybrid-run: half/bfloat conversions and dp4a are inline PTX.
#pragma once

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define FULL_MASK 0xffffffffu
#define NEG_INF __int_as_float(0xff800000)

// Programmatic dependent launch (sm_90+; src/gpu/ops/mod.rs launches every kernel with it
// there). Every kernel starts with PDL_ENTER(): wait until the previous kernel of the stream
// has completed and its writes are visible (before any global memory is touched), then allow
// the next kernel to be scheduled, so its launch overlaps this kernel's run and tail. On a
// launch without the attribute, and before sm_90, both are no-ops.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define PDL_ENTER()                                            \
    do {                                                       \
        asm volatile("griddepcontrol.wait;" ::: "memory");     \
        asm volatile("griddepcontrol.launch_dependents;" :::); \
    } while (0)
#else
#define PDL_ENTER() \
    do {            \
    } while (0)
#endif

__device__ __forceinline__ float f16_to_f32(u16 h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

// Round to nearest even, like F16C _cvtss_sh(x, 0) on the CPU.
__device__ __forceinline__ u16 f32_to_f16(float f) {
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float bf16_to_f32(u16 h) { return __uint_as_float(((u32)h) << 16); }

// Signed 4 x int8 dot product accumulated into c (exact integer arithmetic).
__device__ __forceinline__ int dp4a(int a, int b, int c) {
    int r;
    asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
// The same with a's bytes unsigned (0..255) and b's signed.
__device__ __forceinline__ int dp4a_us(int a, int b, int c) {
    int r;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

// Butterfly reductions. Every lane ends with the bit-identical result: at each step the two
// partners add the same two operands (float addition is commutative), so the whole warp can
// use the value without a broadcast.
// warp_sum<16>: the same within each half-warp (lanes 0-15 and 16-31 apart).
template <int WIDTH = 32>
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = WIDTH / 2; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// One 32-block of activations quantized to 8 bits for the quantized mat-vec (q8_1): the
// warp holds the block, lane i value v of element i; d = amax / 127, q = roundf(v / d),
// s = d * sum(q), all f32. Writes q[lane] and, from lane 0, *ds = (d, s). The one definition
// for quantize_q8_1 and the kernels that quantize their own output (rms_norm, the gated norm,
// SwiGLU), so every producer rounds the same way.
__device__ __forceinline__ void q8_1_block(float v, i8* __restrict__ q, float2* __restrict__ ds) {
    const int lane = threadIdx.x & 31;
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const int qi = amax == 0.0f ? 0 : (int)roundf(v / d);
    q[lane] = (i8)qi;
    const int sum = warp_sum_int(qi);
    if (lane == 0) {
        float2 r;
        r.x = d;
        r.y = d * (float)sum;
        *ds = r;
    }
}

// The scalar functions of spec/qwen35-forward.md §1, in f32 with the precise expf/logf.
__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplus_f(float x) { return x > 20.0f ? x : logf(1.0f + expf(x)); }


// Sum of a per-thread value over a block of blockDim.x threads (a multiple of 32, at most
// 1024) in a fixed order; every thread gets the result. `red` holds 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // red may still be read by a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float s = lane < nw ? red[lane] : 0.0f;
    return warp_sum(s);
}
