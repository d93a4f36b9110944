// Segmented gather matrix-vector products (Punica §4): the LoRA add-on of one projection for a batch
// whose rows are grouped into segments that share an adapter.
//
//   shrink: v[r, 0:rank] = x[r] · A_slotᵀ        A_slot: [rank, in]
//   expand: y[r, col:col+out] += scale_slot · v[r, 0:rank] · B_slotᵀ     B_slot: [out, rank]
//
// The host cuts every segment into tiles of at most SGMV_TILE_ROWS rows: tiles[3i..3i+2] = (first row,
// row count, adapter slot). The tile array has a length fixed by the shapes (CUDA graphs replay a fixed
// grid); tiles past the last real one have 0 rows and their blocks exit at once. Decode segments are one
// row, so a tile is one row; prefill segments give full tiles, where every weight element loaded serves
// SGMV_TILE_ROWS rows. Per-slot tables: aPtr/bPtr (device addresses), rank (0: the slot does not adapt
// this projection, its blocks exit), scale. The _group kernels do the same for up to 3 projections that
// share x (q|k|v, gate|up) in one launch, each with its own slot table and columns of v and y.
#include "common.cuh"
#include "slot_table.cuh"

#define SHRINK_RANKS_PER_WARP 4
#define SHRINK_PARTIAL (SHRINK_RANKS_PER_BLOCK * SGMV_TILE_ROWS)

