// Skinny GEMM for decode-sized batches: out[M, N] = x[M, K] · w[N, K]ᵀ, bf16 in and out, float32
// accumulation, M ≤ 64. At these sizes the GEMM is the weight stream from HBM (x is at most 64 rows), so
// the kernel is built to keep HBM busy and to read every weight byte once:
//
//   w (HBM) ─cp.async 16 B─► smem stage [128 features][128 k] ─► A fragments ┐
//   x (L2)  ─cp.async 16 B─► smem stage [8·MT rows][128 k]    ─► B fragments ┴► mma m16n8k16 ─► fp32 acc
//
// Work split (stream-K): the (tile of 128 features, step of 32 k) pairs are laid end to end, tile by
// tile, and cut into gridDim.x equal ranges of steps, one per block (one block per SM), so every block
// streams the same number of weight bytes whatever the shape. A block's range covers parts of one or a
// few tiles. A tile covered by one block is written from the registers; a tile shared by several blocks
// ("contributors") gets a float32 partial from each, and the contributor that arrives last (a counter
// per tile) adds them in contributor order and writes the tile: the sum order depends only on the shape,
// so results are bitwise reproducible, and the last one resets the counter, so the next launch (or graph
// replay) needs no memset.
//
// Pipeline: SK_STAGES-deep cp.async ring of 128-k chunks, one __syncthreads per chunk; three chunks of
// weights (96 KB) stay in flight per SM, enough to cover HBM latency at full bandwidth.
//
// Fragments: warp w owns features [16w, 16w + 16) of the tile. A 16-byte load of weight row g at k
// offset 8t (t = lane % 4) serves two m16n8k16: the k order inside a step is permuted the same way for
// A and B (logical k {2t, 2t+1, 2t+8, 2t+9} ↔ physical k {8t..8t+3}, then {8t+4..8t+7}), which the
// dot product does not see. Rows are 256 B in shared memory; the 16-byte granule index is XOR-ed with
// 4·(row & 1) so that the two rows an 8-lane phase reads fall in different banks.
#include "common.cuh"

#define SK_THREADS 256
#define SK_WARPS 8
#define SK_TILE_N 128
#define SK_STEP_K 32
#define SK_CHUNK_STEPS 4
#define SK_CHUNK_K (SK_STEP_K * SK_CHUNK_STEPS)

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// Weights are read once: evict them first so that x, partials and the KV cache stay in L2.
__device__ __forceinline__ unsigned long long evict_first_policy() {
    unsigned long long p;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    return p;
}

// 16 bytes global → shared, bypassing L1; srcBytes = 0 zero-fills.
__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int srcBytes, unsigned long long policy) {
    asm volatile("cp.async.cg.shared.global.L2::cache_hint.L2::256B [%0], [%1], 16, %2, %3;"
                 :: "r"(dst), "l"(src), "r"(srcBytes), "l"(policy) : "memory");
}

__device__ __forceinline__ void cp_async16(unsigned dst, const void* src, int srcBytes) {
    asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;"
                 :: "r"(dst), "l"(src), "r"(srcBytes) : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}

// Waits until at most n groups are pending (n is an immediate in PTX; the ring is 2 to 4 deep).
__device__ __forceinline__ void cp_async_wait_pending(int n) {
    if (n <= 0) asm volatile("cp.async.wait_group 0;" ::: "memory");
    else if (n == 1) asm volatile("cp.async.wait_group 1;" ::: "memory");
    else asm volatile("cp.async.wait_group 2;" ::: "memory");
}

