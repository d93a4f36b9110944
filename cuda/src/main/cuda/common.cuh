// Shared helpers of the Punica-J kernels. Self-contained (no CUDA headers) so that NVRTC can compile
// the kernels at run time without the toolkit's include folder: bf16 is carried as its 16 raw bits.
#pragma once

// The numbers the host shares with the kernels (block sizes, tile heights, the sampling rows' layout).
#include "kernel_constants.cuh"

typedef unsigned short bf16;

// Programmatic dependent launch (sm_90+; KernelLauncher, CudaOptions.programmaticLaunch). A kernel launched with
// programmatic stream serialization may start while the kernel before it on its stream drains. pdl_wait()
// returns once that kernel has completed and its writes are visible; pdl_trigger() lets the next kernel start
// launching once every block of this one has triggered or exited. Every kernel calls pdl_entry() (wait, then
// trigger) first, or, where it does work before the wait, touches only memory the kernel before it cannot write
// and waits before any exit. Then, at any kernel's start, every kernel before its predecessor has completed.
// KernelSourcesTest checks that each kernel calls one of them. Without the launch attribute both are no-ops.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

__device__ __forceinline__ void pdl_entry() {
    pdl_wait();
    pdl_trigger();
}

// Brings the 128-byte line holding p into L2 (a hint: no value comes back, nothing faults).
__device__ __forceinline__ void prefetch_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];" :: "l"(p));
}

#define NEG_INF (__int_as_float(0xff800000))
#define LOG2E 1.4426950408889634f

__device__ __forceinline__ float bf2f(bf16 v) {
    return __uint_as_float(((unsigned int) v) << 16);
}

// Round to nearest even, NaN stays NaN: the same rule as DType.floatToBf16 on the host.
__device__ __forceinline__ bf16 f2bf(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (bf16) ((u >> 16) | 0x40u);
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16) (u >> 16);
}

// IEEE half bits to float (normals, subnormals, inf, NaN).
__device__ __forceinline__ float h2f(unsigned short h) {
    unsigned int sign = (h & 0x8000u) << 16;
    unsigned int exp = (h >> 10) & 0x1fu;
    unsigned int mant = h & 0x3ffu;
    if (exp == 0x1fu) {
        return __uint_as_float(sign | 0x7f800000u | (mant << 13));
    }
    if (exp == 0) {
        float m = (float) mant * 5.9604644775390625e-8f; // 2^-24
        return sign ? -m : m;
    }
    return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

// 8 bf16 packed in 16 bytes to floats.
__device__ __forceinline__ void unpack8(uint4 v, float* f) {
    f[0] = __uint_as_float(v.x << 16); f[1] = __uint_as_float(v.x & 0xffff0000u);
    f[2] = __uint_as_float(v.y << 16); f[3] = __uint_as_float(v.y & 0xffff0000u);
    f[4] = __uint_as_float(v.z << 16); f[5] = __uint_as_float(v.z & 0xffff0000u);
    f[6] = __uint_as_float(v.w << 16); f[7] = __uint_as_float(v.w & 0xffff0000u);
}

__device__ __forceinline__ unsigned int pack2(float lo, float hi) {
    return (unsigned int) f2bf(lo) | ((unsigned int) f2bf(hi) << 16);
}

__device__ __forceinline__ uint4 pack8(const float* f) {
    uint4 v;
    v.x = pack2(f[0], f[1]); v.y = pack2(f[2], f[3]);
    v.z = pack2(f[4], f[5]); v.w = pack2(f[6], f[7]);
    return v;
}

// Butterfly sum over a warp (float, double or int): every lane ends with the same bits (each step adds the
// same pair in either order).
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ float block_sum(float v, float* scratch /* [32] */) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

// x·inv·w for 8 bf16 of a row and its weights (rms_norm and add_rms_norm round the same way).
__device__ __forceinline__ uint4 scale8(uint4 x, uint4 w, float inv) {
    float f[8], g[8];
    unpack8(x, f);
    unpack8(w, g);
    #pragma unroll
    for (int j = 0; j < 8; j++) f[j] = f[j] * inv * g[j];
    return pack8(f);
}

__device__ __forceinline__ bool aligned16(const void* p) {
    return (((unsigned long long) p) & 15ull) == 0;
}

// Split-K: a block that has stored its partial sums counts itself in arrivals[group]; true (in every thread) for
// the last of the `splits` blocks to arrive, which then sees every split's partials, false for the others.
// lastToArrive: a __shared__ int of the block.
__device__ __forceinline__ bool last_to_arrive(int* arrivals, long long group, int splits, int& lastToArrive) {
    // Publish the partials before counting in: the last block must see every split's sums.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) lastToArrive = atomicAdd(arrivals + group, 1) == splits - 1;
    __syncthreads();
    if (!lastToArrive) return false;
    __threadfence();
    return true;
}
