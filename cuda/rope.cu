// rope.cu: NeoX rotary embedding over the first n_rot dims of each head, in place
// (spec/qwen35-forward.md §3.1). Token t of the batch is at position *pos_p + pos_off + t; the
// base position is read from device memory so a captured CUDA graph replays at any position.
// theta_i is computed like the llama.cpp CPU path: theta_0 = (float)p and
// theta_{i+1} = theta_i * theta_scale in f32, with theta_scale = powf(base, -2 / n_rot)
// computed once on the host; then cosf/sinf.
#include "common.cuh"

// x: [ntok][n_heads][head_dim]; one thread per (token, head, pair i < n_rot / 2).
extern "C" __global__ void rope_neox(float* __restrict__ x, int ntok, int n_heads, int head_dim, int n_rot,
                                     const int* __restrict__ pos_p, int pos_off, float theta_scale) { PDL_ENTER();
    const int half = n_rot / 2;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)ntok * n_heads * half) return;
    const int i = (int)(idx % half);
    const long long th = idx / half;  // token * n_heads + head
    const int t = (int)(th / n_heads);
    float theta = (float)(*pos_p + pos_off + t);
    for (int j = 0; j < i; j++) theta *= theta_scale;
    const float c = cosf(theta), s = sinf(theta);
    float* h = x + th * head_dim;
    const float x0 = h[i], x1 = h[i + half];
    h[i] = x0 * c - x1 * s;
    h[i + half] = x0 * s + x1 * c;
}