// Grid: (tiles, rankBlocks, splits). Block (t, b, s) computes ranks [32b, 32b + 32) of tile t over the
// inputs [s·kChunk, (s+1)·kChunk): split-K, so that a decode batch of a few one-row tiles still spreads
// its adapters' A over every SM instead of streaming each A from one SM. The block's 8 warps split its
// ranks into quads of 4; when the rank is small the spare warps split the block's inputs further, and
// shared memory sums the slices.
//
// With one split the block writes v itself. With several, each block stores its fp32 partial sums in
// partial[(t, b)][s] and counts itself in arrivals[(t, b)]; the last block to arrive adds the partials
// in split order (so the result does not depend on which block came last: replays are bit-identical),
// writes v and sets the counter back to 0 for the next launch. One launch, no memset, graph-replayable.
template <int ROWS>
__device__ __forceinline__ void shrink_block(
        const bf16* __restrict__ x, int xStride, bf16* __restrict__ v, int vStride,
        const int* __restrict__ tiles, const unsigned long long* __restrict__ aPtr,
        const int* __restrict__ ranks, int in, int kChunk, float* partial, int* arrivals,
        int split, int splits, long long group) {
    __shared__ float red[SGMV_THREADS / 32][SHRINK_RANKS_PER_BLOCK][SGMV_TILE_ROWS];
    __shared__ int lastToArrive;
    const int tile = blockIdx.x;
    const int nRows = tiles[3 * tile + 1];
    if (nRows == 0) return;
    if (nRows > ROWS) __trap();  // the host gives the one-row kernels one-row tiles only
    const int row0 = tiles[3 * tile], slot = tiles[3 * tile + 2];
    const int rank = ranks[slot];
    const int rankBase = blockIdx.y * SHRINK_RANKS_PER_BLOCK;
    if (rankBase >= rank) return;  // the same for every split of (tile, rank block): counters stay consistent
    const bf16* a = (const bf16*) aPtr[slot];
    const int nr = min(SHRINK_RANKS_PER_BLOCK, rank - rankBase);
    const int quads = (nr + SHRINK_RANKS_PER_WARP - 1) / SHRINK_RANKS_PER_WARP;
    const int slices = (SGMV_THREADS / 32) / quads;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int quad = warp % quads, slice = warp / quads;
    const int kBlock0 = split * kChunk, kBlock1 = min(in, kBlock0 + kChunk);

    float acc[SHRINK_RANKS_PER_WARP][ROWS];
    #pragma unroll
    for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++)
        #pragma unroll
        for (int r = 0; r < ROWS; r++) acc[q][r] = 0.0f;

    if (slice < slices) {
        const bool vec = (in & 7) == 0 && (xStride & 7) == 0 && aligned16(x) && aligned16(a);
        int chunk = (kBlock1 - kBlock0 + slices - 1) / slices;
        chunk = (chunk + 7) & ~7;
        const int k0 = kBlock0 + slice * chunk, k1 = min(kBlock1, k0 + chunk);
        const bf16* aRow[SHRINK_RANKS_PER_WARP];
        #pragma unroll
        for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++) {
            int k = rankBase + quad * SHRINK_RANKS_PER_WARP + q;
            aRow[q] = k < rank ? a + (long long) k * in : nullptr;
        }
        if (vec) {
            for (int i = k0 + lane * 8; i < k1; i += 32 * 8) {
                float af[SHRINK_RANKS_PER_WARP][8];
                #pragma unroll
                for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++) {
                    if (aRow[q]) unpack8(*(const uint4*) (aRow[q] + i), af[q]);
                    else {
                        #pragma unroll
                        for (int j = 0; j < 8; j++) af[q][j] = 0.0f;
                    }
                }
                #pragma unroll
                for (int r = 0; r < ROWS; r++) {
                    if (r < nRows) {
                        float xf[8];
                        unpack8(*(const uint4*) (x + (long long) (row0 + r) * xStride + i), xf);
                        #pragma unroll
                        for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++)
                            #pragma unroll
                            for (int j = 0; j < 8; j++) acc[q][r] += af[q][j] * xf[j];
                    }
                }
            }
        } else {
            for (int i = k0 + lane; i < k1; i += 32) {
                float af[SHRINK_RANKS_PER_WARP];
                #pragma unroll
                for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++) af[q] = aRow[q] ? bf2f(aRow[q][i]) : 0.0f;
                #pragma unroll
                for (int r = 0; r < ROWS; r++) {
                    if (r < nRows) {
                        float xv = bf2f(x[(long long) (row0 + r) * xStride + i]);
                        #pragma unroll
                        for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++) acc[q][r] += af[q] * xv;
                    }
                }
            }
        }
        // nRows is the same for the whole block, so the shuffles below never diverge.
        #pragma unroll
        for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++)
            #pragma unroll
            for (int r = 0; r < ROWS; r++) {
                if (r < nRows) {
                    float s = warp_sum(acc[q][r]);
                    if (lane == 0) red[slice][quad * SHRINK_RANKS_PER_WARP + q][r] = s;
                }
            }
    }
    __syncthreads();

    if (splits == 1) {
        for (int k = threadIdx.x; k < nr * SGMV_TILE_ROWS; k += SGMV_THREADS) {
            int kr = k / SGMV_TILE_ROWS, r = k - kr * SGMV_TILE_ROWS;
            if (r >= nRows) continue;
            float s = 0.0f;
            for (int sl = 0; sl < slices; sl++) s += red[sl][kr][r];
            v[(long long) (row0 + r) * vStride + rankBase + kr] = f2bf(s);
        }
        return;
    }

    float* mine = partial + (group * splits + split) * SHRINK_PARTIAL;
    for (int k = threadIdx.x; k < nr * SGMV_TILE_ROWS; k += SGMV_THREADS) {
        int kr = k / SGMV_TILE_ROWS, r = k - kr * SGMV_TILE_ROWS;
        if (r >= nRows) continue;
        float s = 0.0f;
        for (int sl = 0; sl < slices; sl++) s += red[sl][kr][r];
        mine[k] = s;
    }
    if (!last_to_arrive(arrivals, group, splits, lastToArrive)) return;
    // Volatile loads go to L2, where the other blocks' partials are (L1 is not coherent across SMs).
    const volatile float* all = partial + group * splits * SHRINK_PARTIAL;
    for (int k = threadIdx.x; k < nr * SGMV_TILE_ROWS; k += SGMV_THREADS) {
        int kr = k / SGMV_TILE_ROWS, r = k - kr * SGMV_TILE_ROWS;
        if (r >= nRows) continue;
        float s = 0.0f;
        for (int sp = 0; sp < splits; sp++) s += all[sp * SHRINK_PARTIAL + k];
        v[(long long) (row0 + r) * vStride + rankBase + kr] = f2bf(s);
    }
    if (threadIdx.x == 0) arrivals[group] = 0;
}

extern "C" __global__ void __launch_bounds__(SGMV_THREADS)
sgmv_shrink(const bf16* __restrict__ x, int xStride, bf16* __restrict__ v, int vStride,
            const int* __restrict__ tiles, const unsigned long long* __restrict__ aPtr,
            const int* __restrict__ ranks, int in, int kChunk, float* partial, int* arrivals) {
    pdl_entry();
    shrink_block<SGMV_TILE_ROWS>(x, xStride, v, vStride, tiles, aPtr, ranks, in, kChunk, partial, arrivals, blockIdx.z,
                                 gridDim.z, (long long) blockIdx.x * gridDim.y + blockIdx.y);
}

