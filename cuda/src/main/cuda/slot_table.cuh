// The device slot table of a LoRA projection, as SlotTables writes it: aPtr[slots] | bPtr[slots] | rank[slots] |
// scale[slots]. Read by the SGMV kernels (sgmv.cu, sgmv_tc.cu).
#pragma once

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

// The table of projection m of a launch's up to 3 (q|k|v, gate|up).
__device__ __forceinline__ const char* pick3(int m, const char* t0, const char* t1, const char* t2) {
    return m == 0 ? t0 : (m == 1 ? t1 : t2);
}
