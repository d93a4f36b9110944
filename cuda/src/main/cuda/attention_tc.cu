// Prefill and mixed-step attention on the tensor cores, FlashAttention-2 style over the paged KV cache:
// causal, grouped-query heads, sliding window, bf16 operands with float32 accumulation and online softmax.
// sm_80 instructions only (mma.sync m16n8k16, ldmatrix, cp.async), so the same code runs on sm_80/89/90.
//
//   Q tile [64 × hd] ─► S = Q·Kᵀ (mma, f32) ─► S·scale·log2e, causal/window mask ─► m' = max(m, rowmax S)
//     ─► P = 2^(S − m') (registers, bf16) ─► O = O·2^(m − m') + P·V (mma, P as the A operand) ─► out = O / l
//
// Block (ATT_TC_THREADS = 4 warps) = (tile, KV head, split). A tile's ATT_TC_BLOCK_M = 64 matrix rows are the query
// heads of the KV head for consecutive query rows of one sequence: matrix row m is query row firstRow + m / G
// and query head kvHead·G + m % G (G = numHeads / numKvHeads; 64 / G query rows per tile, the rest of the
// rows idle when G does not divide 64). Every key and value tile is read once for all G heads, and a decode
// row (a sequence with one query row in a mixed step) fills G rows of a tile instead of one.
//
// Keys are walked in tiles of ATT_TC_BLOCK_N = 64 tokens, gathered from the pages with 16-byte cp.async into
// shared memory, two stages deep: the copies of tile j + 1 are in flight while tile j is computed. Rows of
// shared memory are padded by 16 bytes, so the 8 row addresses of an ldmatrix phase fall in 8 different
// bank quads. Each warp owns 16 matrix rows; its Q fragments stay in registers for the whole key walk.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"; g = lane / 4,
// q = lane % 4):  A (16×16, row): {a0a1, a2a3, a4a5, a6a7} = rows g, g+8, g, g+8 at columns 2q(+1) and
// 2q+8(+1).  B (16×8, col): {b0b1, b2b3} = k rows 2q(+1) and 2q+8(+1) of column g.  C/D (16×8, f32):
// c0,c1 = row g, columns 2q, 2q+1; c2,c3 = row g+8. So the S accumulators of two adjacent 8-key n-tiles
// are exactly the A fragment of P for one 16-key k-step of P·V: no shuffle, no shared memory.
//
// The tile table (int pairs {sequence, first query row}, -1 for unused entries) and the number of splits are
// built on the host; a split covers a range of the tile's visible keys cut at multiples of 64 tokens, and with
// more than one split the partial (acc, m, l) go to attention_merge (attention.cu), as for the CUDA-core kernels.
//
// Cache layout: [slot][kvHead][headDim] bf16, slot = page · pageSize + offset.
//
// Without a GPU, cuda/src/test/emu/run_emu.sh runs this file's kernels on the host (warp collectives emulated
// from the layouts above) against a float64 reference; on a GPU, CudaPrefillAttentionTest.
#include "common.cuh"

// Slot of token t of a sequence whose page table is pages[]. pageShift = log2(pageSize), or -1.
__device__ __forceinline__ int tc_page_slot(const int* __restrict__ pages, int t, int pageSize, int pageShift) {
    int i = pageShift >= 0 ? t >> pageShift : t / pageSize;
    return pages[i] * pageSize + (t - i * pageSize);
}

__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return (unsigned) __cvta_generic_to_shared(p);
}

// 16 bytes global → shared, asynchronous; bytes = 0 writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(smem_u32(dst)), "l"(src), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}

// Four 8×8 b16 matrices; lane l gives the row address of matrix l / 8, register i receives matrix i.
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}

// The same, each matrix transposed (thread l receives column l / 4, rows 2(l % 4) and 2(l % 4) + 1).
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}

// d += a·b for one 16×8×16 bf16 tile, float32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats to bf16x2, round to nearest even: lo in the low half (the lower column index), hi in the high half.
__device__ __forceinline__ unsigned pack_bf16x2(float lo, float hi) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

#define TC_PARAMS                                                                                           \
    const bf16* __restrict__ qkv, int qkvStride, const bf16* __restrict__ kCache,                          \
    const bf16* __restrict__ vCache, const int* __restrict__ queryStarts,                                  \
    const int* __restrict__ contextLens, const int* __restrict__ pageTableStarts,                          \
    const int* __restrict__ pageTables, const int* __restrict__ tiles, int pageSize, int pageShift,        \
    int numHeads, int numKvHeads, float scale, int slidingWindow, bf16* __restrict__ out, int outStride,   \
    float* __restrict__ partAcc, float* __restrict__ partMl