// The same for tables of one-row tiles (decode steps): a row's sums need 4 accumulators per thread instead of
// 32, so a block needs a third of the registers and many more blocks fit on an SM, also beside the GEMM that
// the shrink overlaps. Row 0 of a tile is computed in the same order as by sgmv_shrink.
extern "C" __global__ void __launch_bounds__(SGMV_THREADS)
sgmv_shrink_row(const bf16* __restrict__ x, int xStride, bf16* __restrict__ v, int vStride,
                const int* __restrict__ tiles, const unsigned long long* __restrict__ aPtr,
                const int* __restrict__ ranks, int in, int kChunk, float* partial, int* arrivals) {
    pdl_entry();
    shrink_block<1>(x, xStride, v, vStride, tiles, aPtr, ranks, in, kChunk, partial, arrivals, blockIdx.z, gridDim.z,
                    (long long) blockIdx.x * gridDim.y + blockIdx.y);
}

// The shrink of up to 3 projections that read the same x (q|k|v, gate|up): grid (tiles, rankBlocks,
// splits · members); projection m writes columns [m·vWidth, m·vWidth + rank) of v with its own slot table
// (tableM) and its own arrival counters and partials (counter group (m, tile, rank block)).
template <int ROWS>
__device__ __forceinline__ void shrink_group_block(
        const bf16* __restrict__ x, int xStride, bf16* __restrict__ v, int vStride, int vWidth,
        const int* __restrict__ tiles, const char* table0, const char* table1, const char* table2,
        int slots, int in, int kChunk, int splits, float* partial, int* arrivals) {
    const int m = blockIdx.z / splits, split = blockIdx.z - m * splits;
    SlotTable t = slot_table(pick3(m, table0, table1, table2), slots);
    const long long group = ((long long) m * gridDim.x + blockIdx.x) * gridDim.y + blockIdx.y;
    shrink_block<ROWS>(x, xStride, v + (long long) m * vWidth, vStride, tiles, t.a, t.rank, in, kChunk, partial,
                       arrivals, split, splits, group);
}

extern "C" __global__ void __launch_bounds__(SGMV_THREADS)
sgmv_shrink_group(const bf16* __restrict__ x, int xStride, bf16* __restrict__ v, int vStride, int vWidth,
                  const int* __restrict__ tiles, const char* table0, const char* table1, const char* table2,
                  int slots, int in, int kChunk, int splits, float* partial, int* arrivals) {
    pdl_entry();
    shrink_group_block<SGMV_TILE_ROWS>(x, xStride, v, vStride, vWidth, tiles, table0, table1, table2, slots, in,
                                       kChunk, splits, partial, arrivals);
}

// sgmv_shrink_group for one-row tiles (see sgmv_shrink_row).
extern "C" __global__ void __launch_bounds__(SGMV_THREADS)
sgmv_shrink_group_row(const bf16* __restrict__ x, int xStride, bf16* __restrict__ v, int vStride, int vWidth,
                      const int* __restrict__ tiles, const char* table0, const char* table1, const char* table2,
                      int slots, int in, int kChunk, int splits, float* partial, int* arrivals) {
    pdl_entry();
    shrink_group_block<1>(x, xStride, v, vStride, vWidth, tiles, table0, table1, table2, slots, in, kChunk, splits,
                          partial, arrivals);
}

