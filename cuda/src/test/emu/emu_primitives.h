// Host versions of attention_tc.cu's PTX wrappers (replacing the ones between smem_u32 and TC_PARAMS).
#pragma once

inline void cp_async16(void* dst, const void* src, int bytes) {
    if (bytes == 16) std::memcpy(dst, src, 16); else std::memset(dst, 0, 16);
}
inline void cp_async_commit() {}
template <int N> inline void cp_async_wait() {}

inline float bf_lo(unsigned w) { return __uint_as_float(w << 16); }
inline float bf_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }
inline unsigned short bf_at(const void* row, int i) { return ((const unsigned short*) row)[i]; }

// Lane l gives the row address of matrix l / 8; register j of lane l = row l / 4 of matrix j, elements 2(l % 4), +1.
inline void ldmatrix_x4(unsigned (&r)[4], const void* p) {
    tw->ptr[tlane] = p;
    tw->bar.arrive_and_wait();
    for (int j = 0; j < 4; j++) {
        const void* row = tw->ptr[j * 8 + tlane / 4];
        r[j] = (unsigned) bf_at(row, 2 * (tlane % 4)) | ((unsigned) bf_at(row, 2 * (tlane % 4) + 1) << 16);
    }
    tw->bar.arrive_and_wait();
}

// Transposed: register j of lane l = column l / 4 of matrix j, rows 2(l % 4) and 2(l % 4) + 1.
inline void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) {
    tw->ptr[tlane] = p;
    tw->bar.arrive_and_wait();
    for (int j = 0; j < 4; j++) {
        const void* r0 = tw->ptr[j * 8 + 2 * (tlane % 4)];
        const void* r1 = tw->ptr[j * 8 + 2 * (tlane % 4) + 1];
        r[j] = (unsigned) bf_at(r0, tlane / 4) | ((unsigned) bf_at(r1, tlane / 4) << 16);
    }
    tw->bar.arrive_and_wait();
}

// D = A·B + C, m16n8k16: A rows g / g+8, columns 2q(+1) / 2q+8(+1); B k rows 2q(+1) / 2q+8(+1), column g;
// C/D row g (c0, c1) and g+8 (c2, c3), columns 2q, 2q+1.
inline void mma_bf16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    for (int i = 0; i < 4; i++) tw->regs[tlane][i] = a[i];
    tw->regs[tlane][4] = b0;
    tw->regs[tlane][5] = b1;
    tw->bar.arrive_and_wait();
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        int g = l >> 2, q = l & 3;
        const unsigned* r = tw->regs[l];
        A[g][2 * q] = bf_lo(r[0]);         A[g][2 * q + 1] = bf_hi(r[0]);
        A[g + 8][2 * q] = bf_lo(r[1]);     A[g + 8][2 * q + 1] = bf_hi(r[1]);
        A[g][2 * q + 8] = bf_lo(r[2]);     A[g][2 * q + 9] = bf_hi(r[2]);
        A[g + 8][2 * q + 8] = bf_lo(r[3]); A[g + 8][2 * q + 9] = bf_hi(r[3]);
        B[2 * q][g] = bf_lo(r[4]);         B[2 * q + 1][g] = bf_hi(r[4]);
        B[2 * q + 8][g] = bf_lo(r[5]);     B[2 * q + 9][g] = bf_hi(r[5]);
    }
    int g = tlane >> 2, q = tlane & 3;
    for (int e = 0; e < 4; e++) {
        int row = g + 8 * (e >> 1), col = 2 * q + (e & 1);
        float s = d[e];
        for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col];
        d[e] = s;
    }
    tw->bar.arrive_and_wait();
}

inline unsigned pack_bf16x2(float lo, float hi) {
    return (unsigned) f2bf(lo) | ((unsigned) f2bf(hi) << 16);
}
