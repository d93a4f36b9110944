// Sampling next to the logits, one block per logit row: only the token ids and the log-probabilities
// asked for go back to the host. Step by step what ScalarSampler (the host definition) does:
//
//   raw logits (f32 or bf16) ─► l = penalties(raw + biases) ─┬─ greedy: argmax l (lowest index on ties)
//                                                            └─ p = softmax(l / T) ─► top-k ─► top-p ─► min-p ─► draw
//   raw logits ─► log-sum-exp ─► logprob of the token; the n most likely by repeated argmax
//
// top-k and top-p need order statistics of p, found without a sort by a radix descent over the bits of
// p (non-negative floats order as their bit patterns), 4 bits a pass: each thread builds its own
// 16-digit histogram (count or mass) of the elements still in range, in a column of shared memory of
// its own (no atomics), and the block picks the digit. The draw is the first index, in index order,
// whose inclusive cumulative kept probability exceeds u · kept mass: each warp owns a contiguous slice
// of the vocabulary, the warp where the cumulative mass crosses u scans its slice 32 at a time.
// Per-row work lives in a float32 scratch row in global memory (vocabularies reach 128K+, beyond shared
// memory); L1/L2 keep it between passes. Where the host rounds a product or a sum separately, so do we
// (__fmul_rn etc., no contraction into FMAs).
#include "common.cuh"

#define SAMPLE_WARPS (SAMPLE_THREADS / 32)
#define DIGIT_BITS 4
#define BIG_INDEX 0x7fffffff
// The per-row parameters (P_*, ROW_INTS) and outputs (OUT_INTS) are laid out as kernel_constants.cuh says.

struct Reductions {
    double d[SAMPLE_WARPS];
    float f[SAMPLE_WARPS];
    int i[SAMPLE_WARPS];
    double digits[DIGITS];
    int digitCounts[DIGITS];
    int token;
};

// Butterfly reductions (warp_sum: common.cuh): every lane ends with the same bits.
__device__ __forceinline__ int warp_max_i(int v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// (v, i) becomes the better of itself and (ov, oi): the larger value, the lower index among equals.
__device__ __forceinline__ void take_better(float& v, int& i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) { v = ov; i = oi; }
}

__device__ __forceinline__ void warp_argmax(float& v, int& i) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, v, o);
        int oi = __shfl_xor_sync(0xffffffffu, i, o);
        take_better(v, i, ov, oi);
    }
}

// Block-wide reductions of SAMPLE_THREADS threads through one value per warp; every thread gets the result.
template <typename T, T (*WARP_OP)(T)>
__device__ T block_reduce(T v, T* perWarp) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = WARP_OP(v);
    __syncthreads();
    if (lane == 0) perWarp[warp] = v;
    __syncthreads();
    return WARP_OP(perWarp[lane]);
}

__device__ double block_sum_d(double v, Reductions& r) { return block_reduce<double, warp_sum<double>>(v, r.d); }
__device__ float block_max_f(float v, Reductions& r) { return block_reduce<float, warp_max>(v, r.f); }
__device__ int block_sum_i(int v, Reductions& r) { return block_reduce<int, warp_sum<int>>(v, r.i); }

__device__ void block_argmax(float& v, int& i, Reductions& r) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    warp_argmax(v, i);
    __syncthreads();
    if (lane == 0) { r.f[warp] = v; r.i[warp] = i; }
    __syncthreads();
    v = r.f[lane];
    i = r.i[lane];
    warp_argmax(v, i);
}

// Mask of the bits above the digit at `shift` (those the prefix has fixed).
__device__ __forceinline__ unsigned above_mask(int shift) {
    return shift + DIGIT_BITS >= 32 ? 0u : ~0u << (shift + DIGIT_BITS);
}

