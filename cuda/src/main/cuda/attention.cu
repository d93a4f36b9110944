// Paged causal attention with grouped-query heads: a decode kernel for steps where every sequence has one
// query row, a general kernel for prefill and mixed rows, and the merge of flash-decoding splits.
//
//   q (qkv row) ─► scores s[g][t] = q_g·k_t·scale ─► p = 2^(s - m) ─► acc[g] += p·v_t ─► out = acc / l
//
// Both kernels keep FlashAttention's online softmax (running max m and sum l) in float32, in the log2
// domain (q is pre-scaled by scale · log2 e). Each kernel's grid has a fixed number of splits along the
// sequence (a function of shapes only, so that a captured CUDA graph stays valid); every block works out
// its own token range from its row's actual length, and a block whose range is empty writes m = -inf,
// l = 0. With more than one split, attention_merge combines the partial (m, l, acc) of a (row, head).
//
// Cache layout: [slot][kvHead][headDim] bf16, slot = page · pageSize + offset.
#include "common.cuh"

// Slot of token t of a sequence whose page table is pages[]. pageShift = log2(pageSize), or -1.
__device__ __forceinline__ int page_slot(const int* __restrict__ pages, int t, int pageSize, int pageShift) {
    int i = pageShift >= 0 ? t >> pageShift : t / pageSize;
    return pages[i] * pageSize + (t - i * pageSize);
}

// Token range [lo, hi) of split `split` of `splits` over the visible keys [start, end), cut at multiples
// of `tile` tokens from start. Later splits may be empty (lo >= hi).
__device__ __forceinline__ void split_range(int start, int end, int split, int splits, int tile, int* lo, int* hi) {
    int n = end - start;
    int per = ((n + splits - 1) / splits + tile - 1) / tile * tile;
    *lo = start + split * per;
    *hi = min(end, *lo + per);
}

// Rescale factor of a softmax state with max m when the max becomes mNew: 2^(m - mNew); 0 when the state
// is empty (m = -inf), and never NaN (both -inf: the state and the new one are empty).
__device__ __forceinline__ float rescale(float m, float mNew) {
    return exp2f(m - (mNew == NEG_INF ? 0.0f : mNew));
}

// The splits of one (row, head), merged: M = max m_s, L = Σ l_s·2^(m_s − M), out[d] = Σ acc_s[d]·2^(m_s − M) / L
// for d = d0, d0 + dStep, ... Splits with an empty range (m_s = -inf) are skipped; their acc was never written.
// Volatile loads go to L2, where other blocks' partials are (L1 is not coherent across SMs).
__device__ __forceinline__ void merge_splits(const volatile float* partAcc, const volatile float* partMl, long long base,
                                             int splits, int headDim, int d0, int dStep, bf16* outHead) {
    float m = NEG_INF;
    for (int s = 0; s < splits; s++) m = fmaxf(m, partMl[2 * (base + s)]);
    float l = 0.0f;
    for (int s = 0; s < splits; s++) {
        float ms = partMl[2 * (base + s)];
        if (ms != NEG_INF) l += partMl[2 * (base + s) + 1] * exp2f(ms - m);
    }
    for (int d = d0; d < headDim; d += dStep) {
        float o = 0.0f;
        for (int s = 0; s < splits; s++) {
            float ms = partMl[2 * (base + s)];
            if (ms != NEG_INF) o += partAcc[(base + s) * headDim + d] * exp2f(ms - m);
        }
        outHead[d] = f2bf(l > 0.0f ? o / l : 0.0f);
    }
}

// ---- decode: one query row per sequence ---------------------------------------------------------------
//
// Block (128 threads) = (row, KV head, head pass, split); grid x = (row · numKvHeads + kvHead) · passes +
// pass, y = split. A block carries GT query heads of the KV head (the G = numHeads / numKvHeads heads are
// cut into passes of GT, so registers stay bounded; G ≤ 8 is one pass) and loads each key and value once
// for all of them.
//
// Lanes split the head dimension: a token group of L lanes (L = 8, 16, 32: the power of two ≥ headDim / 8)
// reads one token's key row and value row, 16 bytes (8 bf16) per lane, so a warp reads 32 / L tokens at a
// time with full 128-byte lines. Each token group walks U consecutive tokens per tile with its own online
// softmax state; the tile's U keys and U values are all loaded before they are used, and the next tile's
// loads are issued before the current tile is computed (registers double-buffered), so each lane keeps
// 2·U·32 bytes of keys and values in flight. Page-table lookups run one further tile ahead.
//
//   per tile:  s[u][g] = Σ_lanes q_g·k_u (xor-shuffle over the L lanes)  ─► m' = max(m, s) ─►
//              l = l·2^(m-m') + Σ_u 2^(s-m'),  acc[g][8] = acc·2^(m-m') + Σ_u 2^(s-m')·v_u[8]
//
// At the end the token groups of a warp merge by shuffles and the 4 warps through shared memory. With splits
// and an arrival counter per (row, KV head, pass) (arrivals not null), the last block of the splits to finish
// merges them (merge_splits, as attention_merge would) and sets the counter back to 0 for the next launch or graph
// replay; without, attention_merge runs after the kernel.

