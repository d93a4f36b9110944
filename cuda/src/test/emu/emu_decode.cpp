// Runs the host copy of attention.cu's decode kernels (gen_decode_host.py) on random paged decode problems, each
// three ways: merging its own splits (arrival counters), the same again (the counters must be back at zero), and
// without counters followed by attention_merge. The three outputs must be the same bits, every row within 1e-2 of
// a float64 reference, and every counter zero at the end. Blocks run in a shuffled order, so any split can be the
// last to arrive. Build and run: run_emu.sh decode [N [SEED]].
#include "attention_decode_host.cpp"
#include "emu_reference.h"
#include "emu_problems.h"
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

using Kernel = void (*)(DECODE_PARAMS);

static Kernel pick(int lanes, int gt) {
    Kernel k[3][4] = {{attention_decode_l8_g1, attention_decode_l8_g2, attention_decode_l8_g4, attention_decode_l8_g8},
                      {attention_decode_l16_g1, attention_decode_l16_g2, attention_decode_l16_g4, attention_decode_l16_g8},
                      {attention_decode_l32_g1, attention_decode_l32_g2, attention_decode_l32_g4, attention_decode_l32_g8}};
    return k[lanes == 8 ? 0 : lanes == 16 ? 1 : 2][gt == 1 ? 0 : gt == 2 ? 1 : gt == 4 ? 2 : 3];
}

struct Problem {
    std::vector<int> ctx;
    int heads, kvHeads, hd, window, pageSize, splits;
};

static int failures = 0;

static void run(const Problem& p, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> U(-1.5f, 1.5f);
    const int rows = p.ctx.size(), G = p.heads / p.kvHeads, HD = p.hd;
    const int kvCols = p.kvHeads * HD, qCols = p.heads * HD, stride = qCols + 2 * kvCols;
    std::vector<int> pts(rows + 1, 0), pt;
    for (int s = 0; s < rows; s++) {
        pts[s] = pt.size();
        for (int i = 0; i < (p.ctx[s] + p.pageSize - 1) / p.pageSize; i++) pt.push_back(0);
    }
    pts[rows] = pt.size();
    const int pages = pt.size() + 3;
    std::vector<int> pool(pages);
    for (int i = 0; i < pages; i++) pool[i] = i;
    std::shuffle(pool.begin(), pool.end(), rng);
    for (size_t i = 0; i < pt.size(); i++) pt[i] = pool[i];
    std::vector<bf16> K((size_t) pages * p.pageSize * kvCols), V(K.size()), qkv((size_t) rows * stride);
    for (auto& x : K) x = f2bf(U(rng));
    for (auto& x : V) x = f2bf(U(rng));
    for (auto& x : qkv) x = f2bf(U(rng));

    // The host's choices (PagedAttention.decode): lanes from the head size, heads per pass from the group.
    const int lanes = HD <= 64 ? 8 : HD <= 128 ? 16 : 32;
    const int gt = G <= 2 ? G : G <= 4 ? 4 : 8;
    const int passes = (G + gt - 1) / gt;
    const int blocks = rows * p.kvHeads * passes, splits = p.splits;
    const int pageShift = (p.pageSize & (p.pageSize - 1)) == 0 ? __builtin_ctz(p.pageSize) : -1;
    const float scale = 1.0f / std::sqrt((float) HD);
    Kernel kernel = pick(lanes, gt);
    std::vector<float> partAcc((size_t) rows * p.heads * splits * HD, NAN), partMl((size_t) rows * p.heads * splits * 2, NAN);
    std::vector<int> arrivals(blocks, 0);
    std::vector<std::pair<int, int>> order;
    for (int y = 0; y < splits; y++) for (int x = 0; x < blocks; x++) order.push_back({x, y});

    auto launch = [&](std::vector<bf16>& out, int* counters) {
        std::shuffle(order.begin(), order.end(), rng);
        gridDim = {blocks, splits, 1};
        blockDim = {DEC_THREADS, 1, 1};
        for (auto [bx, by] : order) {
            std::barrier<> block(DEC_THREADS);
            std::vector<WarpCtx> warps(DEC_THREADS / 32);
            std::vector<std::thread> threads;
            for (int t = 0; t < DEC_THREADS; t++) {
                threads.emplace_back([&, t, bx, by] {
                    threadIdx = {t, 0, 0};
                    blockBarrier = &block;
                    blockIdx = {bx, by, 0};
                    tw = &warps[t / 32];
                    tlane = t % 32;
                    kernel(qkv.data(), stride, K.data(), V.data(), p.ctx.data(), pts.data(), pt.data(), p.pageSize,
                           pageShift, p.heads, p.kvHeads, HD, scale, p.window, out.data(), qCols,
                           splits > 1 ? partAcc.data() : nullptr, splits > 1 ? partMl.data() : nullptr, counters);
                });
            }
            for (auto& th : threads) th.join();
        }
    };
    std::vector<bf16> merged((size_t) rows * qCols, 0x7fc0), again(merged), apart(merged);   // NaN poison
    launch(merged, arrivals.data());
    launch(again, arrivals.data());
    launch(apart, nullptr);
    if (splits > 1) {   // attention_merge: grid (rows, heads), min(256, headDim rounded up to 32) threads
        const int threads = std::min(256, (HD + 31) / 32 * 32);
        gridDim = {rows, p.heads, 1};
        blockDim = {threads, 1, 1};
        for (int r = 0; r < rows; r++) for (int h = 0; h < p.heads; h++) for (int t = 0; t < threads; t++) {
            blockIdx = {r, h, 0};
            threadIdx = {t, 0, 0};
            attention_merge(partAcc.data(), partMl.data(), p.heads, HD, splits, apart.data(), qCols);
        }
    }

    double worst = 0;
    int worstRow = -1, nan = 0;
    for (int r = 0; r < rows; r++) {
        PagedKv kv{K.data(), V.data(), pt.data() + pts[r], p.pageSize, p.kvHeads, HD};
        double e = row_error(qkv.data() + (size_t) r * stride, merged.data() + (size_t) r * qCols, p.ctx[r] - 1,
                             p.window, p.heads, scale, kv, &nan);
        if (e > worst) { worst = e; worstRow = r; }
    }
    bool sameAgain = merged == again, sameApart = merged == apart;
    bool countersZero = std::all_of(arrivals.begin(), arrivals.end(), [](int c) { return c == 0; });
    bool ok = worst <= 1e-2 && nan == 0 && sameAgain && sameApart && countersZero;
    failures += !ok;
    printf("EMU decode rows=%d ctx[0]=%d heads=%d/%d hd=%d window=%d page=%d splits=%d (l%d_g%d, %d passes): "
           "worst row err %.2e (row %d), NaN %d, again %s, attention_merge %s, counters %s %s\n",
           rows, p.ctx[0], p.heads, p.kvHeads, HD, p.window, p.pageSize, splits, lanes, gt, passes, worst, worstRow,
           nan, sameAgain ? "same" : "DIFFERENT", sameApart ? "same" : "DIFFERENT", countersZero ? "zero" : "NOT ZERO",
           ok ? "ok" : "FAIL");
}

