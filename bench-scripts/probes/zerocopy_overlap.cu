// Probe (GPU host, built there with nvcc): can the GPU read CPU-resident weights over PCIe
// (zero-copy, host memory registered and mapped) while the CPU cores stream their own share,
// and does the host deliver the sum of the two bandwidths? Prints GB/s for: CPU read loop
// alone (all cores), GPU zero-copy read alone, and both at once.
// Build: nvcc -O3 -arch=sm_90 -Xcompiler -fopenmp zerocopy_overlap.cu -o zc -lcuda
#include <cuda.h>
#include <cuda_runtime.h>
#include <omp.h>
#include <sys/mman.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <thread>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("CUDA error %s at %d\n", cudaGetErrorString(e), __LINE__); exit(1); } } while (0)

__global__ void gpu_read(const int4* __restrict__ p, size_t n16, unsigned long long* out) {
    unsigned long long acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n16; i += (size_t)gridDim.x * blockDim.x) {
        int4 v = p[i];
        acc += (unsigned)(v.x ^ v.y ^ v.z ^ v.w);
    }
    if (acc == 42) *out = acc;  // keep the loads
}

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static unsigned long long cpu_read(const unsigned long long* p, size_t n, int threads) {
    unsigned long long total = 0;
#pragma omp parallel for num_threads(threads) reduction(^ : total) schedule(static)
    for (size_t i = 0; i < n; i += 8) {
        total ^= p[i] + p[i + 1] + p[i + 2] + p[i + 3] + p[i + 4] + p[i + 5] + p[i + 6] + p[i + 7];
    }
    return total;
}

int main(int argc, char** argv) {
    const size_t bytes = (size_t)(argc > 1 ? atof(argv[1]) : 3.0) * (1ull << 30);
    const int threads = omp_get_max_threads();
    CK(cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync));  // the waiting thread sleeps
    // CPU share and GPU share: two separate 4K-page anonymous regions, touched first.
    auto alloc = [&](size_t b) {
        void* p = mmap(nullptr, b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { printf("mmap failed\n"); exit(1); }
        memset(p, 1, b);
        return p;
    };
    void* cpu_buf = alloc(bytes);
    void* gpu_buf = alloc(bytes);
    CK(cudaHostRegister(gpu_buf, bytes, cudaHostRegisterMapped | cudaHostRegisterReadOnly));
    int4* dptr;
    CK(cudaHostGetDevicePointer((void**)&dptr, gpu_buf, 0));
    unsigned long long* dout;
    CK(cudaMalloc(&dout, 8));
    int sms;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    const size_t n16 = bytes / 16, n8 = bytes / 8;
    auto gpu_pass = [&](int blocks) {
        cudaEvent_t a, b;
        cudaEventCreate(&a); cudaEventCreate(&b);
        cudaEventRecord(a);
        gpu_read<<<blocks, 512>>>(dptr, n16, dout);
        cudaEventRecord(b);
        CK(cudaEventSynchronize(b));
        float ms; cudaEventElapsedTime(&ms, a, b);
        return bytes / (ms * 1e-3) / 1e9;
    };
    volatile unsigned long long sink = 0;
    auto cpu_pass = [&]() { double t = now(); sink ^= cpu_read((const unsigned long long*)cpu_buf, n8, threads); return bytes / (now() - t) / 1e9; };
    cpu_pass(); gpu_pass(sms * 4);
    printf("host: %d threads, %.1f GiB per side\n", threads, bytes / double(1ull << 30));
    for (int blocks : {sms, sms * 4, sms * 16}) printf("GPU zero-copy read alone, %d CTAs: %.1f GB/s\n", blocks, gpu_pass(blocks));
    double c = 0; for (int i = 0; i < 3; i++) c += cpu_pass() / 3;
    printf("CPU read loop alone: %.1f GB/s\n", c);
    // Both at once: the GPU reads its share repeatedly while the CPU makes 3 passes over its own.
    std::atomic<bool> stop{false};
    double gsum = 0; int gn = 0;
    std::thread gt([&] { while (!stop) { gsum += gpu_pass(sms * 4); gn++; } });
    double t0 = now(); double cs = 0; for (int i = 0; i < 3; i++) cs += cpu_pass() / 3; (void)t0;
    stop = true; gt.join();
    printf("together: CPU %.1f GB/s + GPU %.1f GB/s = %.1f GB/s (CPU alone %.1f)\n", cs, gsum / gn, cs + gsum / gn, c);
    return 0;
}