#define DEC_WARPS (DEC_THREADS / 32)

// After a block's partials of its (row, KV head, pass) are written: counts the block in (last_to_arrive), and the
// last of the splits merges the pass's `heads` query heads [h0, h0 + heads) into out and sets the counter back to
// zero for the next launch or graph replay. Every thread of the block calls it.
__device__ __forceinline__ void decode_arrive(int* arrivals, const float* partAcc, const float* partMl, int row,
                                              int h0, int heads, int numHeads, int headDim, int splits, bf16* out,
                                              int outStride) {
    __shared__ int lastToArrive;
    if (!last_to_arrive(arrivals, blockIdx.x, splits, lastToArrive)) return;
    for (int g = 0; g < heads; g++) {
        int h = h0 + g;
        merge_splits(partAcc, partMl, ((long long) row * numHeads + h) * splits, splits, headDim, threadIdx.x,
                     DEC_THREADS, out + (long long) row * outStride + h * headDim);
    }
    if (threadIdx.x == 0) arrivals[blockIdx.x] = 0;
}

#define DECODE_PARAMS                                                                                       \
    const bf16* __restrict__ qkv, int qkvStride, const bf16* __restrict__ kCache,                          \
    const bf16* __restrict__ vCache, const int* __restrict__ contextLens,                                  \
    const int* __restrict__ pageTableStarts, const int* __restrict__ pageTables, int pageSize,             \
    int pageShift, int numHeads, int numKvHeads, int headDim, float scale, int slidingWindow,              \
    bf16* __restrict__ out, int outStride, float* __restrict__ partAcc, float* __restrict__ partMl,        \
    int* __restrict__ arrivals

#define DECODE_ARGS                                                                                         \
    qkv, qkvStride, kCache, vCache, contextLens, pageTableStarts, pageTables, pageSize, pageShift,          \
    numHeads, numKvHeads, headDim, scale, slidingWindow, out, outStride, partAcc, partMl, arrivals

__device__ __forceinline__ uint4 zero4() {
    uint4 z;
    z.x = 0u; z.y = 0u; z.z = 0u; z.w = 0u;
    return z;
}

// Cache slots of the U tokens t0 + u of a token group (0 for tokens at or past hi).
template <int U>
__device__ __forceinline__ void lookup_slots(const int* pages, int t0, int hi, int pageSize, int pageShift,
                                             int* slot) {
    #pragma unroll
    for (int u = 0; u < U; u++) {
        int t = t0 + u;
        slot[u] = t < hi ? page_slot(pages, t, pageSize, pageShift) : 0;
    }
}

// This lane's 8 dims of the key and value rows of the U tokens t0 + u at slot[u] (zeros for an idle lane and
// for tokens at or past hi).
template <int U>
__device__ __forceinline__ void load_kv(const bf16* kBase, const bf16* vBase, const int* slot, int kvCols, int t0,
                                        int hi, bool active, uint4* k, uint4* v) {
    #pragma unroll
    for (int u = 0; u < U; u++) {
        bool ok = active && t0 + u < hi;
        long long off = (long long) slot[u] * kvCols;
        k[u] = ok ? *(const uint4*) (kBase + off) : zero4();
        v[u] = ok ? *(const uint4*) (vBase + off) : zero4();
    }
}