int main(int argc, char** argv) {
    std::vector<Problem> ps = problems<Problem>(argc, argv, {
        {{1, 15, 16, 17, 100, 300}, 4, 4, 128, 0, 16, 4},      // MHA; the short rows leave splits empty
        {{300, 1, 77}, 32, 8, 128, 0, 16, 3},                  // Llama-3's groups of 8
        {{200, 33, 5}, 16, 1, 128, 0, 12, 5},                  // two passes of 8 heads; pages of 12
        {{150, 2}, 24, 2, 64, 0, 16, 7},                       // passes of 8 and 4
        {{120, 64, 9}, 6, 2, 128, 0, 1, 2},                    // groups of 3 in a pass of 4; one-token pages
        {{400, 17, 260}, 8, 2, 64, 100, 16, 6},                // a sliding window
        {{90, 40}, 8, 8, 256, 0, 16, 3},                       // 32 lanes a token
        {{61, 1}, 4, 2, 32, 0, 16, 1},                         // one split: written directly
    }, [](std::mt19937& rng, auto& any) {
        Problem p;
        p.kvHeads = any({1, 2, 4});
        p.heads = p.kvHeads * any({1, 2, 3, 4, 5, 8, 12, 16});
        p.hd = any({32, 64, 96, 128});
        p.window = any({0, 0, 1, 17, 64});
        p.pageSize = any({1, 3, 16, 32});
        p.splits = any({1, 2, 3, 7, 16});
        int rows = 1 + rng() % 4;
        for (int r = 0; r < rows; r++) p.ctx.push_back(1 + rng() % 300);
        return p;
    });
    unsigned seed = 1;
    for (const Problem& p : ps) run(p, seed++);
    printf("EMU decode %s\n", failures == 0 ? "PASSED" : "FAILED");
    return failures == 0 ? 0 : 1;
}
