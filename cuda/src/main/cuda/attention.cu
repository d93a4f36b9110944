// Paged causal attention with grouped-query heads, for decode rows and prefill rows alike.
//
// One block per (query row, KV head, split): the block holds the G = numHeads / numKvHeads query heads
// that read this KV head, so each key and value is loaded once for all of them. Keys are walked in
// tiles of ATT_TILE tokens with an online softmax (FlashAttention's running max m and sum l, in the
// log2 domain). Long contexts are cut into splits that run as separate blocks (flash-decoding); their
// partial (m, l, acc) are merged by attention_merge. With one split the block writes the output itself.
//
//   q (qkv row) ─► scores s[g][t] = q_g·k_t·scale ─► p = 2^(s - m) ─► acc[g] += p·v_t ─► out = acc / l
//
// Cache layout: [slot][kvHead][headDim] bf16, slot = page · pageSize + offset.
#include "common.cuh"

#define ATT_THREADS 128
#define ATT_TILE 128
#define ATT_MAX_GROUP 16
#define ATT_MAX_HEAD_DIM 256
#define ATT_DIMS_PER_THREAD (ATT_MAX_HEAD_DIM / ATT_THREADS)

// rowMeta: [rowSeq(rows) | rowPos(rows) | pageTableStarts(seqs)]; pageTables separately.
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
attention_paged(const bf16* __restrict__ qkv, int qkvStride,
                const bf16* __restrict__ kCache, const bf16* __restrict__ vCache,
                const int* __restrict__ rowMeta, const int* __restrict__ pageTables,
                int rows, int pageSize, int numHeads, int numKvHeads, int headDim, float scale,
                int slidingWindow, int splitLen,
                bf16* __restrict__ out, int outStride,
                float* __restrict__ partAcc, float* __restrict__ partMl) {
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

    const int seq = rowMeta[row];
    const int pos = rowMeta[rows + row];
    const int* pages = pageTables + rowMeta[2 * rows + seq];
    const int end = pos + 1;
    const int start = slidingWindow > 0 ? max(0, end - slidingWindow) : 0;
    const int lo = start + split * splitLen;
    const int hi = min(end, lo + splitLen);

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

// Merges the splits of one (row, head): M = max m_s, L = Σ l_s·2^(m_s − M), out = Σ acc_s·2^(m_s − M) / L.
extern "C" __global__ void attention_merge(const float* __restrict__ partAcc, const float* __restrict__ partMl,
                                           int numHeads, int headDim, int splits,
                                           bf16* __restrict__ out, int outStride) {
    const int row = blockIdx.x, h = blockIdx.y;
    const long long base = ((long long) row * numHeads + h) * splits;
    float m = NEG_INF;
    for (int s = 0; s < splits; s++) m = fmaxf(m, partMl[2 * (base + s)]);
    float l = 0.0f;
    for (int s = 0; s < splits; s++) {
        float ms = partMl[2 * (base + s)];
        if (ms != NEG_INF) l += partMl[2 * (base + s) + 1] * exp2f(ms - m);
    }
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < splits; s++) {
            float ms = partMl[2 * (base + s)];
            if (ms != NEG_INF) o += partAcc[(base + s) * headDim + d] * exp2f(ms - m);
        }
        out[(long long) row * outStride + h * headDim + d] = f2bf(l > 0.0f ? o / l : 0.0f);
    }
}
