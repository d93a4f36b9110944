// Row-wise and element-wise kernels: conversions, gathers, RMSNorm, add, bias, SwiGLU, RoPE, KV append.
// Activations are row-major bf16; every reduction accumulates in float32.
#include "common.cuh"

// ---- conversions (host floats <-> device bf16) ------------------------------------------------------

extern "C" __global__ void f32_to_bf16(const float* __restrict__ src, bf16* __restrict__ dst, long long n) {
    pdl_entry();
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x) {
        dst[i] = f2bf(src[i]);
    }
}

extern "C" __global__ void f16_to_bf16(const unsigned short* __restrict__ src, bf16* __restrict__ dst, long long n) {
    pdl_entry();
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x) {
        dst[i] = f2bf(h2f(src[i]));
    }
}

extern "C" __global__ void bf16_to_f32(const bf16* __restrict__ src, float* __restrict__ dst, long long n) {
    pdl_entry();
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x) {
        dst[i] = bf2f(src[i]);
    }
}

// ---- gathers -----------------------------------------------------------------------------------------

// out[r] = src[index[r]] (embedding lookup and gatherRows). One block per output row.
extern "C" __global__ void gather_rows(const bf16* __restrict__ src, const int* __restrict__ index,
                                       bf16* __restrict__ out, int cols) {
    pdl_entry();
    int r = blockIdx.x;
    const bf16* s = src + (long long) index[r] * cols;
    bf16* d = out + (long long) r * cols;
    if ((cols & 7) == 0) {
        const uint4* s4 = (const uint4*) s;
        uint4* d4 = (uint4*) d;
        for (int i = threadIdx.x; i < (cols >> 3); i += blockDim.x) d4[i] = s4[i];
    } else {
        for (int i = threadIdx.x; i < cols; i += blockDim.x) d[i] = s[i];
    }
}

// ---- RMSNorm --------------------------------------------------------------------------------------

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w. One block per row; the second pass re-reads x from L1/L2.
extern "C" __global__ void rms_norm(const bf16* __restrict__ x, const bf16* __restrict__ w, bf16* __restrict__ out,
                                    int cols, float eps) {
    pdl_entry();
    __shared__ float scratch[32];
    const bf16* xr = x + (long long) blockIdx.x * cols;
    bf16* outr = out + (long long) blockIdx.x * cols;
    float ss = 0.0f;
    bool vec = (cols & 7) == 0;
    if (vec) {
        for (int i = threadIdx.x; i < (cols >> 3); i += blockDim.x) {
            float f[8];
            unpack8(((const uint4*) xr)[i], f);
            #pragma unroll
            for (int j = 0; j < 8; j++) ss += f[j] * f[j];
        }
    } else {
        for (int i = threadIdx.x; i < cols; i += blockDim.x) { float v = bf2f(xr[i]); ss += v * v; }
    }
    float inv = rsqrtf(block_sum(ss, scratch) / (float) cols + eps);
    if (vec) {
        for (int i = threadIdx.x; i < (cols >> 3); i += blockDim.x) {
            ((uint4*) outr)[i] = scale8(((const uint4*) xr)[i], ((const uint4*) w)[i], inv);
        }
    } else {
        for (int i = threadIdx.x; i < cols; i += blockDim.x) outr[i] = f2bf(bf2f(xr[i]) * inv * bf2f(w[i]));
    }
}

// ---- element-wise -------------------------------------------------------------------------------------

// out = a + b over n elements (out may alias a or b).
extern "C" __global__ void add(const bf16* a, const bf16* b, bf16* out, long long n) {
    pdl_entry();
    long long stride = (long long) gridDim.x * blockDim.x;
    long long first = blockIdx.x * (long long) blockDim.x + threadIdx.x;
    if ((n & 7) == 0) {
        for (long long i = first; i < (n >> 3); i += stride) {
            float x[8], y[8];
            unpack8(((const uint4*) a)[i], x);
            unpack8(((const uint4*) b)[i], y);
            #pragma unroll
            for (int j = 0; j < 8; j++) x[j] += y[j];
            ((uint4*) out)[i] = pack8(x);
        }
    } else {
        for (long long i = first; i < n; i += stride) out[i] = f2bf(bf2f(a[i]) + bf2f(b[i]));
    }
}

// out[r, c] += bias[c].
extern "C" __global__ void add_bias(bf16* out, const bf16* __restrict__ bias, int rows, int cols) {
    pdl_entry();
    long long n = (long long) rows * cols;
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x) {
        out[i] = f2bf(bf2f(out[i]) + bf2f(bias[i % cols]));
    }
}

// out[r, i] = silu(gu[r, i]) * gu[r, inter + i]. lora, when not null, is the gate|up projection's LoRA add-on kept
// apart (gu's layout): gate and up are each first summed with it and rounded to bf16, as the projection would have
// stored them.
extern "C" __global__ void swiglu(const bf16* __restrict__ gu, bf16* __restrict__ out, int rows, int inter,
                                  const bf16* __restrict__ lora) {
    pdl_entry();
    long long n = (long long) rows * inter;
    for (long long i = blockIdx.x * (long long) blockDim.x + threadIdx.x; i < n; i += (long long) gridDim.x * blockDim.x) {
        long long r = i / inter;
        int c = (int) (i - r * inter);
        long long at = r * 2 * inter + c;
        float g = bf2f(gu[at]);
        float u = bf2f(gu[at + inter]);
        if (lora != nullptr) {
            g = bf2f(f2bf(g + bf2f(lora[at])));
            u = bf2f(f2bf(u + bf2f(lora[at + inter])));
        }
        out[i] = f2bf(g / (1.0f + expf(-g)) * u);
    }
}

// ---- RoPE and the KV cache --------------------------------------------------------------------------

// HF rotate-half RoPE, in place, on the first numHeads heads of every row; theta = pos * invFreq[i] in
// float32, cos/sin at full precision (positions reach 1e5 radians). Grid: rows; threads over (head, i).
extern "C" __global__ void rope(bf16* x, int rowStride, const int* __restrict__ positions,
                                const float* __restrict__ invFreq, int numHeads, int headDim, float factor) {
    pdl_entry();
    int r = blockIdx.x;
    int half = headDim >> 1;
    float pos = (float) positions[r];
    bf16* row = x + (long long) r * rowStride;
    for (int k = threadIdx.x; k < numHeads * half; k += blockDim.x) {
        int h = k / half, i = k - h * half;
        float s, c;
        sincosf(pos * invFreq[i], &s, &c);
        bf16* head = row + h * headDim;
        float a = bf2f(head[i]), b = bf2f(head[i + half]);
        head[i] = f2bf((a * c - b * s) * factor);
        head[i + half] = f2bf((b * c + a * s) * factor);
    }
}

// cache[slot] = k, v of each row (slot < 0: padding row, skipped). Cache layout [slot][kvHead][headDim].
extern "C" __global__ void append_kv(const bf16* __restrict__ qkv, int qkvStride, int kCol, int vCol,
                                     const int* __restrict__ slots, bf16* kCache, bf16* vCache, int kvCols) {
    pdl_entry();
    int r = blockIdx.x;
    long long slot = slots[r];
    if (slot < 0) return;
    const bf16* k = qkv + (long long) r * qkvStride + kCol;
    const bf16* v = qkv + (long long) r * qkvStride + vCol;
    bf16* kd = kCache + slot * kvCols;
    bf16* vd = vCache + slot * kvCols;
    for (int i = threadIdx.x; i < kvCols; i += blockDim.x) {
        kd[i] = k[i];
        vd[i] = v[i];
    }
}
