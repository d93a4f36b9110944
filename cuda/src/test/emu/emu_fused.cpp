// Runs the host copy of sgmv.cu's fused decode LoRA kernel (gen_fused_host.py) on random one-row tile tables and
// compares every output with a float64 reference: y[row, yCol_m + o] += scale · bf16(x[row]·A_mᵀ)·B_m[o]ᵀ for each
// row's slot and projection m, with clusters of FUSED_CLUSTER and of FUSED_CLUSTER_WIDE blocks (the two kernels).
// Each cluster runs as all its blocks' threads at once (barriers and
// distributed shared memory emulated, emu_cluster.h). Checked: the added part within 1e-3 of the reference
// (relative, per row and projection; the reference rounds v and y as the kernel does, so this admits only a rare
// last-bit flip of v between a float32 and a float64 sum), every element outside an adapted (row, projection)
// unchanged to the bit, and a second run bit-identical. Build and run: run_emu.sh fused [N [SEED]].
#include "fused_host.cpp"
#include "emu_problems.h"
#include <cstdio>
#include <random>
#include <memory>
#include <thread>

struct Problem {
    int rows, in;
    std::vector<int> outs;       // per projection (1 to 3)
    std::vector<int> ranks;      // per slot (the same rank for every projection of the slot; 0: not adapted)
    int xPad, yPad;              // extra columns of x's and y's rows (strides)
};

static int failures = 0;

using Kernel = void (*)(FUSED_PARAMS);

// The kernel of clusters of C blocks (sgmv_fused_row_group, or the wide variant), launched as the host does.
static void launch(Kernel kernel, int C, const Problem& p, const std::vector<int>& tiles, const bf16* x, int xStride,
                   bf16* y, int yStride, const std::vector<const char*>& tables, const std::vector<int>& yCols,
                   std::mt19937& rng) {
    const int nTiles = tiles.size() / 3, n = p.outs.size();
    int outs[3] = {0, 0, 0}, cols[3] = {0, 0, 0};
    const char* t[3] = {nullptr, nullptr, nullptr};
    for (int m = 0; m < n; m++) { outs[m] = p.outs[m]; cols[m] = yCols[m]; t[m] = tables[m]; }
    std::vector<std::pair<int, int>> clusters;
    for (int z = 0; z < n; z++) for (int ty = 0; ty < nTiles; ty++) clusters.push_back({ty, z});
    std::shuffle(clusters.begin(), clusters.end(), rng);
    gridDim = {C, nTiles, n};
    blockDim = {SGMV_THREADS, 1, 1};
    for (auto [ty, z] : clusters) {
        std::barrier<> clusterBarrier(C * SGMV_THREADS);
        std::vector<EmuBlock> blocks(C);
        std::vector<std::unique_ptr<std::barrier<>>> blockBarriers;
        std::vector<std::vector<WarpCtx>> warps(C);
        for (int c = 0; c < C; c++) {
            blocks[c].rank = c;
            emu_layout(blocks[c], emuRegions);
            blockBarriers.push_back(std::make_unique<std::barrier<>>(SGMV_THREADS));
            warps[c] = std::vector<WarpCtx>(SGMV_THREADS / 32);
        }
        EmuCluster cluster{&clusterBarrier, &blocks};
        std::vector<std::thread> threads;
        for (int c = 0; c < C; c++) {
            for (int th = 0; th < SGMV_THREADS; th++) {
                threads.emplace_back([&, c, th] {
                    threadIdx = {th, 0, 0};
                    blockIdx = {c, ty, z};
                    blockBarrier = blockBarriers[c].get();
                    emuCluster = &cluster;
                    emuBlock = &blocks[c];
                    tw = &warps[c][th / 32];
                    tlane = th % 32;
                    kernel(x, xStride, y, yStride, tiles.data(), t[0], t[1], t[2], p.ranks.size(), p.in, cols[0],
                           cols[1], cols[2], outs[0], outs[1], outs[2]);
                });
            }
        }
        for (auto& th : threads) th.join();
    }
}