// Block (tile, outBlock) of one projection: thread o reads row o of B once and applies it to every row of
// the tile. A one-row tile (decode) does little work, so what it waits for matters more than what it
// computes: the loads that do not depend on v (its y value, the first 16 elements of the B row) are issued
// before the block waits for v to reach shared memory, and all three are in flight together. Tiles of
// several rows keep their registers for the rows' sums and load y last. Both add in the same order.
#define EXPAND_PREFETCH 16
__device__ __forceinline__ void expand_block(
        const bf16* __restrict__ v, int vStride, bf16* y, int yStride, int yCol,
        const int* __restrict__ tiles, const unsigned long long* __restrict__ bPtr,
        const int* __restrict__ ranks, const float* __restrict__ scales, int outFeatures, int tileIdx, int outBlock) {
    __shared__ float v_s[SGMV_TILE_ROWS][EXPAND_MAX_RANK];
    const int nRows = tiles[3 * tileIdx + 1];
    if (nRows == 0) return;
    const int row0 = tiles[3 * tileIdx], slot = tiles[3 * tileIdx + 2];
    const int rank = ranks[slot];
    if (rank == 0) return;
    const float scale = scales[slot];
    const bf16* b = (const bf16*) bPtr[slot];
    const int o = outBlock * SGMV_THREADS + threadIdx.x;
    const bool active = o < outFeatures;
    const bf16* bRow = b + (long long) o * rank;
    const bool vec = (rank & 7) == 0 && aligned16(b);

    if (nRows == 1) {
        const int pre = vec && rank >= EXPAND_PREFETCH ? EXPAND_PREFETCH : 0;
        uint4 b0, b1;
        float yOld = 0.0f;
        bf16* yp = y + (long long) row0 * yStride + yCol + o;
        if (active) {
            if (pre) {
                b0 = *(const uint4*) bRow;
                b1 = *(const uint4*) (bRow + 8);
            }
            yOld = bf2f(*yp);
        }
        for (int c = threadIdx.x; c < rank; c += SGMV_THREADS) v_s[0][c] = bf2f(v[(long long) row0 * vStride + c]);
        __syncthreads();
        if (!active) return;
        float acc = 0.0f;
        if (vec) {
            if (pre) {
                float bf[8];
                unpack8(b0, bf);
                #pragma unroll
                for (int j = 0; j < 8; j++) acc += v_s[0][j] * bf[j];
                unpack8(b1, bf);
                #pragma unroll
                for (int j = 0; j < 8; j++) acc += v_s[0][8 + j] * bf[j];
            }
            for (int c = pre; c < rank; c += 8) {
                float bf[8];
                unpack8(*(const uint4*) (bRow + c), bf);
                #pragma unroll
                for (int j = 0; j < 8; j++) acc += v_s[0][c + j] * bf[j];
            }
        } else {
            for (int c = 0; c < rank; c++) acc += v_s[0][c] * bf2f(bRow[c]);
        }
        *yp = f2bf(yOld + scale * acc);
        return;
    }

    for (int k = threadIdx.x; k < nRows * rank; k += SGMV_THREADS) {
        int r = k / rank, c = k - r * rank;
        v_s[r][c] = bf2f(v[(long long) (row0 + r) * vStride + c]);
    }
    __syncthreads();
    if (!active) return;
    float acc[SGMV_TILE_ROWS];
    #pragma unroll
    for (int r = 0; r < SGMV_TILE_ROWS; r++) acc[r] = 0.0f;
    if (vec) {
        for (int c = 0; c < rank; c += 8) {
            float bf[8];
            unpack8(*(const uint4*) (bRow + c), bf);
            #pragma unroll
            for (int r = 0; r < SGMV_TILE_ROWS; r++) {
                if (r < nRows) {
                    #pragma unroll
                    for (int j = 0; j < 8; j++) acc[r] += v_s[r][c + j] * bf[j];
                }
            }
        }
    } else {
        for (int c = 0; c < rank; c++) {
            float bv = bf2f(bRow[c]);
            #pragma unroll
            for (int r = 0; r < SGMV_TILE_ROWS; r++) if (r < nRows) acc[r] += v_s[r][c] * bv;
        }
    }
    #pragma unroll
    for (int r = 0; r < SGMV_TILE_ROWS; r++) {
        if (r < nRows) {
            bf16* yp = y + (long long) (row0 + r) * yStride + yCol + o;
            *yp = f2bf(bf2f(*yp) + scale * acc[r]);
        }
    }
}

// Grid: (tiles, ceil(out / 256)).
extern "C" __global__ void __launch_bounds__(SGMV_THREADS)
sgmv_expand(const bf16* __restrict__ v, int vStride, bf16* y, int yStride, int yCol,
            const int* __restrict__ tiles, const unsigned long long* __restrict__ bPtr,
            const int* __restrict__ ranks, const float* __restrict__ scales, int outFeatures) {
    pdl_entry();
    expand_block(v, vStride, y, yStride, yCol, tiles, bPtr, ranks, scales, outFeatures, blockIdx.x, blockIdx.y);
}

