// Fused row-wise kernels: the residual add with the RMSNorm after it, and RoPE with the KV-cache append.
// Each does in one pass over a row what two kernels of elementwise.cu do in two, with the same float32
// arithmetic in the same order, so the results equal the unfused ones.
#include "common.cuh"

// 16-byte chunks of a row that each thread of add_rms_norm keeps in registers between its two phases;
// chunks past ADD_NORM_KEPT * blockDim.x are re-read from x (this thread's own writes).
#define ADD_NORM_KEPT 4

// Stores x + d (8 bf16, rounded to bf16) at *dst, adds the squares of the stored values to ss, returns them.
__device__ __forceinline__ uint4 store_sum8(uint4 x, uint4 d, uint4* dst, float& ss) {
    float a[8], b[8];
    unpack8(x, a);
    unpack8(d, b);
    #pragma unroll
    for (int j = 0; j < 8; j++) a[j] += b[j];
    uint4 sum = pack8(a);
    *dst = sum;
    unpack8(sum, a);
    #pragma unroll
    for (int j = 0; j < 8; j++) ss += a[j] * a[j];
    return sum;
}

// delta + lora for 8 bf16 (rounded to bf16, as a projection that added its LoRA add-on in place stores it), or
// delta alone when there is no add-on (lora null).
__device__ __forceinline__ uint4 with_lora8(uint4 d, const bf16* lora, int chunk) {
    if (lora == nullptr) return d;
    float a[8], b[8];
    unpack8(d, a);
    unpack8(((const uint4*) lora)[chunk], b);
    #pragma unroll
    for (int j = 0; j < 8; j++) a[j] += b[j];
    return pack8(a);
}

// x[r] = x[r] + (delta[r] (+ lora[r])) (stored as bf16), then out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w over
// the stored x. lora, when not null, is the LoRA add-on of the projection that made delta, kept apart (rows as
// delta's). One block per row. Thread t owns chunks t, t + blockDim.x, ... in both phases, and sums in the order
// rms_norm does with the same block size, so the norm equals add then rms_norm bit for bit. x, delta and
// out may alias (each element is read and written by one thread).
extern "C" __global__ void add_rms_norm(bf16* x, const bf16* delta, const bf16* __restrict__ lora,
                                        const bf16* __restrict__ w, bf16* out, int cols, float eps) {
    pdl_entry();
    __shared__ float scratch[32];
    bf16* xr = x + (long long) blockIdx.x * cols;
    const bf16* dr = delta + (long long) blockIdx.x * cols;
    const bf16* lr = lora == nullptr ? nullptr : lora + (long long) blockIdx.x * cols;
    bf16* outr = out + (long long) blockIdx.x * cols;
    float ss = 0.0f;
    if ((cols & 7) == 0) {
        int chunks = cols >> 3;
        uint4 kept[ADD_NORM_KEPT];
        uint4 d[ADD_NORM_KEPT];
        // All loads first, so that they are in flight together.
        #pragma unroll
        for (int k = 0; k < ADD_NORM_KEPT; k++) {
            int i = threadIdx.x + k * blockDim.x;
            if (i < chunks) {
                kept[k] = ((const uint4*) xr)[i];
                d[k] = with_lora8(((const uint4*) dr)[i], lr, i);
            }
        }
        #pragma unroll
        for (int k = 0; k < ADD_NORM_KEPT; k++) {
            int i = threadIdx.x + k * blockDim.x;
            if (i < chunks) kept[k] = store_sum8(kept[k], d[k], (uint4*) xr + i, ss);
        }
        for (int i = threadIdx.x + ADD_NORM_KEPT * blockDim.x; i < chunks; i += blockDim.x) {
            store_sum8(((const uint4*) xr)[i], with_lora8(((const uint4*) dr)[i], lr, i), (uint4*) xr + i, ss);
        }
        float inv = rsqrtf(block_sum(ss, scratch) / (float) cols + eps);
        #pragma unroll
        for (int k = 0; k < ADD_NORM_KEPT; k++) {
            int i = threadIdx.x + k * blockDim.x;
            if (i < chunks) ((uint4*) outr)[i] = scale8(kept[k], ((const uint4*) w)[i], inv);
        }
        for (int i = threadIdx.x + ADD_NORM_KEPT * blockDim.x; i < chunks; i += blockDim.x) {
            ((uint4*) outr)[i] = scale8(((const uint4*) xr)[i], ((const uint4*) w)[i], inv);
        }
    } else {
        for (int i = threadIdx.x; i < cols; i += blockDim.x) {
            float di = lr == nullptr ? bf2f(dr[i]) : bf2f(f2bf(bf2f(dr[i]) + bf2f(lr[i])));
            bf16 sum = f2bf(bf2f(xr[i]) + di);
            xr[i] = sum;
            float v = bf2f(sum);
            ss += v * v;
        }
        float inv = rsqrtf(block_sum(ss, scratch) / (float) cols + eps);
        for (int i = threadIdx.x; i < cols; i += blockDim.x) outr[i] = f2bf(bf2f(xr[i]) * inv * bf2f(w[i]));
    }
}