static void run(Kernel kernel, int C, const Problem& p, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> U(-1.0f, 1.0f);
    const int n = p.outs.size(), slots = p.ranks.size();
    const int xStride = p.in + p.xPad;
    std::vector<int> yCols;
    int yWidth = 0;
    for (int m = 0; m < n; m++) { yCols.push_back(yWidth); yWidth += p.outs[m]; }
    const int yStride = yWidth + p.yPad;
    std::vector<bf16> x((size_t) p.rows * xStride), y0((size_t) p.rows * yStride);
    for (auto& v : x) v = f2bf(U(rng));
    for (auto& v : y0) v = f2bf(U(rng));
    // A [rank, in] and B [out, rank] per (slot, projection); the slot tables as SlotTables writes them.
    std::vector<std::vector<bf16>> A(slots * n), B(slots * n);
    std::vector<float> scale(slots);
    std::vector<std::vector<unsigned char>> tables(n, std::vector<unsigned char>(24 * slots));
    for (int s = 0; s < slots; s++) {
        scale[s] = 0.5f + 0.25f * s;
        for (int m = 0; m < n; m++) {
            int r = p.ranks[s];
            A[s * n + m].resize((size_t) std::max(r, 1) * p.in);
            B[s * n + m].resize((size_t) std::max(r, 1) * p.outs[m]);
            for (auto& v : A[s * n + m]) v = f2bf(U(rng) * 0.2f);
            for (auto& v : B[s * n + m]) v = f2bf(U(rng) * 0.2f);
            unsigned char* t = tables[m].data();
            unsigned long long a = (unsigned long long) A[s * n + m].data(), b = (unsigned long long) B[s * n + m].data();
            std::memcpy(t + 8 * s, &a, 8);
            std::memcpy(t + 8 * slots + 8 * s, &b, 8);
            std::memcpy(t + 16 * slots + 4 * s, &r, 4);
            std::memcpy(t + 20 * slots + 4 * s, &scale[s], 4);
        }
    }
    // One-row tiles for the rows that have an adapter (row i: slot i mod (slots + 1), the last meaning none),
    // shuffled, then two empty tiles (a graph's fixed grid).
    std::vector<int> rowSlot(p.rows), tiles;
    std::vector<int> order;
    for (int r = 0; r < p.rows; r++) {
        rowSlot[r] = r % (slots + 1) == slots ? -1 : r % (slots + 1);
        if (rowSlot[r] >= 0) order.push_back(r);
    }
    std::shuffle(order.begin(), order.end(), rng);
    for (int r : order) { tiles.push_back(r); tiles.push_back(1); tiles.push_back(rowSlot[r]); }
    for (int e = 0; e < 2; e++) { tiles.push_back(0); tiles.push_back(0); tiles.push_back(0); }
    std::vector<const char*> tablePtrs;
    for (auto& t : tables) tablePtrs.push_back((const char*) t.data());

    std::vector<bf16> y = y0, again = y0;
    launch(kernel, C, p, tiles, x.data(), xStride, y.data(), yStride, tablePtrs, yCols, rng);
    launch(kernel, C, p, tiles, x.data(), xStride, again.data(), yStride, tablePtrs, yCols, rng);

    double worst = 0;
    int changedOutside = 0;
    for (int r = 0; r < p.rows; r++) {
        int s = rowSlot[r];
        for (int m = 0; m < n; m++) {
            int rank = s >= 0 ? p.ranks[s] : 0;
            double num = 0, den = 0;
            std::vector<double> v(rank);
            for (int k = 0; k < rank; k++) {
                double acc = 0;
                for (int i = 0; i < p.in; i++) acc += (double) bf2f(x[(size_t) r * xStride + i]) * bf2f(A[s * n + m][(size_t) k * p.in + i]);
                v[k] = bf2f(f2bf((float) acc));   // the kernel rounds v to bf16, as the two-launch path stores it
            }
            for (int o = 0; o < p.outs[m]; o++) {
                size_t at = (size_t) r * yStride + yCols[m] + o;
                double got = (double) bf2f(y[at]) - bf2f(y0[at]);
                if (rank == 0) { changedOutside += y[at] != y0[at]; continue; }
                double want = 0;
                for (int k = 0; k < rank; k++) want += v[k] * bf2f(B[s * n + m][(size_t) o * rank + k]);
                want = bf2f(f2bf((float) (bf2f(y0[at]) + scale[s] * want))) - bf2f(y0[at]);
                num += (got - want) * (got - want);
                den += want * want;
            }
            if (rank > 0) worst = std::max(worst, std::sqrt(num / std::max(den, 1e-30)));
        }
        for (int c = yWidth; c < yStride; c++) changedOutside += y[(size_t) r * yStride + c] != y0[(size_t) r * yStride + c];
    }
    bool same = y == again;
    bool ok = worst <= 1e-3 && changedOutside == 0 && same;
    failures += !ok;
    std::string outs, ranks;
    for (int o : p.outs) outs += (outs.empty() ? "" : ",") + std::to_string(o);
    for (int r : p.ranks) ranks += (ranks.empty() ? "" : ",") + std::to_string(r);
    printf("EMU fused rows=%d in=%d outs=%s ranks=%s strides=+%d/+%d cluster=%d: added part err %.2e, changed outside %d, "
           "second run %s %s\n", p.rows, p.in, outs.c_str(), ranks.c_str(), p.xPad, p.yPad, C, worst,
           changedOutside, same ? "same" : "DIFFERENT", ok ? "ok" : "FAIL");
}

int main(int argc, char** argv) {
    std::vector<Problem> ps = problems<Problem>(argc, argv, {
        {5, 512, {512, 128, 128}, {16, 8}, 0, 0},          // q|k|v-like group, ranks 16 and 8, a row without adapter
        {4, 1024, {300}, {64, 4, 0}, 8, 5},                // one projection, ranks 64 and 4, a slot adapting nothing
        {3, 100, {96, 40}, {12}, 3, 1},                    // inputs not a multiple of 8, rank 12: the scalar paths
        {6, 2752, {512, 512}, {16, 32, 8}, 0, 0},          // gate|up-like, a long input split over the cluster
    }, [](std::mt19937& rng, auto& any) {
        Problem p;
        p.rows = 1 + rng() % 6;
        p.in = any({64, 100, 256, 520, 1024});
        int n = 1 + rng() % 3;
        for (int m = 0; m < n; m++) p.outs.push_back(any({8, 40, 128, 300}));
        int slots = 1 + rng() % 3;
        for (int s = 0; s < slots; s++) p.ranks.push_back(any({0, 4, 8, 12, 16, 32, 64}));
        p.xPad = any({0, 0, 8, 3});
        p.yPad = any({0, 0, 8, 5});
        return p;
    });
    unsigned seed = 1;
    for (const Problem& p : ps) {
        run(sgmv_fused_row_group, FUSED_CLUSTER, p, seed);
        run(sgmv_fused_row_group_wide, FUSED_CLUSTER_WIDE, p, seed++);
    }
    printf("EMU fused %s\n", failures == 0 ? "PASSED" : "FAILED");
    return failures == 0 ? 0 : 1;
}
