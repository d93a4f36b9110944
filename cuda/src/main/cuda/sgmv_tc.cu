// SGMV on tensor cores for segments of many rows (prefill chunks, mixed steps): the same contract as sgmv.cu,
//
//   shrink: v[r, m·vWidth + k] = x[r] · A_slot[k]ᵀ                       A_slot: [rank, in], k < rank
//   expand: y[r, yCol_m + o] += scale_slot · Σ_k v[r, m·vWidth + k] · B_slot[o, k]    B_slot: [out, rank]
//
// as grouped GEMMs with mma.sync.m16n8k16 (bf16 operands, fp32 accumulation; sm_80 and later). The host cuts
// every segment into tiles of at most TC_ROWS rows: tiles[3i..3i+2] = (first row, row count, slot), padded with
// empty tiles to a count fixed by shapes. Slot tables as in slot_table.cuh (aPtr | bPtr | rank | scale), up to
// SGMV_GROUP_MAX projections that read the same x in one launch. Each tile uses its own slot's rank: no
// padding to the largest rank of the step beyond the next multiple of 16 (the mma's k and two n8 tiles).
//
// Operands go global → shared with cp.async (16 bytes, where rows are 16-byte aligned; element loads with
// zero fill elsewhere: odd sizes, ranks not a multiple of 8, column offsets) and shared → registers with
// ldmatrix. Shared rows are padded by 8 bf16 (16 bytes) so that the 8 row addresses of an ldmatrix phase fall
// in distinct banks.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16", .bf16), g = lane / 4, t = lane % 4:
//   A (16×16, row-major) regs a0..a3: (row g, k 2t..2t+1), (row g+8, k 2t..), (row g, k 2t+8..), (row g+8, k 2t+8..)
//   B (16×8, "col": stored [n][k]) regs b0, b1: (k 2t..2t+1, n g), (k 2t+8..2t+9, n g)
//   C (16×8, fp32) c0..c3: (row g, n 2t), (row g, n 2t+1), (row g+8, n 2t), (row g+8, n 2t+1)
// ldmatrix.x4 gives register i the 8×8 matrix whose row addresses lanes 8i..8i+7 supplied, thread l holding
// row l/4, elements 2(l%4), 2(l%4)+1: the A fragment takes matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7),
// (rows 0-7, k 8-15), (rows 8-15, k 8-15); the B fragments of two n8 tiles from a [n][k] array take
// (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
#include "common.cuh"
#include "slot_table.cuh"