// The k-th largest of p[0, vocab) (as bits): the largest v with count(p >= v) >= k.
__device__ unsigned kth_largest(const float* p, int vocab, int k, int* hist, Reductions& r) {
    const int tid = threadIdx.x;
    unsigned prefix = 0;
    int above = 0; // elements whose bits are above the range that `prefix` leaves open
    for (int shift = 32 - DIGIT_BITS; shift >= 0; shift -= DIGIT_BITS) {
        unsigned mask = above_mask(shift);
        #pragma unroll
        for (int d = 0; d < DIGITS; d++) hist[d * SAMPLE_THREADS + tid] = 0;
        for (int i = tid; i < vocab; i += SAMPLE_THREADS) {
            unsigned b = __float_as_uint(p[i]);
            if ((b & mask) == prefix) hist[((b >> shift) & (DIGITS - 1)) * SAMPLE_THREADS + tid] += 1;
        }
        __syncthreads();
        // Digit d's total: 64 threads each add 16 columns (a warp's reads in distinct banks), then two warps.
        int d = tid >> 6, part = tid & 63;
        int sum = 0;
        #pragma unroll
        for (int c = 0; c < 16; c++) sum += hist[d * SAMPLE_THREADS + part + 64 * c];
        #pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if ((tid & 31) == 0) r.i[tid >> 5] = sum;
        __syncthreads();
        if (tid < DIGITS) r.digitCounts[tid] = r.i[2 * tid] + r.i[2 * tid + 1];
        __syncthreads();
        // The largest digit whose candidate prefix | d << shift still has k elements at or above it
        // (digit 0: the candidate is the prefix itself, which has).
        int chosen = 0, higher = 0;
        for (int dd = DIGITS - 1; dd > 0; dd--) {
            if (above + higher + r.digitCounts[dd] >= k) { chosen = dd; break; }
            higher += r.digitCounts[dd];
        }
        above += higher;
        prefix |= (unsigned) chosen << shift;
    }
    __syncthreads();
    return prefix;
}

// Top-p: the largest v (as bits) with v <= floor, or with Σ_{p >= v} p >= target. Above the top-k
// threshold `floor` every element at or above v is one top-k kept, so the sum is the host's
// descending cumulative mass of top-k's set; v is the value at which it first reaches the target, and
// every element equal to v stays.
__device__ unsigned top_p_threshold(const float* p, int vocab, unsigned floor, double target, float* hist,
                                    Reductions& r) {
    const int tid = threadIdx.x;
    unsigned prefix = 0;
    double above = 0;
    for (int shift = 32 - DIGIT_BITS; shift >= 0; shift -= DIGIT_BITS) {
        unsigned mask = above_mask(shift);
        #pragma unroll
        for (int d = 0; d < DIGITS; d++) hist[d * SAMPLE_THREADS + tid] = 0.0f;
        for (int i = tid; i < vocab; i += SAMPLE_THREADS) {
            float q = p[i];
            unsigned b = __float_as_uint(q);
            if ((b & mask) == prefix) hist[((b >> shift) & (DIGITS - 1)) * SAMPLE_THREADS + tid] += q;
        }
        __syncthreads();
        int d = tid >> 6, part = tid & 63;
        double sum = 0;
        #pragma unroll
        for (int c = 0; c < 16; c++) sum += hist[d * SAMPLE_THREADS + part + 64 * c];
        sum = warp_sum(sum);
        if ((tid & 31) == 0) r.d[tid >> 5] = sum;
        __syncthreads();
        if (tid < DIGITS) r.digits[tid] = r.d[2 * tid] + r.d[2 * tid + 1];
        __syncthreads();
        // The largest digit whose candidate passes (digit 0: the prefix itself, which passed a level up;
        // not checked again, as this level's sums may differ from the last one's by rounding).
        int chosen = 0;
        double higher = 0;
        for (int dd = DIGITS - 1; dd > 0; dd--) {
            unsigned candidate = prefix | ((unsigned) dd << shift);
            if (candidate <= floor || above + higher + r.digits[dd] >= target) { chosen = dd; break; }
            higher += r.digits[dd];
        }
        above += higher;
        prefix |= (unsigned) chosen << shift;
    }
    __syncthreads();
    return prefix;
}

// The draw: the first index whose inclusive cumulative kept mass exceeds u · kept mass (kept: p >= t and
// p > 0); past the end by rounding, the last kept index. p must be complete (after a __syncthreads).
__device__ int draw(const float* p, int vocab, float t, double uniform, Reductions& r) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int slice = (vocab + SAMPLE_WARPS - 1) / SAMPLE_WARPS;
    const int begin = min(vocab, warp * slice), end = min(vocab, begin + slice);
    __syncthreads(); // the last block reduction may still be reading r
    double mass = 0;
    int last = -1;
    for (int i = begin + lane; i < end; i += 32) {
        float q = p[i];
        if (q >= t && q > 0.0f) { mass += q; last = i; }
    }
    mass = warp_sum(mass);
    last = warp_max_i(last);
    if (lane == 0) { r.d[warp] = mass; r.i[warp] = last; }
    __syncthreads();
    double total = 0;
    int lastKept = -1;
    for (int w = 0; w < SAMPLE_WARPS; w++) { total += r.d[w]; lastKept = max(lastKept, r.i[w]); }
    double u = uniform * total;
    int crossing = -1;
    double before = 0;
    for (int w = 0; w < SAMPLE_WARPS; w++) {
        if (before + r.d[w] > u) { crossing = w; break; }
        before += r.d[w];
    }
    if (tid == 0) r.token = max(lastKept, 0); // nothing kept: only NaN logits get here
    __syncthreads();
    if (warp == crossing) {
        double running = before;
        int found = -1;
        for (int base = begin; base < end && found < 0; base += 32) {
            int i = base + lane;
            float q = i < end ? p[i] : 0.0f;
            double v = q >= t && q > 0.0f ? (double) q : 0.0;
            double inclusive = v;
            #pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                double n = __shfl_up_sync(0xffffffffu, inclusive, o);
                if (lane >= o) inclusive += n;
            }
            unsigned hit = __ballot_sync(0xffffffffu, v > 0.0 && running + inclusive > u);
            if (hit) found = base + __ffs(hit) - 1;
            running += __shfl_sync(0xffffffffu, inclusive, 31);
        }
        if (lane == 0) r.token = found >= 0 ? found : r.i[warp];
    }
    __syncthreads();
    return r.token;
}