// The expand of up to 3 projections into one fused output row: grid (tiles, Σ ceil(out_m / 256)); output
// blocks [start_m, start_m+1) belong to projection m, which reads columns [m·vWidth, ...) of v and writes
// columns [yColM, yColM + outM) of y.
extern "C" __global__ void __launch_bounds__(SGMV_THREADS)
sgmv_expand_group(const bf16* __restrict__ v, int vStride, int vWidth, bf16* y, int yStride,
                  const int* __restrict__ tiles, const char* table0, const char* table1, const char* table2, int slots,
                  int yCol0, int yCol1, int yCol2, int out0, int out1, int out2, int start1, int start2) {
    pdl_entry();
    const int ob = blockIdx.y;
    const int m = ob >= start2 ? 2 : (ob >= start1 ? 1 : 0);
    const int start = m == 0 ? 0 : (m == 1 ? start1 : start2);
    const int yCol = m == 0 ? yCol0 : (m == 1 ? yCol1 : yCol2);
    const int out = m == 0 ? out0 : (m == 1 ? out1 : out2);
    SlotTable t = slot_table(pick3(m, table0, table1, table2), slots);
    expand_block(v + (long long) m * vWidth, vStride, y, yStride, yCol, tiles, t.b, t.rank, t.scale, out, blockIdx.x,
                 ob - start);
}

// ---- decode steps: shrink and expand in one launch, with thread-block clusters (sm_90) ----------------
//
// For one-row tiles (a decode step), the two launches above spend most of their time waiting: the shrink
// on its split-K arrival counter and the last block's pass over the partials, the expand on v. Here a
// cluster of FUSED_CLUSTER blocks takes one (row, projection): block c sums x·Aᵀ over its share of the inputs
// into shared memory; after a cluster barrier every block adds the FUSED_CLUSTER partial vectors, in cluster
// order (deterministic), reading the other blocks' shared memory (distributed shared memory), rounds v to
// bf16 as the two-launch path stores it, and applies it to its share of the outputs:
// y[row, yCol + o] += scale · v·B[o]ᵀ, in the same order of additions as expand_block. One launch for up to 3
// projections that read the same x: grid (FUSED_CLUSTER, tiles, projections), the slot tables as for
// sgmv_shrink_group. Ranks up to FUSED_MAX_RANK. Compiled for sm_90 and later; the host uses it only there.

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define FUSED_CLUSTER_DIMS(C)
#else
#define FUSED_CLUSTER_DIMS(C) __cluster_dims__(C, 1, 1)
#endif

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
__device__ __forceinline__ unsigned cluster_ctarank() {
    unsigned r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}

__device__ __forceinline__ void cluster_arrive() {
    asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
}

