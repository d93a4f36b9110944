// Runs the host copy of attention_tc.cu (gen_host_kernel.py) on random paged problems and compares every row
// with a float64 reference, the way CudaPrefillAttentionTest does on a GPU. Build and run: run_emu.sh.
#include "attention_tc_host.cpp"
#include "emu_reference.h"
#include "emu_problems.h"
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

struct Problem {
    std::vector<int> ctx, queries;
    int heads, kvHeads, hd, window, pageSize, splits;   // splits 0: as the host would choose (here: 1)
};

static double run(const Problem& p, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> U(-1.5f, 1.5f);
    int seqs = p.ctx.size();
    int G = p.heads / p.kvHeads, HD = p.hd;
    int kvCols = p.kvHeads * HD, qCols = p.heads * HD, stride = qCols + 2 * kvCols;
    std::vector<int> qs(seqs + 1, 0), pts(seqs + 1, 0), pt;
    for (int s = 0; s < seqs; s++) {
        qs[s + 1] = qs[s] + p.queries[s];
        pts[s] = pt.size();
        for (int i = 0; i < (p.ctx[s] + p.pageSize - 1) / p.pageSize; i++) pt.push_back(0);
    }
    pts[seqs] = pt.size();
    int pages = pt.size() + 3;
    std::vector<int> pool(pages);
    for (int i = 0; i < pages; i++) pool[i] = i;
    std::shuffle(pool.begin(), pool.end(), rng);
    for (size_t i = 0; i < pt.size(); i++) pt[i] = pool[i];
    std::vector<bf16> K((size_t) pages * p.pageSize * kvCols), V(K.size());
    for (auto& x : K) x = f2bf(U(rng));
    for (auto& x : V) x = f2bf(U(rng));
    int rows = qs[seqs];
    std::vector<bf16> qkv((size_t) rows * stride);
    for (auto& x : qkv) x = f2bf(U(rng));
    std::vector<bf16> out((size_t) rows * qCols, 0x7fc0);   // NaN poison

    int rpt = ATT_TC_BLOCK_M / G;
    int tableLen = std::min<long>(rows, (rows + rpt - 1) / rpt + (long) seqs);
    std::vector<int> tiles(2 * tableLen, 0);
    int n = 0;
    for (int s = 0; s < seqs; s++) {
        int r = qs[s + 1] - qs[s];
        for (int t = (r + rpt - 1) / rpt - 1; t >= 0; t--) { tiles[2 * n] = s; tiles[2 * n + 1] = qs[s] + t * rpt; n++; }
    }
    for (int i = n; i < tableLen; i++) tiles[2 * i] = -1;
    int splits = p.splits > 0 ? p.splits : 1;
    std::vector<float> partAcc((size_t) rows * p.heads * splits * HD, NAN), partMl((size_t) rows * p.heads * splits * 2, NAN);
    int pageShift = (p.pageSize & (p.pageSize - 1)) == 0 ? __builtin_ctz(p.pageSize) : -1;
    float scale = 1.0f / std::sqrt((float) HD);
    std::vector<unsigned char> smem((ATT_TC_BLOCK_M + 4 * ATT_TC_BLOCK_N) * (HD + 8) * 2);
    g_smem = smem.data();
    gridDim = {tableLen, p.kvHeads, splits};

    for (int bz = 0; bz < splits; bz++)
    for (int by = 0; by < p.kvHeads; by++)
    for (int bx = 0; bx < tableLen; bx++) {
        std::memset(smem.data(), 0xff, smem.size());   // NaN-ish garbage: unwritten shared memory shows
        std::barrier<> block(ATT_TC_THREADS);
        std::vector<WarpCtx> warps(ATT_TC_THREADS / 32);
        std::vector<std::thread> threads;
        for (int t = 0; t < ATT_TC_THREADS; t++) {
            threads.emplace_back([&, t] {
                threadIdx = {t, 0, 0};
                blockBarrier = &block;
                blockIdx = {bx, by, bz};
                tw = &warps[t / 32];
                tlane = t % 32;
                auto kernel = HD == 32 ? attention_prefill_tc_h32 : HD == 64 ? attention_prefill_tc_h64
                            : HD == 96 ? attention_prefill_tc_h96 : attention_prefill_tc_h128;
                kernel(qkv.data(), stride, K.data(), V.data(), qs.data(), p.ctx.data(), pts.data(), pt.data(),
                       tiles.data(), p.pageSize, pageShift, p.heads, p.kvHeads, scale, p.window, out.data(), qCols,
                       partAcc.data(), partMl.data());
            });
        }
        for (auto& th : threads) th.join();
    }
    if (splits > 1) {   // attention_merge
        for (int r = 0; r < rows; r++) for (int h = 0; h < p.heads; h++) {
            size_t base = ((size_t) r * p.heads + h) * splits;
            float m = -INFINITY;
            for (int s = 0; s < splits; s++) m = std::max(m, partMl[2 * (base + s)]);
            float l = 0;
            for (int s = 0; s < splits; s++) if (partMl[2 * (base + s)] != -INFINITY) l += partMl[2 * (base + s) + 1] * exp2f(partMl[2 * (base + s)] - m);
            for (int d = 0; d < HD; d++) {
                float o = 0;
                for (int s = 0; s < splits; s++) if (partMl[2 * (base + s)] != -INFINITY) o += partAcc[(base + s) * HD + d] * exp2f(partMl[2 * (base + s)] - m);
                out[(size_t) r * qCols + h * HD + d] = f2bf(l > 0 ? o / l : 0);
            }
        }
    }
    // float64 reference
    double worst = 0;
    int worstRow = -1, nan = 0;
    for (int s = 0; s < seqs; s++) for (int r = qs[s]; r < qs[s + 1]; r++) {
        PagedKv kv{K.data(), V.data(), pt.data() + pts[s], p.pageSize, p.kvHeads, HD};
        double e = row_error(qkv.data() + (size_t) r * stride, out.data() + (size_t) r * qCols,
                             p.ctx[s] - (qs[s + 1] - r), p.window, p.heads, scale, kv, &nan);
        if (e > worst) { worst = e; worstRow = r; }
    }
    printf("EMU ctx[0]=%d seqs=%d rows=%d heads=%d/%d hd=%d window=%d page=%d splits=%d: worst row err %.2e (row %d), NaN %d %s\n",
           p.ctx[0], seqs, rows, p.heads, p.kvHeads, HD, p.window, p.pageSize, splits, worst, worstRow, nan,
           worst <= 1e-2 && nan == 0 ? "ok" : "FAIL");
    return nan ? 1e9 : worst;
}