template <int L, int GT, int U>
__device__ __forceinline__ void attention_decode(DECODE_PARAMS) {
    constexpr int GROUPS = DEC_THREADS / L;      // token groups per block
    constexpr int TILE = GROUPS * U;             // tokens per block and iteration
    __shared__ float acc_s[DEC_WARPS][GT][8 * L];
    __shared__ float m_s[DEC_WARPS][GT], l_s[DEC_WARPS][GT];

    const int group = numHeads / numKvHeads;
    const int passes = (group + GT - 1) / GT;
    const int pass = blockIdx.x % passes;
    const int kvh = (blockIdx.x / passes) % numKvHeads;
    const int row = blockIdx.x / passes / numKvHeads;
    const int split = blockIdx.y, splits = gridDim.y;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int c = lane & (L - 1);                // this lane's 8 dims: [8c, 8c + 8)
    const int gi = tid / L;                      // token group in the block
    const bool active = c < (headDim >> 3);
    const int g0 = pass * GT;
    const int heads = min(GT, group - g0);       // query heads in this pass
    const int kvCols = numKvHeads * headDim;

    // The row's query sits at position end - 1 and sees keys [start, end); this split takes [lo, hi).
    const int end = contextLens[row];
    const int start = slidingWindow > 0 ? max(0, end - slidingWindow) : 0;
    int lo, hi;
    split_range(start, end, split, splits, TILE, &lo, &hi);
    if (lo >= hi) {
        if (tid < heads) {
            long long i = ((long long) row * numHeads + kvh * group + g0 + tid) * splits + split;
            partMl[2 * i] = NEG_INF;
            partMl[2 * i + 1] = 0.0f;
        }
        if (splits > 1 && arrivals != nullptr) {
            decode_arrive(arrivals, partAcc, partMl, row, kvh * group + g0, heads, numHeads, headDim, splits, out,
                          outStride);
        }
        return;
    }

    const int* pages = pageTables + pageTableStarts[row];
    const bf16* kBase = kCache + kvh * headDim + c * 8;
    const bf16* vBase = vCache + kvh * headDim + c * 8;

    float q[GT][8];
    {
        const float qScale = scale * LOG2E;
        const bf16* qRow = qkv + (long long) row * qkvStride + (kvh * group + g0) * headDim + c * 8;
        #pragma unroll
        for (int g = 0; g < GT; g++) {
            #pragma unroll
            for (int j = 0; j < 8; j++) q[g][j] = active && g < heads ? bf2f(qRow[g * headDim + j]) * qScale : 0.0f;
        }
    }
    float m[GT], l[GT], acc[GT][8];
    #pragma unroll
    for (int g = 0; g < GT; g++) {
        m[g] = NEG_INF;
        l[g] = 0.0f;
        #pragma unroll
        for (int j = 0; j < 8; j++) acc[g][j] = 0.0f;
    }

    // This group's tokens in the tile starting at b: b + gi·U + u.
    const int first = lo + gi * U;
    int slot[U];
    uint4 kc[U], vc[U];
    lookup_slots<U>(pages, first, hi, pageSize, pageShift, slot);
    load_kv<U>(kBase, vBase, slot, kvCols, first, hi, active, kc, vc);
    lookup_slots<U>(pages, first + TILE, hi, pageSize, pageShift, slot);

    for (int b = lo; b < hi; b += TILE) {
        const int t0 = b + gi * U;
        // Next tile's keys and values (slots looked up one iteration ago), then the page ids of the one after.
        uint4 kn[U], vn[U];
        load_kv<U>(kBase, vBase, slot, kvCols, t0 + TILE, hi, active, kn, vn);
        lookup_slots<U>(pages, t0 + 2 * TILE, hi, pageSize, pageShift, slot);

        // Scores of this tile: partial dot products over this lane's 8 dims, summed over the group's lanes.
        float s[U][GT];
        #pragma unroll
        for (int u = 0; u < U; u++) {
            float kf[8];
            unpack8(kc[u], kf);
            #pragma unroll
            for (int g = 0; g < GT; g++) {
                float d = 0.0f;
                #pragma unroll
                for (int j = 0; j < 8; j++) d = fmaf(q[g][j], kf[j], d);
                s[u][g] = d;
            }
        }
        #pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) {
            #pragma unroll
            for (int u = 0; u < U; u++) {
                #pragma unroll
                for (int g = 0; g < GT; g++) s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], o);
            }
        }
        #pragma unroll
        for (int u = 0; u < U; u++) {
            if (t0 + u >= hi) {
                #pragma unroll
                for (int g = 0; g < GT; g++) s[u][g] = NEG_INF;
            }
        }

        // Online softmax: s becomes p = 2^(s - m').
        #pragma unroll
        for (int g = 0; g < GT; g++) {
            float mt = s[0][g];
            #pragma unroll
            for (int u = 1; u < U; u++) mt = fmaxf(mt, s[u][g]);
            float mNew = fmaxf(m[g], mt);
            float corr = rescale(m[g], mNew);
            float mRef = mNew == NEG_INF ? 0.0f : mNew;
            float sum = 0.0f;
            #pragma unroll
            for (int u = 0; u < U; u++) {
                s[u][g] = exp2f(s[u][g] - mRef);
                sum += s[u][g];
            }
            m[g] = mNew;
            l[g] = l[g] * corr + sum;
            #pragma unroll
            for (int j = 0; j < 8; j++) acc[g][j] *= corr;
        }
        #pragma unroll
        for (int u = 0; u < U; u++) {
            float vf[8];
            unpack8(vc[u], vf);
            #pragma unroll
            for (int g = 0; g < GT; g++) {
                #pragma unroll
                for (int j = 0; j < 8; j++) acc[g][j] = fmaf(s[u][g], vf[j], acc[g][j]);
            }
        }
        #pragma unroll
        for (int u = 0; u < U; u++) {
            kc[u] = kn[u];
            vc[u] = vn[u];
        }
    }

    // Merge the token groups of the warp (lanes with the same dims c), then the warps.
    #pragma unroll
    for (int o = L; o < 32; o <<= 1) {
        #pragma unroll
        for (int g = 0; g < GT; g++) {
            float mo = __shfl_xor_sync(0xffffffffu, m[g], o);
            float lo2 = __shfl_xor_sync(0xffffffffu, l[g], o);
            float mNew = fmaxf(m[g], mo);
            float a = rescale(m[g], mNew), bo = rescale(mo, mNew);
            l[g] = l[g] * a + lo2 * bo;
            #pragma unroll
            for (int j = 0; j < 8; j++) acc[g][j] = acc[g][j] * a + __shfl_xor_sync(0xffffffffu, acc[g][j], o) * bo;
            m[g] = mNew;
        }
    }
    if (lane < L) {
        #pragma unroll
        for (int g = 0; g < GT; g++) {
            if (active) {
                #pragma unroll
                for (int j = 0; j < 8; j++) acc_s[warp][g][c * 8 + j] = acc[g][j];
            }
            if (lane == 0) {
                m_s[warp][g] = m[g];
                l_s[warp][g] = l[g];
            }
        }
    }
    __syncthreads();
    for (int k = tid; k < heads * headDim; k += DEC_THREADS) {
        int g = k / headDim, d = k - g * headDim;
        float mx = m_s[0][g];
        #pragma unroll
        for (int w = 1; w < DEC_WARPS; w++) mx = fmaxf(mx, m_s[w][g]);
        float sum = 0.0f, o = 0.0f;
        #pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
            float f = rescale(m_s[w][g], mx);
            sum += l_s[w][g] * f;
            o += acc_s[w][g][d] * f;
        }
        int h = kvh * group + g0 + g;
        if (splits == 1) {
            out[(long long) row * outStride + h * headDim + d] = f2bf(sum > 0.0f ? o / sum : 0.0f);
        } else {
            long long i = ((long long) row * numHeads + h) * splits + split;
            partAcc[i * headDim + d] = o;
            if (d == 0) {
                partMl[2 * i] = mx;
                partMl[2 * i + 1] = sum;
            }
        }
    }
    if (splits > 1 && arrivals != nullptr) {
        decode_arrive(arrivals, partAcc, partMl, row, kvh * group + g0, heads, numHeads, headDim, splits, out,
                      outStride);
    }
}

