package ai.punica.backend.cuda;

import ai.punica.backend.SamplingRow;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The numbers the host and the kernels must agree on: block sizes the host launches with and the kernels
 * are compiled for, tile heights, rank limits, the sampling kernel's row layout. Defined here once;
 * {@code src/main/cuda/kernel_constants.cuh} is generated from this class ({@link #header()}, or this
 * class's {@code main} with the header's path). {@code KernelConstantsTest} (a CPU test of every build)
 * fails when the committed header is stale, writing the fresh one to {@code cuda/target/} and naming the
 * copy to make, and when a kernel source defines one of these names itself.
 */
final class KernelConstants {
    // ---- sgmv.cu ----
    /** Threads of every SGMV block; the expand's thread o handles output o of its block. */
    static final int SGMV_THREADS = 256;
    /** Rows of an SGMV tile (prefill); decode steps use one-row tiles. */
    static final int SGMV_TILE_ROWS = 8;
    /** Ranks one shrink block computes (blockIdx.y picks the block of 32). */
    static final int SHRINK_RANKS_PER_BLOCK = 32;
    /** Most projections one grouped SGMV launch covers (q|k|v): the kernels take three slot tables. */
    static final int SGMV_GROUP_MAX = 3;
    /** Largest rank the expand kernel holds in shared memory. */
    static final int EXPAND_MAX_RANK = 256;
    /** Blocks per cluster of the fused decode kernel: one (row, projection) per cluster. */
    static final int FUSED_CLUSTER = 4;
    /**
     * Blocks per cluster of the fused decode kernel's wide variant ({@code sgmv_fused_row_group_wide}), for launches
     * whose clusters of {@link #FUSED_CLUSTER} would be fewer blocks than SMs ({@link CudaOptions#wideClusters()}).
     */
    static final int FUSED_CLUSTER_WIDE = 8;
    /** Largest rank of the fused decode kernel. */
    static final int FUSED_MAX_RANK = 64;

    // ---- sgmv_tc.cu (tensor cores, segments of many rows) ----
    /** Threads of a tensor-core SGMV block: 4 warps. */
    static final int TC_THREADS = 128;
    /** Rows of a tensor-core tile (4 warps × 16 rows of mma.m16n8k16 in the shrink, 2 × 32 in the expand). */
    static final int TC_ROWS = 64;
    /** Largest rank of the tensor-core kernels (n of the shrink, k of the expand); larger ranks take sgmv.cu. */
    static final int TC_MAX_RANK = 64;
    /** Inputs per shared-memory stage of the tensor-core shrink; split-K chunks are multiples of it. */
    static final int TC_K_STEP = 64;
    /** Output columns of one tensor-core expand block. */
    static final int TC_OUT_COLS = 128;

    // ---- attention.cu ----
    /** Most query heads per KV head. */
    static final int ATT_MAX_GROUP = 16;
    /** Largest head size. */
    static final int ATT_MAX_HEAD_DIM = 256;
    /** Threads of a general (attention_paged) block. */
    static final int ATT_THREADS = 128;
    /** Keys per tile of the general kernel (its shared memory holds one value tile). */
    static final int ATT_TILE = 128;
    /** Threads of a decode attention block. */
    static final int DEC_THREADS = 128;

    // ---- attention_tc.cu ----
    /** Matrix rows of a tensor-core attention tile (query rows × the KV head's query heads); 16 per warp. */
    static final int ATT_TC_BLOCK_M = 64;
    /** Keys per tile of the tensor-core attention kernel (one shared-memory stage). */
    static final int ATT_TC_BLOCK_N = 64;
    /** Threads of a tensor-core attention block: one warp per 16 matrix rows. */
    static final int ATT_TC_THREADS = 128;

    // ---- sampling.cu ----
    /** Threads of the one block per row. */
    static final int SAMPLE_THREADS = 1024;
    /** Histogram cells per thread of the radix descent (4 bits a pass). */
    static final int DIGITS = 16;
    /** Most log-probabilities a row returns. */
    static final int MAX_TOP = SamplingRow.MAX_LOGPROBS;
    /** Per-row parameters, ints (floats as their bits, the uniform draw as a double's two halves). */
    static final int P_TEMPERATURE = 0;
    static final int P_TOP_K = 1;
    static final int P_TOP_P = 2;
    static final int P_MIN_P = 3;
    static final int P_REPETITION = 4;
    static final int P_PRESENCE = 5;
    static final int P_FREQUENCY = 6;
    static final int P_UNIFORM_LO = 7;
    static final int P_UNIFORM_HI = 8;
    static final int P_LOGPROBS = 9;
    static final int P_PENALTY_BEGIN = 10;
    static final int P_PENALTY_END = 11;
    /** The row's logit biases: (token, bias bits) pairs of the same pair array, after every penalty pair. */
    static final int P_BIAS_BEGIN = 12;
    static final int P_BIAS_END = 13;
    static final int ROW_INTS = 14;
    /** Per-row output, ints: token | logprob bits | n | top tokens [MAX_TOP] | top logprob bits [MAX_TOP]. */
    static final int OUT_INTS = 3 + 2 * MAX_TOP;

    /** One {@code #define} of the header. */
    record Constant(String name, int value) {
    }

    /** Every constant above, in the header's order (KernelConstantsTest checks that none is missing). */
    static final List<Constant> ALL = List.of(
            new Constant("SGMV_THREADS", SGMV_THREADS),
            new Constant("SGMV_TILE_ROWS", SGMV_TILE_ROWS),
            new Constant("SHRINK_RANKS_PER_BLOCK", SHRINK_RANKS_PER_BLOCK),
            new Constant("SGMV_GROUP_MAX", SGMV_GROUP_MAX),
            new Constant("EXPAND_MAX_RANK", EXPAND_MAX_RANK),
            new Constant("FUSED_CLUSTER", FUSED_CLUSTER),
            new Constant("FUSED_CLUSTER_WIDE", FUSED_CLUSTER_WIDE),
            new Constant("FUSED_MAX_RANK", FUSED_MAX_RANK),
            new Constant("TC_THREADS", TC_THREADS),
            new Constant("TC_ROWS", TC_ROWS),
            new Constant("TC_MAX_RANK", TC_MAX_RANK),
            new Constant("TC_K_STEP", TC_K_STEP),
            new Constant("TC_OUT_COLS", TC_OUT_COLS),
            new Constant("ATT_MAX_GROUP", ATT_MAX_GROUP),
            new Constant("ATT_MAX_HEAD_DIM", ATT_MAX_HEAD_DIM),
            new Constant("ATT_THREADS", ATT_THREADS),
            new Constant("ATT_TILE", ATT_TILE),
            new Constant("DEC_THREADS", DEC_THREADS),
            new Constant("ATT_TC_BLOCK_M", ATT_TC_BLOCK_M),
            new Constant("ATT_TC_BLOCK_N", ATT_TC_BLOCK_N),
            new Constant("ATT_TC_THREADS", ATT_TC_THREADS),
            new Constant("SAMPLE_THREADS", SAMPLE_THREADS),
            new Constant("DIGITS", DIGITS),
            new Constant("MAX_TOP", MAX_TOP),
            new Constant("P_TEMPERATURE", P_TEMPERATURE),
            new Constant("P_TOP_K", P_TOP_K),
            new Constant("P_TOP_P", P_TOP_P),
            new Constant("P_MIN_P", P_MIN_P),
            new Constant("P_REPETITION", P_REPETITION),
            new Constant("P_PRESENCE", P_PRESENCE),
            new Constant("P_FREQUENCY", P_FREQUENCY),
            new Constant("P_UNIFORM_LO", P_UNIFORM_LO),
            new Constant("P_UNIFORM_HI", P_UNIFORM_HI),
            new Constant("P_LOGPROBS", P_LOGPROBS),
            new Constant("P_PENALTY_BEGIN", P_PENALTY_BEGIN),
            new Constant("P_PENALTY_END", P_PENALTY_END),
            new Constant("P_BIAS_BEGIN", P_BIAS_BEGIN),
            new Constant("P_BIAS_END", P_BIAS_END),
            new Constant("ROW_INTS", ROW_INTS),
            new Constant("OUT_INTS", OUT_INTS));

    private KernelConstants() {
    }

    /** The text of {@code kernel_constants.cuh}. */
    static String header() {
        StringBuilder sb = new StringBuilder();
        sb.append("// Generated from ai.punica.backend.cuda.KernelConstants: edit that class, not this file\n");
        sb.append("// (KernelConstantsTest fails while the two differ and writes the fresh header to target/).\n");
        sb.append("#pragma once\n\n");
        for (Constant c : ALL) {
            sb.append("#define ").append(c.name()).append(' ').append(c.value()).append('\n');
        }
        return sb.toString();
    }

    /** Writes {@link #header()} to {@code args[0]}. */
    public static void main(String[] args) throws IOException {
        Files.writeString(Path.of(args[0]), header(), StandardCharsets.UTF_8);
    }
}