int main(int argc, char** argv) {
    // Random problems (emu N SEED): shapes, lengths, chunks, windows, page sizes and splits drawn at random.
    std::vector<Problem> ps = problems<Problem>(argc, argv, {
        {{130}, {130}, 4, 4, 64, 0, 16, 0},
        {{1, 17, 64, 65, 129}, {1, 17, 64, 65, 129}, 8, 2, 128, 0, 16, 0},
        {{300, 77, 1, 140}, {300, 20, 1, 70}, 6, 2, 64, 0, 12, 0},
        {{300, 90}, {40, 1}, 16, 1, 128, 0, 1, 0},
        {{700, 90, 200}, {100, 90, 200}, 8, 2, 64, 40, 16, 0},
        {{500, 65}, {30, 65}, 4, 4, 128, 100, 64, 0},
        {{1000}, {16}, 8, 2, 128, 0, 16, 5},
        {{1000, 129}, {3, 129}, 4, 4, 64, 300, 16, 4},
        {{63, 64, 65, 127, 128}, {63, 30, 65, 1, 128}, 10, 2, 64, 0, 128, 3},
        {{200, 33, 1}, {200, 20, 1}, 8, 2, 32, 0, 16, 0},
        {{300, 90}, {150, 1}, 8, 8, 96, 70, 12, 2},
    }, [](std::mt19937& rng, auto& any) {
        Problem p;
        p.kvHeads = any({1, 2, 4});
        p.heads = p.kvHeads * any({1, 2, 3, 4, 5, 8, 16});
        p.hd = any({32, 64, 96, 128});
        p.window = any({0, 0, 1, 17, 64, 200});
        p.pageSize = any({1, 3, 16, 32, 128});
        p.splits = any({1, 1, 2, 3, 7});
        int seqs = 1 + rng() % 4;
        for (int s = 0; s < seqs; s++) {
            int ctx = 1 + rng() % 400;
            p.ctx.push_back(ctx);
            p.queries.push_back(any({1, ctx, 1 + (int) (rng() % ctx)}));
        }
        return p;
    });
    double worst = 0;
    unsigned seed = 1;
    for (const Problem& p : ps) worst = std::max(worst, run(p, seed++));
    printf("EMU %s (worst %.2e)\n", worst <= 1e-2 ? "PASSED" : "FAILED", worst);
    return worst <= 1e-2 ? 0 : 1;
}