#define TC_ARGS                                                                                             \
    qkv, qkvStride, kCache, vCache, queryStarts, contextLens, pageTableStarts, pageTables, tiles, pageSize, \
    pageShift, numHeads, numKvHeads, scale, slidingWindow, out, outStride, partAcc, partMl

template <int HD>
__device__ __forceinline__ void attention_prefill_tc(TC_PARAMS) {
    constexpr int BM = ATT_TC_BLOCK_M, BN = ATT_TC_BLOCK_N;
    constexpr int STRIDE = HD + 8;            // bf16 per shared-memory row (16 bytes of padding)
    constexpr int CHUNKS = HD / 8;            // 16-byte chunks per row
    constexpr int KSTEPS = HD / 16;           // k-steps of Q·Kᵀ
    constexpr int SN = BN / 8;                // 8-key n-tiles of S
    constexpr int ON = HD / 8;                // 8-dim n-tiles of O
    static_assert(BM == 16 * (ATT_TC_THREADS / 32), "one warp per 16 matrix rows");
    static_assert(BN == 64, "P·V walks the 64 keys in 4 k-steps of 16");
    static_assert(HD % 16 == 0, "head sizes are whole k-steps of 16");

    extern __shared__ __attribute__((aligned(16))) bf16 tc_smem[];
    bf16* q_s = tc_smem;                      // [BM][STRIDE]
    bf16* k_s = q_s + BM * STRIDE;            // [2][BN][STRIDE]
    bf16* v_s = k_s + 2 * BN * STRIDE;        // [2][BN][STRIDE]

    const int tile = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    const int seq = tiles[2 * tile];
    if (seq < 0) {
        return;
    }
    const int firstRow = tiles[2 * tile + 1];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = numHeads / numKvHeads;
    const int rowsPerTile = BM / group;
    const int qEnd = queryStarts[seq + 1];
    const int nRows = min(rowsPerTile, qEnd - firstRow);
    const int pos0 = contextLens[seq] - (qEnd - firstRow);   // position of the tile's first query row
    const int kvCols = numKvHeads * HD;
    const int* pages = pageTables + pageTableStarts[seq];

    // Keys the tile's rows see: [kLo, kHi); this split takes [lo, hi), cut at multiples of BN from kLo.
    const int kHi = pos0 + nRows;
    const int kLo = slidingWindow > 0 ? max(0, pos0 - slidingWindow + 1) : 0;
    const int per = ((kHi - kLo + splits - 1) / splits + BN - 1) / BN * BN;
    const int lo = kLo + split * per;
    const int hi = min(kHi, lo + per);

    // This thread's two matrix rows (r = 0: g, r = 1: g + 8 of the warp's 16): query row, head, position,
    // first visible key. Idle rows get position -1, so that every key is masked for them.
    const int g = lane >> 2, q4 = lane & 3;
    int rowOf[2], headOf[2], posOf[2], lowOf[2];
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        int m = warp * 16 + g + 8 * r;
        int qr = m / group;
        bool valid = qr < nRows;
        rowOf[r] = valid ? firstRow + qr : -1;
        headOf[r] = kvh * group + (m - qr * group);
        posOf[r] = valid ? pos0 + qr : -1;
        lowOf[r] = slidingWindow > 0 ? max(0, posOf[r] - slidingWindow + 1) : 0;
    }

    if (lo >= hi) {
        // An empty split (only with splits > 1: a tile always sees its own keys): m = -inf, l = 0.
        #pragma unroll
        for (int r = 0; r < 2; r++) {
            if (rowOf[r] >= 0 && q4 == 0) {
                long long i = ((long long) rowOf[r] * numHeads + headOf[r]) * splits + split;
                partMl[2 * i] = NEG_INF;
                partMl[2 * i + 1] = 0.0f;
            }
        }
        return;
    }

    // Q tile → shared memory (idle rows zero), in the same cp.async group as the first key/value tile.
    for (int i = tid; i < BM * CHUNKS; i += ATT_TC_THREADS) {
        int m = i / CHUNKS, c = i - m * CHUNKS;
        int qr = m / group;
        bool valid = qr < nRows;
        const bf16* src = valid ? qkv + (long long) (firstRow + qr) * qkvStride
                                      + (kvh * group + (m - qr * group)) * HD + c * 8
                                : qkv;
        cp_async16(q_s + m * STRIDE + c * 8, src, valid ? 16 : 0);
    }

    // Keys and values of the tile starting at kb → stage st; tokens at or past hi are zero-filled.
    auto load_kv = [&](int st, int kb) {
        bf16* kd = k_s + st * BN * STRIDE;
        bf16* vd = v_s + st * BN * STRIDE;
        for (int i = tid; i < BN * CHUNKS; i += ATT_TC_THREADS) {
            int r = i / CHUNKS, c = i - r * CHUNKS;
            int t = kb + r;
            bool ok = t < hi;
            long long off = ok ? (long long) tc_page_slot(pages, t, pageSize, pageShift) * kvCols + kvh * HD + c * 8 : 0;
            cp_async16(kd + r * STRIDE + c * 8, kCache + off, ok ? 16 : 0);
            cp_async16(vd + r * STRIDE + c * 8, vCache + off, ok ? 16 : 0);
        }
    };

    load_kv(0, lo);
    cp_async_commit();

    // ldmatrix row addresses of this lane (see the layouts above):
    //   Q (A, x4): row lane % 16, columns +8 for lanes 16-31;
    //   K (B of Q·Kᵀ, x4): key (lane / 16)·8 + lane % 8, dims +8 for lanes 8-15 and 24-31
    //     → registers {b0, b1} of n-tile 2j, {b0, b1} of n-tile 2j + 1;
    //   V (B of P·V, x4 trans): key ((lane / 8) % 2)·8 + lane % 8, dims (lane / 16)·8
    //     → registers {b0, b1} of dim n-tile 2j, {b0, b1} of dim n-tile 2j + 1.
    const int qOff = (warp * 16 + (lane & 15)) * STRIDE + (lane >> 4) * 8;
    const int kOff = ((lane >> 4) * 8 + (lane & 7)) * STRIDE + ((lane >> 3) & 1) * 8;
    const int vOff = (((lane >> 3) & 1) * 8 + (lane & 7)) * STRIDE + (lane >> 4) * 8;

    const float scaleLog2 = scale * LOG2E;
    unsigned qf[KSTEPS][4];
    float o[ON][4];
    #pragma unroll
    for (int j = 0; j < ON; j++) {
        o[j][0] = 0.0f; o[j][1] = 0.0f; o[j][2] = 0.0f; o[j][3] = 0.0f;
    }
    float mRow[2] = {NEG_INF, NEG_INF};
    float lRow[2] = {0.0f, 0.0f};       // this thread's share of the row sums (its 2 columns of each n-tile)

    // The rows' bounds that decide whether a tile needs the mask: the first row's position, the last row's window.
    const int minPos = pos0;
    const int maxLow = slidingWindow > 0 ? max(0, pos0 + nRows - 1 - slidingWindow + 1) : 0;
    // This warp's rows: none with a query row (a short tile), or all past a key tile (the causal diagonal) or
    // before it (the window) leave the warp out of that tile's math; it still copies and meets the barriers.
    const int activeRows = nRows * group;
    const bool warpActive = warp * 16 < activeRows;
    const int warpLastPos = pos0 + (min(activeRows, warp * 16 + 16) - 1) / group;
    const int warpFirstPos = pos0 + warp * 16 / group;
    const int warpFirstLow = slidingWindow > 0 ? max(0, warpFirstPos - slidingWindow + 1) : 0;

    const int numTiles = (hi - lo + BN - 1) / BN;
    for (int j = 0; j < numTiles; j++) {
        const int kb = lo + j * BN;
        const int st = j & 1;
        if (j + 1 < numTiles) {
            load_kv(st ^ 1, kb + BN);
        }
        cp_async_commit();                  // possibly empty: the group count stays uniform
        cp_async_wait<1>();                 // everything but the newest group: tile j (and Q) has landed
        __syncthreads();

        if (j == 0) {
            #pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) ldmatrix_x4(qf[kk], q_s + qOff + kk * 16);
        }
        // Every key of the tile masked for all 16 rows of this warp (none with a query row, all before the
        // tile, or the tile before all their windows): m, l and O stay, the warp skips the math.
        if (warpActive && kb <= warpLastPos && kb + BN - 1 >= warpFirstLow) {
            // S = Q·Kᵀ for this warp's 16 rows and the tile's 64 keys.
            const bf16* kt = k_s + st * BN * STRIDE;
            float s[SN][4];
            #pragma unroll
            for (int n = 0; n < SN; n++) {
                s[n][0] = 0.0f; s[n][1] = 0.0f; s[n][2] = 0.0f; s[n][3] = 0.0f;
            }
            #pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) {
                #pragma unroll
                for (int np = 0; np < SN / 2; np++) {
                    unsigned b[4];
                    ldmatrix_x4(b, kt + kOff + np * 16 * STRIDE + kk * 16);
                    mma_bf16(s[2 * np], qf[kk], b[0], b[1]);
                    mma_bf16(s[2 * np + 1], qf[kk], b[2], b[3]);
                }
            }

            // Scores in log2 units; keys past hi, after a row's position or before its window get -inf.
            const bool full = kb + BN <= hi && kb + BN - 1 <= minPos && kb >= maxLow;
            #pragma unroll
            for (int n = 0; n < SN; n++) {
                #pragma unroll
                for (int e = 0; e < 4; e++) {
                    float v = s[n][e] * scaleLog2;
                    if (!full) {
                        int t = kb + n * 8 + 2 * q4 + (e & 1);
                        int r = e >> 1;
                        if (t >= hi || t > posOf[r] || t < lowOf[r]) v = NEG_INF;
                    }
                    s[n][e] = v;
                }
            }

            // Online softmax per row: the row's max over the quad's 4 threads, rescale, p = 2^(s - m').
            #pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = NEG_INF;
                #pragma unroll
                for (int n = 0; n < SN; n++) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float mNew = fmaxf(mRow[r], mx);
                float mRef = mNew == NEG_INF ? 0.0f : mNew;
                float corr = exp2f(mRow[r] - mRef);      // 0 while the row had nothing (m = -inf)
                float sum = 0.0f;
                #pragma unroll
                for (int n = 0; n < SN; n++) {
                    float p0 = exp2f(s[n][2 * r] - mRef), p1 = exp2f(s[n][2 * r + 1] - mRef);
                    s[n][2 * r] = p0;
                    s[n][2 * r + 1] = p1;
                    sum += p0 + p1;
                }
                mRow[r] = mNew;
                lRow[r] = lRow[r] * corr + sum;
                #pragma unroll
                for (int d = 0; d < ON; d++) {
                    o[d][2 * r] *= corr;
                    o[d][2 * r + 1] *= corr;
                }
            }

            // O += P·V: P's A fragment for keys [16kk, 16kk + 16) is S's n-tiles 2kk and 2kk + 1, rounded to bf16.
            const bf16* vt = v_s + st * BN * STRIDE;
            #pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                unsigned pa[4];
                pa[0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
                pa[1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
                pa[2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
                #pragma unroll
                for (int dp = 0; dp < ON / 2; dp++) {
                    unsigned b[4];
                    ldmatrix_x4_trans(b, vt + vOff + kk * 16 * STRIDE + dp * 16);
                    mma_bf16(o[2 * dp], pa, b[0], b[1]);
                    mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
                }
            }
        }
        __syncthreads();                    // stage st is refilled by the next iteration's copies
    }
    cp_async_wait<0>();

    // Row sums over the quad, then out = O / l (one split) or the partial (O, m, l) for attention_merge.
    #pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = lRow[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        if (rowOf[r] < 0) {
            continue;
        }
        if (splits == 1) {
            float inv = l > 0.0f ? 1.0f / l : 0.0f;
            bf16* dst = out + (long long) rowOf[r] * outStride + headOf[r] * HD + 2 * q4;
            #pragma unroll
            for (int d = 0; d < ON; d++) {
                *(unsigned*) (dst + d * 8) = pack_bf16x2(o[d][2 * r] * inv, o[d][2 * r + 1] * inv);
            }
        } else {
            long long i = ((long long) rowOf[r] * numHeads + headOf[r]) * splits + split;
            float* dst = partAcc + i * HD + 2 * q4;
            #pragma unroll
            for (int d = 0; d < ON; d++) {
                float2 v;
                v.x = o[d][2 * r];
                v.y = o[d][2 * r + 1];
                *(float2*) (dst + d * 8) = v;
            }
            if (q4 == 0) {
                partMl[2 * i] = mRow[r];
                partMl[2 * i + 1] = l;
            }
        }
    }
}

// One kernel per head size (a multiple of 16: whole k-steps of Q·Kᵀ and pairs of 8-dim n-tiles of O);
// 2 blocks per SM (87 KB of shared memory each at head size 128).
#define PREFILL_TC_KERNEL(HD)                                                                               \
    extern "C" __global__ void __launch_bounds__(ATT_TC_THREADS, 2) attention_prefill_tc_h##HD(TC_PARAMS) {     \
        pdl_entry();                                                                                            \
        attention_prefill_tc<HD>(TC_ARGS);                                                                  \
    }

PREFILL_TC_KERNEL(32)
PREFILL_TC_KERNEL(64)
PREFILL_TC_KERNEL(96)
PREFILL_TC_KERNEL(128)
