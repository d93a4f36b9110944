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

#define SGMV_TILE_ROWS 8
#define SGMV_THREADS 256
#define SHRINK_RANKS_PER_BLOCK 32
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

    float acc[SHRINK_RANKS_PER_WARP][SGMV_TILE_ROWS];
    #pragma unroll
    for (int q = 0; q < SHRINK_RANKS_PER_WARP; q++)
        #pragma unroll
        for (int r = 0; r < SGMV_TILE_ROWS; r++) acc[q][r] = 0.0f;

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
                for (int r = 0; r < SGMV_TILE_ROWS; r++) {
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
                for (int r = 0; r < SGMV_TILE_ROWS; r++) {
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
            for (int r = 0; r < SGMV_TILE_ROWS; r++) {
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
    // Publish the partials before counting in: the last block must see every split's sums.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) lastToArrive = atomicAdd(arrivals + group, 1) == splits - 1;
    __syncthreads();
    if (!lastToArrive) return;
    __threadfence();
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
    shrink_block(x, xStride, v, vStride, tiles, aPtr, ranks, in, kChunk, partial, arrivals, blockIdx.z, gridDim.z,
                 (long long) blockIdx.x * gridDim.y + blockIdx.y);
}

// A slot table as CudaBackend lays it out: aPtr[slots] | bPtr[slots] | rank[slots] | scale[slots].
struct SlotTable {
    const unsigned long long* a;
    const unsigned long long* b;
    const int* rank;
    const float* scale;
};

__device__ __forceinline__ SlotTable slot_table(const char* base, int slots) {
    SlotTable t;
    t.a = (const unsigned long long*) base;
    t.b = (const unsigned long long*) (base + 8LL * slots);
    t.rank = (const int*) (base + 16LL * slots);
    t.scale = (const float*) (base + 20LL * slots);
    return t;
}

__device__ __forceinline__ const char* pick3(int m, const char* t0, const char* t1, const char* t2) {
    return m == 0 ? t0 : (m == 1 ? t1 : t2);
}

// The shrink of up to 3 projections that read the same x (q|k|v, gate|up): grid (tiles, rankBlocks,
// splits · members); projection m writes columns [m·vWidth, m·vWidth + rank) of v with its own slot table
// (tableM) and its own arrival counters and partials (counter group (m, tile, rank block)).
extern "C" __global__ void __launch_bounds__(SGMV_THREADS)
sgmv_shrink_group(const bf16* __restrict__ x, int xStride, bf16* __restrict__ v, int vStride, int vWidth,
                  const int* __restrict__ tiles, const char* table0, const char* table1, const char* table2,
                  int slots, int in, int kChunk, int splits, float* partial, int* arrivals) {
    const int m = blockIdx.z / splits, split = blockIdx.z - m * splits;
    SlotTable t = slot_table(pick3(m, table0, table1, table2), slots);
    const long long group = ((long long) m * gridDim.x + blockIdx.x) * gridDim.y + blockIdx.y;
    shrink_block(x, xStride, v + (long long) m * vWidth, vStride, tiles, t.a, t.rank, in, kChunk, partial, arrivals,
                 split, splits, group);
}

#define EXPAND_MAX_RANK 256

// Block (tile, outBlock) of one projection: thread o reads row o of B once and applies it to every row of
// the tile.
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
    for (int k = threadIdx.x; k < nRows * rank; k += SGMV_THREADS) {
        int r = k / rank, c = k - r * rank;
        v_s[r][c] = bf2f(v[(long long) (row0 + r) * vStride + c]);
    }
    __syncthreads();
    const int o = outBlock * SGMV_THREADS + threadIdx.x;
    if (o >= outFeatures) return;
    const bf16* bRow = b + (long long) o * rank;
    float acc[SGMV_TILE_ROWS];
    #pragma unroll
    for (int r = 0; r < SGMV_TILE_ROWS; r++) acc[r] = 0.0f;
    if ((rank & 7) == 0 && aligned16(b)) {
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
    expand_block(v, vStride, y, yStride, yCol, tiles, bPtr, ranks, scales, outFeatures, blockIdx.x, blockIdx.y);
}

// The expand of up to 3 projections into one fused output row: grid (tiles, Σ ceil(out_m / 256)); output
// blocks [start_m, start_m+1) belong to projection m, which reads columns [m·vWidth, ...) of v and writes
// columns [yColM, yColM + outM) of y.
extern "C" __global__ void __launch_bounds__(SGMV_THREADS)
sgmv_expand_group(const bf16* __restrict__ v, int vStride, int vWidth, bf16* y, int yStride,
                  const int* __restrict__ tiles, const char* table0, const char* table1, const char* table2, int slots,
                  int yCol0, int yCol1, int yCol2, int out0, int out1, int out2, int start1, int start2) {
    const int ob = blockIdx.y;
    const int m = ob >= start2 ? 2 : (ob >= start1 ? 1 : 0);
    const int start = m == 0 ? 0 : (m == 1 ? start1 : start2);
    const int yCol = m == 0 ? yCol0 : (m == 1 ? yCol1 : yCol2);
    const int out = m == 0 ? out0 : (m == 1 ? out1 : out2);
    SlotTable t = slot_table(pick3(m, table0, table1, table2), slots);
    expand_block(v + (long long) m * vWidth, vStride, y, yStride, yCol, tiles, t.b, t.rank, t.scale, out, blockIdx.x,
                 ob - start);
}