// One kernel per (lanes per token L, heads per pass GT); U tokens per group and tile, and a floor of
// resident blocks per SM that keeps the register count where the kernel has no spills.
#define DECODE_KERNEL(L, GT, U, MIN_BLOCKS)                                                                 \
    extern "C" __global__ void __launch_bounds__(DEC_THREADS, MIN_BLOCKS)                                   \
    attention_decode_l##L##_g##GT(DECODE_PARAMS) {                                                          \
        pdl_entry();                                                                                        \
        attention_decode<L, GT, U>(DECODE_ARGS);                                                            \
    }

// Every lane count gets the four heads-per-pass kernels, with the same floors (q and acc, GT · 8 floats each,
// take more registers as GT grows).
#define DECODE_KERNELS(L)                                                                                   \
    DECODE_KERNEL(L, 1, 4, 4)                                                                               \
    DECODE_KERNEL(L, 2, 4, 4)                                                                               \
    DECODE_KERNEL(L, 4, 4, 3)                                                                               \
    DECODE_KERNEL(L, 8, 4, 2)

DECODE_KERNELS(8)
DECODE_KERNELS(16)
DECODE_KERNELS(32)

// ---- general: any number of query rows per sequence (prefill chunks, mixed steps) ------------------------
//
// One block per (query row, KV head, split): the block holds the G = numHeads / numKvHeads query heads
// that read this KV head, so each key and value is loaded once for all of them. Keys are walked in
// tiles of ATT_TILE tokens: one thread per token computes its scores for all G heads, the tile's value
// rows are staged in shared memory, then each thread accumulates its head dims.