// Rotate-half RoPE in place on the numHeads query and numKvHeads key heads of each row (as rope), then
// the rotated key heads (straight from registers) and the values into the cache at slots[r] (as
// append_kv; slot < 0: padding row, rotated but not appended). The key heads follow the query heads;
// values are at vCol. One block per row; cos and sin of the row's angles (theta = pos * invFreq[i] in
// float32, full-precision sincosf) are computed once into dynamic shared memory [2][headDim / 2].
// lora, when not null, is the q|k|v projection's LoRA add-on kept apart (rows of qkvStride, as qkv): each element
// is first summed with it and rounded to bf16 (as the projection would have stored it), and the row is left in
// qkv as the plain kernel leaves it: rotated q and k, and v, now with its add-on.
extern "C" __global__ void rope_append_kv(bf16* qkv, int qkvStride, const int* __restrict__ positions,
                                          const float* __restrict__ invFreq, int numHeads, int numKvHeads,
                                          int headDim, float factor, int vCol, const int* __restrict__ slots,
                                          bf16* kCache, bf16* vCache, const bf16* __restrict__ lora) {
    pdl_entry();
    extern __shared__ float angles[];
    int r = blockIdx.x;
    int half = headDim >> 1;
    float* cosv = angles;
    float* sinv = angles + half;
    float pos = (float) positions[r];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float s, c;
        sincosf(pos * invFreq[i], &s, &c);
        cosv[i] = c;
        sinv[i] = s;
    }
    __syncthreads();
    long long slot = slots[r];
    int kvCols = numKvHeads * headDim;
    bf16* row = qkv + (long long) r * qkvStride;
    bf16* values = row + vCol;
    const bf16* lrow = lora == nullptr ? nullptr : lora + (long long) r * qkvStride;
    bf16* kd = slot >= 0 ? kCache + slot * kvCols : nullptr;
    bf16* vd = slot >= 0 ? vCache + slot * kvCols : nullptr;
    int heads = numHeads + numKvHeads;
    if ((half & 7) == 0 && (qkvStride & 7) == 0 && (vCol & 7) == 0) {
        // 8 rotation pairs per step: 16 bytes from each half of the head.
        int groups = half >> 3;
        for (int k = threadIdx.x; k < heads * groups; k += blockDim.x) {
            int h = k / groups, i = (k - h * groups) << 3;
            bf16* head = row + h * headDim;
            float a[8], b[8];
            if (lrow == nullptr) {
                unpack8(*(const uint4*) (head + i), a);
                unpack8(*(const uint4*) (head + i + half), b);
            } else {
                const bf16* lh = lrow + h * headDim;
                unpack8(with_lora8(*(const uint4*) (head + i), lh + i, 0), a);
                unpack8(with_lora8(*(const uint4*) (head + i + half), lh + i + half, 0), b);
            }
            float4 c0 = *(const float4*) (cosv + i), c1 = *(const float4*) (cosv + i + 4);
            float4 s0 = *(const float4*) (sinv + i), s1 = *(const float4*) (sinv + i + 4);
            float c[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
            float s[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
            float lo[8], hi[8];
            #pragma unroll
            for (int j = 0; j < 8; j++) {
                lo[j] = (a[j] * c[j] - b[j] * s[j]) * factor;
                hi[j] = (b[j] * c[j] + a[j] * s[j]) * factor;
            }
            uint4 plo = pack8(lo), phi = pack8(hi);
            *(uint4*) (head + i) = plo;
            *(uint4*) (head + i + half) = phi;
            if (h >= numHeads && slot >= 0) {
                bf16* kh = kd + (h - numHeads) * headDim;
                *(uint4*) (kh + i) = plo;
                *(uint4*) (kh + i + half) = phi;
            }
        }
        if (lrow != nullptr) {
            for (int i = threadIdx.x; i < (kvCols >> 3); i += blockDim.x) {
                uint4 v = with_lora8(((const uint4*) values)[i], lrow + vCol, i);
                ((uint4*) values)[i] = v;
                if (slot >= 0) ((uint4*) vd)[i] = v;
            }
        } else if (slot >= 0) {
            for (int i = threadIdx.x; i < (kvCols >> 3); i += blockDim.x) {
                ((uint4*) vd)[i] = ((const uint4*) values)[i];
            }
        }
    } else {
        for (int k = threadIdx.x; k < heads * half; k += blockDim.x) {
            int h = k / half, i = k - h * half;
            bf16* head = row + h * headDim;
            float a = bf2f(head[i]), b = bf2f(head[i + half]);
            if (lrow != nullptr) {
                a = bf2f(f2bf(a + bf2f(lrow[h * headDim + i])));
                b = bf2f(f2bf(b + bf2f(lrow[h * headDim + i + half])));
            }
            float c = cosv[i], s = sinv[i];
            bf16 lo = f2bf((a * c - b * s) * factor);
            bf16 hi = f2bf((b * c + a * s) * factor);
            head[i] = lo;
            head[i + half] = hi;
            if (h >= numHeads && slot >= 0) {
                bf16* kh = kd + (h - numHeads) * headDim;
                kh[i] = lo;
                kh[i + half] = hi;
            }
        }
        if (lrow != nullptr) {
            for (int i = threadIdx.x; i < kvCols; i += blockDim.x) {
                bf16 v = f2bf(bf2f(values[i]) + bf2f(lrow[vCol + i]));
                values[i] = v;
                if (slot >= 0) vd[i] = v;
            }
        } else if (slot >= 0) {
            for (int i = threadIdx.x; i < kvCols; i += blockDim.x) vd[i] = values[i];
        }
    }
}