// One block per row of logits [rows, vocab]. params: [rows][ROW_INTS]; penalties: (token, count) pairs,
// row r's from params[P_PENALTY_BEGIN] to params[P_PENALTY_END], then (token, bias bits) pairs, row r's from
// params[P_BIAS_BEGIN] to params[P_BIAS_END]; scratch: [rows, vocab] float32;
// out: [rows][OUT_INTS]. Dynamic shared memory: DIGITS × SAMPLE_THREADS 32-bit histogram cells.
__device__ __forceinline__ float logit_at(const float* l, int i) { return l[i]; }
__device__ __forceinline__ float logit_at(const bf16* l, int i) { return bf2f(l[i]); }

// The body of both entry points below; T is the logits' element type. The launch's dynamic shared memory is
// the radix histogram of kth_largest and top_p_threshold.
template <typename T>
__device__ __forceinline__ void sample_row(const T* __restrict__ logits, int vocab, const int* __restrict__ params,
                                           const int* __restrict__ penalties, float* scratch, int* __restrict__ out) {
    extern __shared__ __attribute__((aligned(16))) float hist[];
    __shared__ Reductions r;
    const int row = blockIdx.x, tid = threadIdx.x;
    const int* prm = params + row * ROW_INTS;
    const T* raw = logits + (long long) row * vocab;
    float* x = scratch + (long long) row * vocab;
    const float temperature = __int_as_float(prm[P_TEMPERATURE]);

    // l = raw logits + logit biases (logit_bias; -inf on stop ids before min_tokens), then the penalties
    // (each listed token once per list: no two threads write one element in one pass)
    for (int i = tid; i < vocab; i += SAMPLE_THREADS) x[i] = logit_at(raw, i);
    const int biasBegin = prm[P_BIAS_BEGIN], biasEnd = prm[P_BIAS_END];
    if (biasEnd > biasBegin) {
        __syncthreads();
        for (int e = biasBegin + tid; e < biasEnd; e += SAMPLE_THREADS) {
            int t = penalties[2 * e];
            x[t] = __fadd_rn(x[t], __int_as_float(penalties[2 * e + 1]));
        }
    }
    const int penaltyBegin = prm[P_PENALTY_BEGIN], penaltyEnd = prm[P_PENALTY_END];
    if (penaltyEnd > penaltyBegin) {
        __syncthreads();
        const float repetition = __int_as_float(prm[P_REPETITION]);
        const float presence = __int_as_float(prm[P_PRESENCE]);
        const float frequency = __int_as_float(prm[P_FREQUENCY]);
        const bool additive = presence != 0.0f || frequency != 0.0f;
        for (int e = penaltyBegin + tid; e < penaltyEnd; e += SAMPLE_THREADS) {
            int t = penalties[2 * e], count = penalties[2 * e + 1];
            float v = x[t];
            if (repetition != 1.0f) v = v > 0.0f ? __fdiv_rn(v, repetition) : __fmul_rn(v, repetition);
            if (additive && count > 0) v = __fsub_rn(v, __fadd_rn(presence, __fmul_rn(frequency, (float) count)));
            x[t] = v;
        }
    }
    __syncthreads();

    int token;
    if (temperature == 0.0f) {
        float best = NEG_INF;
        int at = BIG_INDEX;
        for (int i = tid; i < vocab; i += SAMPLE_THREADS) take_better(best, at, x[i], i);
        block_argmax(best, at, r);
        token = at;
    } else {
        // p = softmax(l / T): e = exp(l·(1/T) − max) in place, then p = e / Σe
        const float inverseTemperature = __fdiv_rn(1.0f, temperature);
        float top = NEG_INF;
        for (int i = tid; i < vocab; i += SAMPLE_THREADS) top = fmaxf(top, __fmul_rn(x[i], inverseTemperature));
        top = block_max_f(top, r);
        double sum = 0;
        for (int i = tid; i < vocab; i += SAMPLE_THREADS) {
            float e = expf(__fsub_rn(__fmul_rn(x[i], inverseTemperature), top));
            x[i] = e;
            sum += e;
        }
        sum = block_sum_d(sum, r);
        const double inverseSum = 1.0 / sum;
        for (int i = tid; i < vocab; i += SAMPLE_THREADS) x[i] = __double2float_rn(__dmul_rn((double) x[i], inverseSum));
        const float pmax = __double2float_rn(inverseSum); // the max logit has e = 1
        __syncthreads();

        // top-k: keep p >= the k-th largest
        const int topK = prm[P_TOP_K];
        const int k = topK <= 0 ? vocab : min(topK, vocab);
        unsigned threshold = k < vocab ? kth_largest(x, vocab, k, (int*) hist, r) : 0u;
        // top-p over what top-k kept: keptMass = the k largest (all above the k-th, and k-th's copies)
        const float topP = __int_as_float(prm[P_TOP_P]);
        if (topP < 1.0f) {
            const float kth = __uint_as_float(threshold);
            double massAbove = 0;
            int countAbove = 0;
            for (int i = tid; i < vocab; i += SAMPLE_THREADS) {
                float q = x[i];
                if (q > kth) { massAbove += q; countAbove++; }
            }
            massAbove = block_sum_d(massAbove, r);
            countAbove = block_sum_i(countAbove, r);
            double keptMass = massAbove + (double) (k - countAbove) * kth;
            double target = (double) topP * keptMass;
            // The most likely token alone reaches the target: nothing below it stays.
            threshold = (double) pmax >= target ? __float_as_uint(pmax)
                    : top_p_threshold(x, vocab, threshold, target, hist, r);
        }
        float cut = __uint_as_float(threshold);
        const float minP = __int_as_float(prm[P_MIN_P]);
        if (minP > 0.0f) cut = fmaxf(cut, __fmul_rn(minP, pmax));
        const double uniform = __hiloint2double(prm[P_UNIFORM_HI], prm[P_UNIFORM_LO]);
        token = draw(x, vocab, cut, uniform, r);
    }

    int* o = out + row * OUT_INTS;
    const int wanted = prm[P_LOGPROBS];
    if (wanted < 0) {
        if (tid == 0) o[0] = token;
        return;
    }
    // log softmax of the raw logits: logZ = m + log Σ exp(l − m), m = max l
    float m = NEG_INF;
    for (int i = tid; i < vocab; i += SAMPLE_THREADS) m = fmaxf(m, logit_at(raw, i));
    m = block_max_f(m, r);
    double sum = 0;
    for (int i = tid; i < vocab; i += SAMPLE_THREADS) sum += expf(__fsub_rn(logit_at(raw, i), m));
    sum = block_sum_d(sum, r);
    const float logZ = __double2float_rn((double) m + log(sum));
    // The n most likely, in order (value descending, index ascending): each an argmax over what comes
    // after the previous one in that order.
    float previous = __int_as_float(0x7f800000);
    int previousAt = -1;
    int n = 0;
    for (; n < wanted; n++) {
        float best = NEG_INF;
        int at = BIG_INDEX;
        for (int i = tid; i < vocab; i += SAMPLE_THREADS) {
            float v = logit_at(raw, i);
            if (v < previous || (v == previous && i > previousAt)) take_better(best, at, v, i);
        }
        block_argmax(best, at, r);
        if (at == BIG_INDEX) break; // fewer tokens than asked for
        if (tid == 0) {
            o[3 + n] = at;
            o[3 + MAX_TOP + n] = __float_as_int(__fsub_rn(best, logZ));
        }
        previous = best;
        previousAt = at;
    }
    if (tid == 0) {
        o[0] = token;
        o[1] = __float_as_int(__fsub_rn(logit_at(raw, token), logZ));
        o[2] = n;
    }
}

// The model's logits: float32 (the lm_head GEMM's fp32 output).
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
sample_rows(const float* __restrict__ logits, int vocab, const int* __restrict__ params,
            const int* __restrict__ penalties, float* scratch, int* __restrict__ out) {
    pdl_entry();
    sample_row(logits, vocab, params, penalties, scratch, out);
}

// bf16 logits (tensors made by allocate, as the sampling tests and benches make them).
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS)
sample_rows_bf16(const bf16* __restrict__ logits, int vocab, const int* __restrict__ params,
                 const int* __restrict__ penalties, float* scratch, int* __restrict__ out) {
    pdl_entry();
    sample_row(logits, vocab, params, penalties, scratch, out);
}
