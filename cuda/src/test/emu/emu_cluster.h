// Host versions of sgmv.cu's thread-block-cluster helpers (cluster_ctarank, the split cluster barrier, ld_cluster
// into another block's shared memory), for the fused decode LoRA kernel. A cluster runs as all its blocks' threads
// at once; each block's __shared__ variables are regions of that block's own buffer (gen_fused_host.py rewrites
// the declarations into emu_shared calls), so ld_cluster can find the same variable in another block.
#pragma once
#include <barrier>
#include <cstdlib>
#include <optional>
#include <vector>

struct EmuBlock {
    unsigned rank = 0;                      // this block's rank in its cluster
    std::vector<unsigned char> shared;      // its shared memory: the regions one after another
    std::vector<size_t> offsets;            // where region k starts
};

struct EmuCluster {
    std::barrier<>* barrier = nullptr;      // all threads of the cluster
    std::vector<EmuBlock>* blocks = nullptr;
};

inline thread_local EmuCluster* emuCluster;
inline thread_local EmuBlock* emuBlock;
inline thread_local std::optional<std::barrier<>::arrival_token> emuClusterToken;

// Lays out a block's shared memory: the regions of `sizes` one after another, 16-byte aligned, filled with NaN-ish
// garbage (0xff bytes) so that a read of what was never written shows.
inline void emu_layout(EmuBlock& b, const std::vector<size_t>& sizes) {
    size_t at = 0;
    b.offsets.clear();
    for (size_t s : sizes) {
        b.offsets.push_back(at);
        at += (s + 15) / 16 * 16;
    }
    b.shared.assign(at, 0xff);
}

// Region k of this block's shared memory (laid out by emu_layout before the block's threads start).
inline void* emu_shared(int k, size_t bytes) {
    EmuBlock& b = *emuBlock;
    if ((size_t) k >= b.offsets.size() || b.offsets[k] + bytes > b.shared.size()) std::abort();
    return b.shared.data() + b.offsets[k];
}

inline unsigned cluster_ctarank() { return emuBlock->rank; }
inline void cluster_arrive() { emuClusterToken.emplace(emuCluster->barrier->arrive()); }
inline void cluster_wait() {
    emuCluster->barrier->wait(std::move(*emuClusterToken));
    emuClusterToken.reset();
}

// *p, p in this block's shared memory, in block `rank`'s.
inline float ld_cluster(const float* p, unsigned rank) {
    const unsigned char* base = emuBlock->shared.data();
    size_t off = (const unsigned char*) p - base;
    if (off >= emuBlock->shared.size()) std::abort();
    return *(const float*) ((*emuCluster->blocks)[rank].shared.data() + off);
}

inline void __trap() { std::abort(); }
#define __cluster_dims__(...)
