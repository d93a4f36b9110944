// Host emulation of the CUDA features the attention kernels use (the tensor-core kernel, the decode kernel), so
// that their index arithmetic (tile table, page lookups, ldmatrix addresses, mma fragments, masks, online softmax,
// splits and their merge) can be checked on a machine without a GPU. Each block runs as 128 host threads; warp collectives (shfl, ldmatrix, mma) meet
// at a per-warp barrier and exchange through a shared buffer; cp.async copies at once. The fragment layouts are
// those of the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type", "ldmatrix").
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <algorithm>

#define __device__
#define __forceinline__ inline
#define __global__
#define __launch_bounds__(...)
#define __restrict__
#define __attribute__(x)

struct Dim3 { int x = 0, y = 0, z = 0; };
inline thread_local Dim3 threadIdx, blockIdx;
inline Dim3 gridDim, blockDim;
struct uint4 { unsigned x, y, z, w; };
struct float2 { float x, y; };
using std::min;
using std::max;

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }

struct WarpCtx {
    std::barrier<> bar{32};
    unsigned long long word[32];
    unsigned regs[32][6];
    const void* ptr[32];
};
inline thread_local WarpCtx* tw;
inline thread_local int tlane;
inline thread_local std::barrier<>* blockBarrier;   // the block of this thread (set by each thread)

inline void __syncthreads() { blockBarrier->arrive_and_wait(); }

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int o) {
    unsigned long long w = 0;
    std::memcpy(&w, &v, sizeof(T));
    tw->word[tlane] = w;
    tw->bar.arrive_and_wait();
    T r;
    unsigned long long got = tw->word[tlane ^ o];
    std::memcpy(&r, &got, sizeof(T));
    tw->bar.arrive_and_wait();
    return r;
}

// common.cuh's split-K arrival (last_to_arrive, which the decode kernel's merge uses) and L2 prefetch. Blocks run
// one at a time, so a fence has nothing to order.
inline void __threadfence() {}
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
#define emu_asm(...) ((void) 0)   // gen_host_kernel.py turns common.cuh's inline PTX into this