#define ATT_DIMS_PER_THREAD (ATT_MAX_HEAD_DIM / ATT_THREADS)

// queryStarts[seqs + 1], contextLens[seqs], pageTableStarts[seqs]: the AttentionBatch arrays as they are.
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
attention_paged(const bf16* __restrict__ qkv, int qkvStride,
                const bf16* __restrict__ kCache, const bf16* __restrict__ vCache,
                const int* __restrict__ queryStarts, const int* __restrict__ contextLens,
                const int* __restrict__ pageTableStarts, const int* __restrict__ pageTables, int seqs,
                int pageSize, int numHeads, int numKvHeads, int headDim, float scale, int slidingWindow,
                bf16* __restrict__ out, int outStride,
                float* __restrict__ partAcc, float* __restrict__ partMl) {
    pdl_entry();
    // Dynamic shared memory: q [group][headDim] f32 | p [group][ATT_TILE] f32 | v tile [ATT_TILE][headDim] bf16.
    extern __shared__ __attribute__((aligned(16))) float smem[];
    __shared__ int slot_s[ATT_TILE];
    __shared__ float m_s[ATT_MAX_GROUP], l_s[ATT_MAX_GROUP], c_s[ATT_MAX_GROUP];

    const int row = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = numHeads / numKvHeads;
    const int kvCols = numKvHeads * headDim;
    float* q_s = smem;
    float* p_s = q_s + group * headDim;
    bf16* v_s = (bf16*) (p_s + group * ATT_TILE);
#define Q_S(g, d) q_s[(g) * headDim + (d)]
#define P_S(g, t) p_s[(g) * ATT_TILE + (t)]

    // The row's sequence: the last s with queryStarts[s] <= row (sequences without rows share a start).
    int seq = 0;
    for (int a = 0, b = seqs - 1; a <= b;) {
        int mid = (a + b) >> 1;
        if (queryStarts[mid] <= row) { seq = mid; a = mid + 1; } else { b = mid - 1; }
    }
    const int end = contextLens[seq] - (queryStarts[seq + 1] - row) + 1;   // position + 1
    const int* pages = pageTables + pageTableStarts[seq];
    const int start = slidingWindow > 0 ? max(0, end - slidingWindow) : 0;
    int lo, hi;
    split_range(start, end, split, splits, ATT_TILE, &lo, &hi);

    // q, pre-scaled so that scores come out in log2 units.
    const float qScale = scale * LOG2E;
    for (int k = tid; k < group * headDim; k += ATT_THREADS) {
        int g = k / headDim, d = k - g * headDim;
        Q_S(g, d) = bf2f(qkv[(long long) row * qkvStride + (kvh * group + g) * headDim + d]) * qScale;
    }
    if (tid < ATT_MAX_GROUP) { m_s[tid] = NEG_INF; l_s[tid] = 0.0f; }
    float acc[ATT_MAX_GROUP][ATT_DIMS_PER_THREAD];
    #pragma unroll
    for (int g = 0; g < ATT_MAX_GROUP; g++)
        #pragma unroll
        for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) acc[g][j] = 0.0f;
    __syncthreads();

    for (int t0 = lo; t0 < hi; t0 += ATT_TILE) {
        const int n = min(ATT_TILE, hi - t0);
        // Scores: thread tid takes token t0 + tid and all G heads (q from shared memory, broadcast).
        float sc[ATT_MAX_GROUP];
        #pragma unroll
        for (int g = 0; g < ATT_MAX_GROUP; g++) sc[g] = NEG_INF;
        if (tid < n) {
            int t = t0 + tid;
            int slot = pages[t / pageSize] * pageSize + (t % pageSize);
            slot_s[tid] = slot;
            const uint4* k4 = (const uint4*) (kCache + (long long) slot * kvCols + kvh * headDim);
            #pragma unroll
            for (int g = 0; g < ATT_MAX_GROUP; g++) if (g < group) sc[g] = 0.0f;
            #pragma unroll 4
            for (int d8 = 0; d8 < (headDim >> 3); d8++) {
                float kf[8];
                unpack8(k4[d8], kf);
                #pragma unroll
                for (int g = 0; g < ATT_MAX_GROUP; g++) {
                    if (g < group) {
                        const float* q = &Q_S(g, d8 * 8);
                        float s = sc[g];
                        #pragma unroll
                        for (int j = 0; j < 8; j++) s += q[j] * kf[j];
                        sc[g] = s;
                    }
                }
            }
        }
        #pragma unroll
        for (int g = 0; g < ATT_MAX_GROUP; g++) if (g < group) P_S(g, tid) = sc[g];
        __syncthreads();
        // Stage the tile's value rows in shared memory: 16-byte loads, all issued before any is used.
        for (int k = tid; k < n * (headDim >> 3); k += ATT_THREADS) {
            int t = k / (headDim >> 3), c = k - t * (headDim >> 3);
            ((uint4*) v_s)[k] = *(const uint4*) (vCache + (long long) slot_s[t] * kvCols + kvh * headDim + c * 8);
        }
        // Online softmax per head: warp w handles heads w, w + 4, ...
        for (int g = warp; g < group; g += ATT_THREADS / 32) {
            float mx = NEG_INF;
            for (int t = lane; t < n; t += 32) mx = fmaxf(mx, P_S(g, t));
            mx = warp_max(mx);
            float mOld = m_s[g];
            float mNew = fmaxf(mOld, mx);
            float sum = 0.0f;
            for (int t = lane; t < ATT_TILE; t += 32) {
                float p = t < n ? exp2f(P_S(g, t) - mNew) : 0.0f;
                P_S(g, t) = p;
                sum += p;
            }
            sum = warp_sum(sum);
            if (lane == 0) {
                float c = exp2f(mOld - mNew);
                c_s[g] = c;
                l_s[g] = l_s[g] * c + sum;
                m_s[g] = mNew;
            }
        }
        __syncthreads();
        // acc[g][d] = acc[g][d]·c + Σ_t p[g][t]·v_t[d]; thread tid owns dims tid, tid + 128.
        #pragma unroll
        for (int g = 0; g < ATT_MAX_GROUP; g++) {
            if (g < group) {
                float c = c_s[g];
                #pragma unroll
                for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) acc[g][j] *= c;
            }
        }
        #pragma unroll 4
        for (int t = 0; t < n; t++) {
            const bf16* v = v_s + t * headDim;
            #pragma unroll
            for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) {
                int d = tid + j * ATT_THREADS;
                if (d < headDim) {
                    float vf = bf2f(v[d]);
                    #pragma unroll
                    for (int g = 0; g < ATT_MAX_GROUP; g++) if (g < group) acc[g][j] += P_S(g, t) * vf;
                }
            }
        }
        __syncthreads();
    }

    #pragma unroll
    for (int g = 0; g < ATT_MAX_GROUP; g++) {
        if (g >= group) continue;
        int h = kvh * group + g;
        #pragma unroll
        for (int j = 0; j < ATT_DIMS_PER_THREAD; j++) {
            int d = tid + j * ATT_THREADS;
            if (d >= headDim) continue;
            if (splits == 1) {
                float l = l_s[g];
                out[(long long) row * outStride + h * headDim + d] = f2bf(l > 0.0f ? acc[g][j] / l : 0.0f);
            } else {
                partAcc[(((long long) row * numHeads + h) * splits + split) * headDim + d] = acc[g][j];
            }
        }
        if (splits > 1 && tid == 0) {
            long long i = ((long long) row * numHeads + h) * splits + split;
            partMl[2 * i] = m_s[g];
            partMl[2 * i + 1] = l_s[g];
        }
    }
}

// Merges the splits of one (row, head) (merge_splits) for the general and tensor-core kernels, and for the decode
// kernel when it has no arrival counters.
extern "C" __global__ void attention_merge(const float* __restrict__ partAcc, const float* __restrict__ partMl,
                                           int numHeads, int headDim, int splits,
                                           bf16* __restrict__ out, int outStride) {
    pdl_entry();
    const int row = blockIdx.x, h = blockIdx.y;
    merge_splits(partAcc, partMl, ((long long) row * numHeads + h) * splits, splits, headDim, threadIdx.x, blockDim.x,
                 out + (long long) row * outStride + h * headDim);
}