__device__ __forceinline__ void mma_bf16(float* c, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                         unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float4 ld_cg_f4(const float* p) {
    float4 v;
    asm volatile("ld.global.cg.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "l"(p));
    return v;
}

// Drops a 128-byte line from L2 without writing it back: partials are dead once summed.
__device__ __forceinline__ void discard_l2_line(const void* p) {
    asm volatile("discard.global.L2 [%0], 128;" :: "l"(p) : "memory");
}

// First step of block b when `steps` are cut into `blocks` equal ranges.
__device__ __forceinline__ int range_start(int b, int steps, int blocks) {
    return (int) ((long long) b * steps / blocks);
}

// The block whose range holds step s: the largest b with range_start(b) ≤ s.
__device__ __forceinline__ int block_of(int s, int steps, int blocks) {
    return (int) (((long long) (s + 1) * blocks + steps - 1) / steps) - 1;
}

// Steps in the chunk that starts at step ls of a tile of ks steps, with `left` steps left in the block's
// range: up to the next multiple of 4 (chunks start 256-byte aligned in the weight rows), the tile end or
// the range end.
__device__ __forceinline__ int chunk_steps(int ls, int ks, int left) {
    return min(min(SK_CHUNK_STEPS - (ls & (SK_CHUNK_STEPS - 1)), ks - ls), left);
}

// Which of block b's two partial slots holds its part of `tile`: 0 for the first tile of its range.
__device__ __forceinline__ int piece_of(int b, int tile, int steps, int blocks, int ks) {
    return 2 * b + (range_start(b, steps, blocks) / ks == tile ? 0 : 1);
}

template <int MT>
__device__ __forceinline__ void skinny_gemm(const bf16* __restrict__ x, const bf16* __restrict__ w,
                                            bf16* __restrict__ out, int M, int K, int N, int stages,
                                            int* __restrict__ counters, float* __restrict__ partials) {
    constexpr int ROWS = 8 * MT;
    constexpr int W_STAGE = SK_TILE_N * SK_CHUNK_K;   // bf16 elements
    constexpr int STAGE = W_STAGE + ROWS * SK_CHUNK_K;
    extern __shared__ __attribute__((aligned(16))) bf16 sk_smem[];
    __shared__ int lastFlag;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int ks = (K + SK_STEP_K - 1) / SK_STEP_K;     // steps per tile
    const int tiles = (N + SK_TILE_N - 1) / SK_TILE_N;
    const int steps = tiles * ks;
    const int blocks = gridDim.x, b = blockIdx.x;
    const int begin = range_start(b, steps, blocks), end = range_start(b + 1, steps, blocks);
    const unsigned long long policy = evict_first_policy();
    const unsigned smemBase = smem_addr(sk_smem);

    // ---- producer: copies the chunk at step p into ring slot `slot` ----
    const int gran = tid & 15;           // this thread's 16-byte granule of every row it copies
    auto issue = [&](int p, int slot) {
        const int tile = p / ks, ls = p - tile * ks;
        const int len = chunk_steps(ls, ks, end - p);
        if (gran >= len * 4) return;
        const int k = ls * SK_STEP_K + gran * 8;
        const bool kOk = k < K;
        const unsigned ws = smemBase + slot * STAGE * 2;
        const unsigned xs = ws + W_STAGE * 2;
        #pragma unroll
        for (int i = 0; i < SK_TILE_N / 16; i++) {
            const int row = (tid >> 4) + 16 * i;
            const int f = tile * SK_TILE_N + row;
            const bool ok = kOk && f < N;
            const bf16* src = ok ? w + (long long) f * K + k : w;
            cp_async16(ws + (row * SK_CHUNK_K + ((gran ^ ((row & 1) << 2)) * 8)) * 2, src, ok ? 16 : 0, policy);
        }
        #pragma unroll
        for (int i = 0; i < (ROWS * 16 + SK_THREADS - 1) / SK_THREADS; i++) {
            const int idx = tid + SK_THREADS * i;
            if (idx < ROWS * 16) {
                const int row = idx >> 4;
                const bool ok = kOk && row < M;
                const bf16* src = ok ? x + (long long) row * K + k : x;
                cp_async16(xs + (row * SK_CHUNK_K + ((gran ^ ((row & 1) << 2)) * 8)) * 2, src, ok ? 16 : 0);
            }
        }
    };
    auto advance = [&](int p) {
        const int tile = p / ks, ls = p - tile * ks;
        return p + chunk_steps(ls, ks, end - p);
    };

    float acc[MT][4];
    #pragma unroll
    for (int j = 0; j < MT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

    int pp = begin, slotP = 0;
    for (int i = 0; i < stages - 1; i++) {
        if (pp < end) {
            issue(pp, slotP);
            pp = advance(pp);
        }
        cp_async_commit();
        slotP = slotP + 1 == stages ? 0 : slotP + 1;
    }

    const int swz = (g & 1) << 2;
    int pc = begin, slotC = 0, segStart = begin;
    while (pc < end) {
        cp_async_wait_pending(stages - 2);
        __syncthreads();   // chunk pc is in shared memory, and every warp is done with the slot refilled next
        if (pp < end) {
            issue(pp, slotP);
            pp = advance(pp);
        }
        cp_async_commit();
        slotP = slotP + 1 == stages ? 0 : slotP + 1;

        const int tile = pc / ks, ls = pc - tile * ks;
        const int len = chunk_steps(ls, ks, end - pc);
        const bf16* ws = sk_smem + slotC * STAGE;
        const bf16* xs = ws + W_STAGE;
        const bf16* wRow = ws + (warp * 16 + g) * SK_CHUNK_K;
        #pragma unroll
        for (int s = 0; s < SK_CHUNK_STEPS; s++) {
            if (s < len) {
                const int gi = ((4 * s + t) ^ swz) * 8;
                const uint4 a = *(const uint4*) (wRow + gi);
                const uint4 a8 = *(const uint4*) (wRow + 8 * SK_CHUNK_K + gi);
                #pragma unroll
                for (int j = 0; j < MT; j++) {
                    const uint4 bx = *(const uint4*) (xs + (8 * j + g) * SK_CHUNK_K + gi);
                    mma_bf16(acc[j], a.x, a8.x, a.y, a8.y, bx.x, bx.y);
                    mma_bf16(acc[j], a.z, a8.z, a.w, a8.w, bx.z, bx.w);
                }
            }
        }
        pc += len;
        slotC = slotC + 1 == stages ? 0 : slotC + 1;
        if (ls + len != ks && pc != end) continue;

        // ---- the block's part of this tile is done: acc[j] = C[feature g | g+8][row 8j+2t | 8j+2t+1] ----
        const int f = tile * SK_TILE_N + warp * 16 + g;
        if (segStart == tile * ks && ls + len == ks) {
            // The whole tile: write it.
            #pragma unroll
            for (int j = 0; j < MT; j++) {
                const int r = 8 * j + 2 * t;
                if (r < M) {
                    if (f < N) out[(long long) r * N + f] = f2bf(acc[j][0]);
                    if (f + 8 < N) out[(long long) r * N + f + 8] = f2bf(acc[j][2]);
                }
                if (r + 1 < M) {
                    if (f < N) out[(long long) (r + 1) * N + f] = f2bf(acc[j][1]);
                    if (f + 8 < N) out[(long long) (r + 1) * N + f + 8] = f2bf(acc[j][3]);
                }
            }
        } else {
            // Part of the tile: a float32 partial [row][128 features]; the last contributor sums them.
            float* mine = partials + (long long) piece_of(b, tile, steps, blocks, ks) * ROWS * SK_TILE_N;
            const int c = warp * 16 + g;
            #pragma unroll
            for (int j = 0; j < MT; j++) {
                const int r = 8 * j + 2 * t;
                if (r < M) {
                    mine[r * SK_TILE_N + c] = acc[j][0];
                    mine[r * SK_TILE_N + c + 8] = acc[j][2];
                }
                if (r + 1 < M) {
                    mine[(r + 1) * SK_TILE_N + c] = acc[j][1];
                    mine[(r + 1) * SK_TILE_N + c + 8] = acc[j][3];
                }
            }
            const int first = block_of(tile * ks, steps, blocks);
            const int last = block_of(tile * ks + ks - 1, steps, blocks);
            __threadfence();
            __syncthreads();
            if (tid == 0) {
                const bool isLast = atomicAdd(counters + tile, 1) == last - first;
                if (isLast) atomicExch(counters + tile, 0);
                lastFlag = isLast;
            }
            __syncthreads();
            if (lastFlag) {
                __threadfence();
                // Thread → (row, 4 features): item i is row (tid + 256 i) / 32, features 4·(tid % 32).
                const int q = tid & 31;
                float4 sum[MT];
                #pragma unroll
                for (int i = 0; i < MT; i++) sum[i].x = sum[i].y = sum[i].z = sum[i].w = 0.0f;
                for (int cb = first; cb <= last; cb++) {
                    const float* part = partials + (long long) piece_of(cb, tile, steps, blocks, ks) * ROWS * SK_TILE_N;
                    #pragma unroll
                    for (int i = 0; i < MT; i++) {
                        const int r = (tid >> 5) + 8 * i;
                        if (r < M) {
                            const float4 v = ld_cg_f4(part + r * SK_TILE_N + 4 * q);
                            sum[i].x += v.x; sum[i].y += v.y; sum[i].z += v.z; sum[i].w += v.w;
                        }
                    }
                    __syncwarp();
                    #pragma unroll
                    for (int i = 0; i < MT; i++) {
                        const int r = (tid >> 5) + 8 * i;
                        if (r < M && (q & 7) == 0) discard_l2_line(part + r * SK_TILE_N + 4 * q);
                    }
                }
                const int f0 = tile * SK_TILE_N + 4 * q;
                #pragma unroll
                for (int i = 0; i < MT; i++) {
                    const int r = (tid >> 5) + 8 * i;
                    if (r >= M) continue;
                    bf16* o = out + (long long) r * N + f0;
                    if ((N & 3) == 0 && f0 + 3 < N) {
                        uint2 v;
                        v.x = pack2(sum[i].x, sum[i].y);
                        v.y = pack2(sum[i].z, sum[i].w);
                        *(uint2*) o = v;
                    } else {
                        if (f0 < N) o[0] = f2bf(sum[i].x);
                        if (f0 + 1 < N) o[1] = f2bf(sum[i].y);
                        if (f0 + 2 < N) o[2] = f2bf(sum[i].z);
                        if (f0 + 3 < N) o[3] = f2bf(sum[i].w);
                    }
                }
            }
        }
        #pragma unroll
        for (int j = 0; j < MT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
        segStart = pc;
    }
    cp_async_wait_pending(0);
}

// One kernel per row capacity (8·MT rows). Grid: one block per SM, at most one per step; dynamic shared
// memory: stages × (128 + rows) × 128 bf16. counters: one int per tile of 128 features, zero between
// launches; partials: 2 × gridDim.x × rows × 128 floats.
#define SKINNY_GEMM(ROWS_, MT_)                                                                              \
    extern "C" __global__ void __launch_bounds__(SK_THREADS, 1)                                              \
    skinny_gemm_##ROWS_(const bf16* __restrict__ x, const bf16* __restrict__ w, bf16* __restrict__ out,      \
                        int M, int K, int N, int stages, int* __restrict__ counters,                         \
                        float* __restrict__ partials) {                                                      \
        skinny_gemm<MT_>(x, w, out, M, K, N, stages, counters, partials);                                    \
    }

SKINNY_GEMM(8, 1)
SKINNY_GEMM(16, 2)
SKINNY_GEMM(32, 4)
SKINNY_GEMM(64, 8)