#define TC_PAD 8                       // bf16 of padding per shared row
#define TC_KS (TC_K_STEP + TC_PAD)     // shared row length of a shrink stage
#define TC_RS (TC_MAX_RANK + TC_PAD)   // shared row length of the expand's v and B tiles
#define TC_OS (TC_OUT_COLS + 4)        // fp32 row length of the expand's output staging

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return (unsigned) __cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src) : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;" ::: "memory");
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(unsigned* r, const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// A float from L2 (bypassing L1, which is not coherent across SMs). Volatile: never moved above the fence
// before it.
__device__ __forceinline__ float ld_l2(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

// d += a·b for one 16×8 tile.
__device__ __forceinline__ void mma_bf16(float* d, const unsigned* a, unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Eight bf16 of row `row` of a [rows, ld] matrix from column c into shared memory at dst (16-byte aligned):
// a 16-byte cp.async where the row is in range and columns [c, c+8) all lie below `cols` (vec: every such
// address is 16-byte aligned), element loads and zeros otherwise.
__device__ __forceinline__ void load8(bf16* dst, const bf16* src, long long ld, int row, int rows, int c, int cols,
                                      bool vec) {
    if (row >= rows || c >= cols) {
        uint4 zero;  // no make_uint4: NVRTC compiles this file without the toolkit's headers
        zero.x = zero.y = zero.z = zero.w = 0u;
        *(uint4*) dst = zero;
        return;
    }
    const bf16* p = src + row * ld + c;
    if (vec && c + 8 <= cols) {
        cp_async16(dst, p);
        return;
    }
    #pragma unroll
    for (int j = 0; j < 8; j++) dst[j] = c + j < cols ? p[j] : (bf16) 0;
}

// ---- shrink -------------------------------------------------------------------------------------------
//
// Grid (tiles, splits, projections), TC_THREADS (4 warps). Block (t, s, m) computes v for tile t's rows and
// all of its slot's ranks over the inputs [s·kChunk, (s+1)·kChunk) (kChunk a multiple of TC_K_STEP): warp w
// takes rows [16w, 16w+16) of the tile and n8 tiles up to the rank rounded to 16. x and A stream through two
// shared stages of TC_K_STEP inputs (cp.async double buffering). With one split the block writes v. With
// several, it stores its fp32 sums in partial[(m, t)][s] and counts itself in arrivals[(m, t)]; the last
// block to arrive adds the partials in split order (the result does not depend on which block came last),
// writes v and resets the counter for the next launch: one launch, deterministic, no memset.
extern "C" __global__ void __launch_bounds__(TC_THREADS)
sgmv_tc_shrink(const bf16* __restrict__ x, int xStride, bf16* __restrict__ v, int vStride, int vWidth,
               const int* __restrict__ tiles, const char* table0, const char* table1, const char* table2, int slots,
               int in, int kChunk, float* partial, int* arrivals) {
    pdl_entry();
    __shared__ __align__(16) bf16 xs[2][TC_ROWS][TC_KS];
    __shared__ __align__(16) bf16 as[2][TC_MAX_RANK][TC_KS];
    __shared__ int lastToArrive;
    const int tile = blockIdx.x, split = blockIdx.y, splits = gridDim.y, m = blockIdx.z;
    const int nRows = tiles[3 * tile + 1];
    if (nRows == 0) return;
    const int row0 = tiles[3 * tile], slot = tiles[3 * tile + 2];
    SlotTable t = slot_table(pick3(m, table0, table1, table2), slots);
    const int rank = t.rank[slot];
    // The same for every split of (tile, projection): the counters stay consistent.
    if (rank == 0) return;
    if (rank > TC_MAX_RANK || nRows > TC_ROWS) __trap();  // the host routes larger ranks to sgmv.cu
    const bf16* a = (const bf16*) t.a[slot];
    const bf16* xt = x + (long long) row0 * xStride;
    bf16* vt = v + (long long) m * vWidth;
    const int pairs = (rank + 15) >> 4;  // 16 ranks (two n8 tiles) per ldmatrix.x4
    const int rankPad = pairs * 16;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int k0 = split * kChunk, k1 = min(in, k0 + kChunk);
    const int steps = (k1 - k0 + TC_K_STEP - 1) / TC_K_STEP;
    const bool xVec = (xStride & 7) == 0 && aligned16(x);
    const bool aVec = (in & 7) == 0 && aligned16(a);
    const bool warpHasRows = warp * 16 < nRows;

    // Stage s of step i: x[row0 + r, k : k + TC_K_STEP] and A[0 : rankPad, k : k + TC_K_STEP].
    auto load = [&](int stage, int step) {
        const int k = k0 + step * TC_K_STEP;
        constexpr int chunksPerRow = TC_K_STEP / 8;
        for (int c = threadIdx.x; c < TC_ROWS * chunksPerRow; c += TC_THREADS) {
            int r = c / chunksPerRow, col = (c - r * chunksPerRow) * 8;
            load8(&xs[stage][r][col], xt, xStride, r, nRows, k + col, k1, xVec);
        }
        for (int c = threadIdx.x; c < rankPad * chunksPerRow; c += TC_THREADS) {
            int r = c / chunksPerRow, col = (c - r * chunksPerRow) * 8;
            load8(&as[stage][r][col], a, in, r, rank, k + col, k1, aVec);
        }
    };

    float acc[TC_MAX_RANK / 8][4];
    #pragma unroll
    for (int j = 0; j < TC_MAX_RANK / 8; j++)
        #pragma unroll
        for (int e = 0; e < 4; e++) acc[j][e] = 0.0f;

    if (steps > 0) load(0, 0);
    cp_async_commit();
    for (int i = 0; i < steps; i++) {
        if (i + 1 < steps) {
            load((i + 1) & 1, i + 1);  // the stage computed in step i-1, released by the barrier ending it
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const int st = i & 1;
        if (warpHasRows) {
            #pragma unroll
            for (int kk = 0; kk < TC_K_STEP; kk += 16) {
                unsigned af[4];
                ldmatrix_x4(af, &xs[st][warp * 16 + (lane & 15)][kk + (lane >> 4) * 8]);
                #pragma unroll
                for (int p = 0; p < TC_MAX_RANK / 16; p++) {
                    if (p < pairs) {
                        unsigned bf[4];
                        ldmatrix_x4(bf, &as[st][p * 16 + (lane & 7) + ((lane >> 4) << 3)][kk + ((lane >> 3) & 1) * 8]);
                        mma_bf16(acc[2 * p], af, bf[0], bf[1]);
                        mma_bf16(acc[2 * p + 1], af, bf[2], bf[3]);
                    }
                }
            }
        }
        __syncthreads();
    }

    const int g = lane >> 2, tq = lane & 3;
    if (splits == 1) {
        if (warpHasRows) {
            #pragma unroll
            for (int j = 0; j < TC_MAX_RANK / 8; j++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    int r = warp * 16 + g + (e >> 1) * 8, c = j * 8 + 2 * tq + (e & 1);
                    if (r < nRows && c < rank) vt[(long long) (row0 + r) * vStride + c] = f2bf(acc[j][e]);
                }
            }
        }
        return;
    }

    const long long group = (long long) m * gridDim.x + tile;
    float* mine = partial + (group * splits + split) * (TC_ROWS * TC_MAX_RANK);
    if (warpHasRows) {
        #pragma unroll
        for (int j = 0; j < TC_MAX_RANK / 8; j++) {
            if (j < 2 * pairs) {
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    int r = warp * 16 + g + (e >> 1) * 8, c = j * 8 + 2 * tq + (e & 1);
                    mine[r * TC_MAX_RANK + c] = acc[j][e];
                }
            }
        }
    }
    if (!last_to_arrive(arrivals, group, splits, lastToArrive)) return;
    // The tile's rows × rank elements, REDUCE_PER per thread at a time, each summed over the splits in order.
    // The loads are ld.global.cg (L2, where the other blocks' partials are; L1 is not coherent across SMs), a
    // split's REDUCE_PER of them issued before any is added: a pass costs `splits` round trips to L2.
    constexpr int REDUCE_PER = 8;
    const float* all = partial + group * splits * (TC_ROWS * TC_MAX_RANK);
    const int total = nRows * rank;
    for (int base = 0; base < total; base += REDUCE_PER * TC_THREADS) {
        int off[REDUCE_PER];
        float sum[REDUCE_PER];
        #pragma unroll
        for (int q = 0; q < REDUCE_PER; q++) {
            int k = base + threadIdx.x + q * TC_THREADS;
            int r = k / rank, c = k - r * rank;
            off[q] = r * TC_MAX_RANK + c;
            sum[q] = 0.0f;
        }
        for (int sp = 0; sp < splits; sp++) {
            const float* src = all + sp * (TC_ROWS * TC_MAX_RANK);
            float got[REDUCE_PER];
            #pragma unroll
            for (int q = 0; q < REDUCE_PER; q++)
                got[q] = base + threadIdx.x + q * TC_THREADS < total ? ld_l2(src + off[q]) : 0.0f;
            #pragma unroll
            for (int q = 0; q < REDUCE_PER; q++) sum[q] += got[q];
        }
        #pragma unroll
        for (int q = 0; q < REDUCE_PER; q++) {
            int k = base + threadIdx.x + q * TC_THREADS;
            if (k < total) {
                int r = k / rank, c = k - r * rank;
                vt[(long long) (row0 + r) * vStride + c] = f2bf(sum[q]);
            }
        }
    }
    if (threadIdx.x == 0) arrivals[group] = 0;
}

// ---- expand -------------------------------------------------------------------------------------------
//
// Grid (tiles, Σ_m ceil(out_m / TC_OUT_COLS)): output blocks [start_m, start_{m+1}) belong to projection m.
// Block (t, b) computes the TC_ROWS × TC_OUT_COLS product v_tile · B_slot[o0 : o0 + TC_OUT_COLS]ᵀ over k up to
// the rank rounded to 16 (v and B zero past the rank), warps 2 × 2 (32 rows × 64 outputs each), stages it in
// shared memory as fp32, then adds scale · it to y in rows of 8 outputs (16-byte loads and stores where y
// allows), each element y = bf16(y + scale · acc) as sgmv_expand rounds it.
extern "C" __global__ void __launch_bounds__(TC_THREADS)
sgmv_tc_expand(const bf16* __restrict__ v, int vStride, int vWidth, bf16* y, int yStride,
               const int* __restrict__ tiles, const char* table0, const char* table1, const char* table2, int slots,
               int yCol0, int yCol1, int yCol2, int out0, int out1, int out2, int start1, int start2) {
    pdl_entry();
    struct Operands {
        bf16 v[TC_ROWS][TC_RS];
        bf16 b[TC_OUT_COLS][TC_RS];
    };
    union Shared {
        Operands in;
        float out[TC_ROWS][TC_OS];
    };
    __shared__ __align__(16) Shared sh;
    const int tile = blockIdx.x, ob = blockIdx.y;
    const int nRows = tiles[3 * tile + 1];
    if (nRows == 0) return;
    const int row0 = tiles[3 * tile], slot = tiles[3 * tile + 2];
    const int m = ob >= start2 ? 2 : (ob >= start1 ? 1 : 0);
    const int start = m == 0 ? 0 : (m == 1 ? start1 : start2);
    const int yCol = m == 0 ? yCol0 : (m == 1 ? yCol1 : yCol2);
    const int out = m == 0 ? out0 : (m == 1 ? out1 : out2);
    SlotTable t = slot_table(pick3(m, table0, table1, table2), slots);
    const int rank = t.rank[slot];
    if (rank == 0) return;
    if (rank > TC_MAX_RANK || nRows > TC_ROWS) __trap();  // the host routes larger ranks to sgmv.cu
    const float scale = t.scale[slot];
    const bf16* b = (const bf16*) t.b[slot];
    const int o0 = (ob - start) * TC_OUT_COLS;
    const bf16* vt = v + (long long) row0 * vStride + (long long) m * vWidth;
    const bf16* bt = b + (long long) o0 * rank;
    const int kSteps = (rank + 15) >> 4;
    const int rankPad = kSteps * 16;
    const bool vVec = (vStride & 7) == 0 && aligned16(vt);
    const bool bVec = (rank & 7) == 0 && aligned16(b);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wm = warp >> 1, wn = warp & 1;

    const int chunks = rankPad / 8;
    for (int c = threadIdx.x; c < TC_ROWS * chunks; c += TC_THREADS) {
        int r = c / chunks, col = (c - r * chunks) * 8;
        load8(&sh.in.v[r][col], vt, vStride, r, nRows, col, rank, vVec);
    }
    for (int c = threadIdx.x; c < TC_OUT_COLS * chunks; c += TC_THREADS) {
        int r = c / chunks, col = (c - r * chunks) * 8;
        load8(&sh.in.b[r][col], bt, rank, r, out - o0, col, rank, bVec);
    }
    cp_async_commit();
    // This thread's rows of y (8 outputs at a time), loaded now so that their latency overlaps the operands'
    // and the products; y is not __restrict__, so loads placed after the products' stores would wait in turn.
    const int outHere = min(TC_OUT_COLS, out - o0);
    bf16* yt = y + (long long) row0 * yStride + yCol + o0;
    const bool yVec = (yStride & 7) == 0 && aligned16(yt);
    constexpr int chunksPerRow = TC_OUT_COLS / 8;
    constexpr int perThread = TC_ROWS * chunksPerRow / TC_THREADS;
    uint4 old[perThread];
    #pragma unroll
    for (int q = 0; q < perThread; q++) {
        int c = threadIdx.x + q * TC_THREADS;
        int r = c / chunksPerRow, col = (c - r * chunksPerRow) * 8;
        if (yVec && r < nRows && col + 8 <= outHere) old[q] = *(const uint4*) (yt + (long long) r * yStride + col);
    }
    cp_async_wait<0>();
    __syncthreads();

    float acc[2][8][4];
    #pragma unroll
    for (int i = 0; i < 2; i++)
        #pragma unroll
        for (int j = 0; j < 8; j++)
            #pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
    const bool warpHasRows = wm * 32 < nRows;
    if (warpHasRows) {
        #pragma unroll
        for (int ks = 0; ks < TC_MAX_RANK / 16; ks++) {
            if (ks < kSteps) {
                const int kk = ks * 16;
                unsigned af[2][4];
                #pragma unroll
                for (int i = 0; i < 2; i++)
                    ldmatrix_x4(af[i], &sh.in.v[wm * 32 + i * 16 + (lane & 15)][kk + (lane >> 4) * 8]);
                #pragma unroll
                for (int jp = 0; jp < 4; jp++) {
                    unsigned bf[4];
                    ldmatrix_x4(bf, &sh.in.b[wn * 64 + jp * 16 + (lane & 7) + ((lane >> 4) << 3)]
                                            [kk + ((lane >> 3) & 1) * 8]);
                    #pragma unroll
                    for (int i = 0; i < 2; i++) {
                        mma_bf16(acc[i][2 * jp], af[i], bf[0], bf[1]);
                        mma_bf16(acc[i][2 * jp + 1], af[i], bf[2], bf[3]);
                    }
                }
            }
        }
    }
    __syncthreads();  // the operands' shared memory becomes the output staging
    if (warpHasRows) {
        const int g = lane >> 2, tq = lane & 3;
        #pragma unroll
        for (int i = 0; i < 2; i++)
            #pragma unroll
            for (int j = 0; j < 8; j++) {
                int r = wm * 32 + i * 16 + g, c = wn * 64 + j * 8 + 2 * tq;
                float2 lo, hi;
                lo.x = acc[i][j][0];
                lo.y = acc[i][j][1];
                hi.x = acc[i][j][2];
                hi.y = acc[i][j][3];
                *(float2*) &sh.out[r][c] = lo;
                *(float2*) &sh.out[r + 8][c] = hi;
            }
    }
    __syncthreads();

    #pragma unroll
    for (int q = 0; q < perThread; q++) {
        int c = threadIdx.x + q * TC_THREADS;
        int r = c / chunksPerRow, col = (c - r * chunksPerRow) * 8;
        if (r >= nRows || col >= outHere) continue;
        bf16* yp = yt + (long long) r * yStride + col;
        const float* s = &sh.out[r][col];
        if (yVec && col + 8 <= outHere) {
            float f[8];
            unpack8(old[q], f);
            #pragma unroll
            for (int j = 0; j < 8; j++) f[j] = f[j] + scale * s[j];
            *(uint4*) yp = pack8(f);
        } else {
            for (int j = 0; j < 8 && col + j < outHere; j++) yp[j] = f2bf(bf2f(yp[j]) + scale * s[j]);
        }
    }
}
