// The float64 reference of the attention emulators: one query row's attention over a paged cache, and that row's
// relative error ‖got − want‖ / ‖want‖ over all heads. NaN outputs (never written) are counted, not compared.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

struct PagedKv {
    const bf16* k;
    const bf16* v;
    const int* pages;   // the sequence's page table
    int pageSize, kvHeads, headDim;
};

// Row with its query at position pos (sees keys [max(0, pos - window + 1), pos], all of them when window is 0),
// query heads at q[h · headDim], the kernel's output at got[h · headDim].
inline double row_error(const bf16* q, const bf16* got, int pos, int window, int heads, float scale,
                        const PagedKv& kv, int* nan) {
    const int G = heads / kv.kvHeads, HD = kv.headDim, kvCols = kv.kvHeads * HD;
    const int lo = window > 0 ? std::max(0, pos - window + 1) : 0;
    auto slotOf = [&](int t) { return (size_t) kv.pages[t / kv.pageSize] * kv.pageSize + t % kv.pageSize; };
    double num = 0, den = 0;
    for (int h = 0; h < heads; h++) {
        const int kvh = h / G;
        std::vector<double> sc(pos - lo + 1);
        double mx = -1e300;
        for (int t = lo; t <= pos; t++) {
            double d = 0;
            for (int j = 0; j < HD; j++) d += (double) bf2f(q[h * HD + j]) * bf2f(kv.k[slotOf(t) * kvCols + kvh * HD + j]);
            sc[t - lo] = d * scale;
            mx = std::max(mx, sc[t - lo]);
        }
        double sum = 0;
        for (auto& x : sc) { x = std::exp(x - mx); sum += x; }
        for (int j = 0; j < HD; j++) {
            double acc = 0;
            for (int t = lo; t <= pos; t++) acc += sc[t - lo] * bf2f(kv.v[slotOf(t) * kvCols + kvh * HD + j]);
            double want = acc / sum, g = bf2f(got[h * HD + j]);
            if (std::isnan(g)) { (*nan)++; continue; }
            num += (g - want) * (g - want);
            den += want * want;
        }
    }
    return std::sqrt(num / std::max(den, 1e-30));
}