__device__ __forceinline__ void cluster_wait() {
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// *p in the shared memory of block `rank` of this cluster.
__device__ __forceinline__ float ld_cluster(const float* p, unsigned rank) {
    unsigned local = (unsigned) __cvta_generic_to_shared(p), remote;
    float v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
    return v;
}
#endif

#define FUSED_PARAMS                                                                                        \
    const bf16* __restrict__ x, int xStride, bf16* y, int yStride, const int* __restrict__ tiles,           \
    const char* table0, const char* table1, const char* table2, int slots, int in,                          \
    int yCol0, int yCol1, int yCol2, int out0, int out1, int out2

#define FUSED_ARGS x, xStride, y, yStride, tiles, table0, table1, table2, slots, in, yCol0, yCol1, yCol2, out0, out1, out2

// What block c of a cluster of C works on: its tile's row and slot, the slot's weights, its inputs [k0, k1) of
// the shrink and outputs [o0, o1) of the expand.
struct FusedWork {
    int nRows, row, slot, rank, out, k0, k1, o0, o1;
    unsigned c;
    SlotTable t;
    const bf16* a;
    const bf16* b;
};

// Before pdl_wait (programmatic launch: the GEMM before this kernel may still be draining) only what that GEMM
// cannot write is read: the tile and slot tables, and the adapter's weights, which this block's share of the
// shrink and the expand will read and which are brought into L2 meanwhile.
template <int C>
__device__ __forceinline__ FusedWork fused_work(FUSED_PARAMS) {
    FusedWork w{};
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int tile = blockIdx.y, m = blockIdx.z;
    w.nRows = tiles[3 * tile + 1];
    w.row = tiles[3 * tile];
    w.slot = tiles[3 * tile + 2];
    w.t = slot_table(pick3(m, table0, table1, table2), slots);
    w.rank = w.nRows > 0 ? w.t.rank[w.slot] : 0;
    w.c = cluster_ctarank();
    w.a = (const bf16*) w.t.a[w.slot];
    w.b = (const bf16*) w.t.b[w.slot];
    w.out = m == 0 ? out0 : (m == 1 ? out1 : out2);
    const int inPer = ((in + C - 1) / C + 7) & ~7;
    w.k0 = min(in, (int) w.c * inPer);
    w.k1 = min(in, w.k0 + inPer);
    const int outPer = (w.out + C - 1) / C;
    w.o0 = w.c * outPer;
    w.o1 = min(w.out, w.o0 + outPer);
    if (w.nRows == 1 && w.rank > 0 && w.rank <= FUSED_MAX_RANK) {
        const int lines = (w.k1 - w.k0 + 63) / 64; // 64 bf16 a line
        for (int i = threadIdx.x; i < w.rank * lines; i += SGMV_THREADS) {
            prefetch_l2(w.a + (long long) (i / lines) * in + w.k0 + (i % lines) * 64);
        }
        const long long bFirst = (long long) w.o0 * w.rank, bEnd = (long long) w.o1 * w.rank;
        for (long long e = bFirst + 64LL * threadIdx.x; e < bEnd; e += 64LL * SGMV_THREADS) prefetch_l2(w.b + e);
    }
#endif
    return w;
}

// The rest of the kernel, after pdl_entry: the shrink of [k0, k1), the cluster sum, the expand of [o0, o1).
template <int C>
__device__ __forceinline__ void fused_row(const FusedWork& w, FUSED_PARAMS) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    __shared__ float red[SGMV_THREADS / 32][FUSED_MAX_RANK];
    __shared__ float part[FUSED_MAX_RANK];
    __shared__ float vRow[FUSED_MAX_RANK];
    const int m = blockIdx.z;
    const int nRows = w.nRows, row = w.row, slot = w.slot, rank = w.rank;
    const int k0 = w.k0, k1 = w.k1, o0 = w.o0, o1 = w.o1;
    const SlotTable& t = w.t;
    const bf16* a = w.a;
    const bf16* b = w.b;
    // Every exit before the barriers is the same for the whole cluster (same tile, same projection).
    if (nRows == 0) return;
    if (nRows != 1) __trap();  // the host gives this kernel one-row tiles only
    if (rank == 0) return;
    if (rank > FUSED_MAX_RANK) __trap();
    const float scale = t.scale[slot];
    const int yCol = m == 0 ? yCol0 : (m == 1 ? yCol1 : yCol2);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const bf16* xr = x + (long long) row * xStride;

    // part = x[row, k0:k1] · A[:, k0:k1]ᵀ. Warps take ranks 4 at a time (a quad); with fewer than 8 quads
    // the spare warps split the inputs further (slices), with more each warp takes every 8th quad.
    const int quads = (rank + SHRINK_RANKS_PER_WARP - 1) / SHRINK_RANKS_PER_WARP;
    const int warps = SGMV_THREADS / 32;
    const int slices = quads >= warps ? 1 : warps / quads;
    const bool vec = (in & 7) == 0 && (xStride & 7) == 0 && aligned16(x) && aligned16(a);
    const int slice = quads >= warps ? 0 : warp / quads;
    if (slice < slices) {
        int chunk = (k1 - k0 + slices - 1) / slices;
        chunk = (chunk + 7) & ~7;
        const int i0 = k0 + slice * chunk, i1 = min(k1, i0 + chunk);
        for (int qd = quads >= warps ? warp : warp % quads; qd < quads; qd += quads >= warps ? warps : quads) {
            float acc[SHRINK_RANKS_PER_WARP];
            const bf16* aRow[SHRINK_RANKS_PER_WARP];
            #pragma unroll
            for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++) {
                acc[q] = 0.0f;
                int k = qd * SHRINK_RANKS_PER_WARP + q;
                aRow[q] = k < rank ? a + (long long) k * in : nullptr;
            }
            if (vec) {
                for (int i = i0 + lane * 8; i < i1; i += 32 * 8) {
                    float xf[8];
                    unpack8(*(const uint4*) (xr + i), xf);
                    #pragma unroll
                    for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++) {
                        if (aRow[q]) {
                            float af[8];
                            unpack8(*(const uint4*) (aRow[q] + i), af);
                            #pragma unroll
                            for (int j = 0; j < 8; j++) acc[q] += af[j] * xf[j];
                        }
                    }
                }
            } else {
                for (int i = i0 + lane; i < i1; i += 32) {
                    float xv = bf2f(xr[i]);
                    #pragma unroll
                    for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++) {
                        if (aRow[q]) acc[q] += bf2f(aRow[q][i]) * xv;
                    }
                }
            }
            #pragma unroll
            for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++) {
                float s = warp_sum(acc[q]);
                if (lane == 0) red[slice][qd * SHRINK_RANKS_PER_WARP + q] = s;
            }
        }
    }
    __syncthreads();
    if (threadIdx.x < rank) {
        float s = 0.0f;
        for (int sl = 0; sl < slices; sl++) s += red[sl][threadIdx.x];
        part[threadIdx.x] = s;
    }
    // Publish part to the cluster; wait until every block's is there.
    cluster_arrive();
    cluster_wait();
    if (threadIdx.x < rank) {
        float s = 0.0f;
        for (unsigned j = 0; j < C; j++) s += ld_cluster(part + threadIdx.x, j);
        vRow[threadIdx.x] = bf2f(f2bf(s));
    }
    // Done reading the other blocks' shared memory; a block leaves only once all are (cluster_wait below).
    cluster_arrive();
    __syncthreads();

    // y[row, yCol + o] += scale · v·B[o]ᵀ for this block's share of the outputs, FUSED_PASS outputs a thread at a
    // time: their y and B loads are issued before the first store, which would otherwise order every later load
    // behind it (one memory round trip per output). Per output the additions are in expand_block's order.
    const bool bVec = (rank & 7) == 0 && aligned16(b);
    bf16* yr = y + (long long) row * yStride + yCol;
    constexpr int FUSED_PASS = 4;
    for (int first = o0 + threadIdx.x; first < o1; first += FUSED_PASS * SGMV_THREADS) {
        float yOld[FUSED_PASS], acc[FUSED_PASS];
        #pragma unroll
        for (int p = 0; p < FUSED_PASS; p++) {
            const int o = first + p * SGMV_THREADS;
            yOld[p] = o < o1 ? bf2f(yr[o]) : 0.0f;
            acc[p] = 0.0f;
        }
        if (bVec) {
            #pragma unroll 2
            for (int k = 0; k < rank; k += 8) {
                uint4 bw[FUSED_PASS];
                #pragma unroll
                for (int p = 0; p < FUSED_PASS; p++) {
                    const int o = first + p * SGMV_THREADS;
                    if (o < o1) {
                        bw[p] = *(const uint4*) (b + (long long) o * rank + k);
                    } else {
                        bw[p].x = 0; bw[p].y = 0; bw[p].z = 0; bw[p].w = 0;
                    }
                }
                #pragma unroll
                for (int p = 0; p < FUSED_PASS; p++) {
                    float bf[8];
                    unpack8(bw[p], bf);
                    #pragma unroll
                    for (int j = 0; j < 8; j++) acc[p] += vRow[k + j] * bf[j];
                }
            }
        } else {
            for (int k = 0; k < rank; k++) {
                #pragma unroll
                for (int p = 0; p < FUSED_PASS; p++) {
                    const int o = first + p * SGMV_THREADS;
                    if (o < o1) acc[p] += vRow[k] * bf2f(b[(long long) o * rank + k]);
                }
            }
        }
        #pragma unroll
        for (int p = 0; p < FUSED_PASS; p++) {
            const int o = first + p * SGMV_THREADS;
            if (o < o1) yr[o] = f2bf(yOld[p] + scale * acc[p]);
        }
    }
    cluster_wait();
#else
    __trap();
#endif
}

// One kernel per cluster width: FUSED_CLUSTER, and FUSED_CLUSTER_WIDE for launches that would otherwise leave SMs
// without a block (the host picks, SgmvOps.fusedRows).
#define FUSED_ROW_GROUP(NAME, C)                                                                            \
    extern "C" __global__ void FUSED_CLUSTER_DIMS(C) __launch_bounds__(SGMV_THREADS) NAME(FUSED_PARAMS) {    \
        FusedWork w = fused_work<C>(FUSED_ARGS);                                                            \
        pdl_entry();                                                                                        \
        fused_row<C>(w, FUSED_ARGS);                                                                        \
    }

FUSED_ROW_GROUP(sgmv_fused_row_group, FUSED_CLUSTER)
FUSED_ROW_GROUP(sgmv_fused_row_group_wide, FUSED_CLUSTER_WIDE)
