package ai.punica.backend.cuda;

/**
 * The CUDA backend's switches, read once and checked: {@link #fromSystemProperties()} reads the
 * {@code -Dpunica.cuda.*} properties (docs/gpu.md, "Switches"), {@link #builder()} starts from the defaults.
 *
 * @param device              the GPU's ordinal ({@code punica.cuda.device}, default 0)
 * @param stepGraphs          decode steps recorded as CUDA graphs and replayed ({@code punica.cuda.graphs}, default on)
 * @param fusedLora           decode-step LoRA in one cluster launch on sm_90+ ({@code punica.cuda.fusedLora}, default on)
 * @param wideClusters        a fused LoRA launch whose clusters of 4 would be fewer blocks than SMs takes clusters of 8
 *                            ({@code sgmv_fused_row_group_wide}: o and down of a 32-row step) ({@code
 *                            punica.cuda.wideClusters}; default off until timed on a GPU: written 2026-12-04 without
 *                            device time, checked by the host emulator, run_emu.sh fused)
 * @param loraOverlap         the SGMV shrink on a side stream, overlapping the GEMM ({@code punica.cuda.loraOverlap},
 *                            default on)
 * @param rowTilesUpTo        decode-shaped steps (a row per segment, or segments no longer than the tile table allows)
 *                            of up to this many SGMV tiles cut them into one-row tiles: the row kernels and the fused
 *                            one; above 64 tiles, a step whose adapted segments are all long (tensor-core length)
 *                            takes the tensor-core kernels instead; larger steps take tiles of 8 rows and two launches
 *                            ({@code punica.cuda.rowTilesUpTo}, default {@value #ROW_TILES_UP_TO})
 * @param fusedMinTiles       decode batches of more tiles than this take the fused LoRA kernel (default
 *                            {@value #FUSED_MIN_TILES}; not a property: tests lower it)
 * @param decodeAttention     decode steps take the decode attention kernel; off routes them to the general one
 *                            (benchmarks, tests; default on)
 * @param decodeBlocksPerSm   decode attention splits rows until there are this many blocks per SM (default 8)
 * @param decodeMerge         the decode attention kernel merges its own splits: the last block of a (row, KV head)
 *                            to finish does it, counted in by an atomic counter; off, {@code attention_merge} runs
 *                            after it ({@code punica.cuda.decodeMerge}; the same bits either way in the host
 *                            emulator; default off until it has run and been timed on a GPU: written 2026-12-04
 *                            in a session without device time)
 * @param sgmvTcMinRows       SGMV segments of at least this many rows run on tensor cores (sgmv_tc.cu), shorter ones
 *                            on the CUDA-core kernels; 0 keeps every step on the latter ({@code punica.cuda.sgmvTcMinRows},
 *                            default {@value #SGMV_TC_MIN_ROWS})
 * @param tensorCoreAttention prefill and mixed steps take the tensor-core attention kernel (attention_tc.cu) at
 *                            head sizes 32, 64, 96 and 128; off keeps them on the CUDA-core kernel
 *                            ({@code punica.cuda.tensorCoreAttention}, default on)
 * @param tensorCoreMinRows   a step that is not a decode step takes the tensor-core kernel when one of its
 *                            sequences has at least this many query rows (default {@value #TENSOR_CORE_MIN_ROWS};
 *                            not a property: tests lower it to 1)
 * @param profile             a CUDA event around every launch, for {@code profileReport()} ({@code punica.cuda.profile},
 *                            default off)
 * @param nvrtc               compile the packaged kernel sources with NVRTC even where a fatbin fits
 *                            ({@code punica.cuda.nvrtc}, default off)
 * @param loraApart           decode-sized steps keep each projection's LoRA add-on apart for its consumer: the GEMM
 *                            on a side stream, the add-on into its own buffer beside it, read by rope + KV append,
 *                            the residual add + norm and SwiGLU ({@code punica.cuda.loraApart}, default off: on an
 *                            H200 it saved 1.5-4% of a 32/64-row decode step but lost 2-8% of serving throughput at
 *                            128 clients, docs/gpu.md; never with {@code loraOverlap} off or {@code batchInvariant})
 * @param apartGemmSms        with {@code loraApart}, the side stream's GEMMs plan for this many SMs (cuBLAS's SM count
 *                            target), leaving the others to the add-on's kernels beside them
 *                            ({@code punica.cuda.apartGemmSms}, default 0: all SMs)
 * @param programmaticLaunch  on sm_90+, every kernel of ours is launched with programmatic stream serialization (PDL):
 *                            it may start while the kernel before it drains and waits in {@code griddepcontrol.wait}
 *                            before touching memory; the fused LoRA kernel computes its shrink before that wait
 *                            ({@code punica.cuda.pdl}, default on; results are the same either way)
 * @param gemmTuning          the projections' GEMMs take the algorithm timed fastest for their shape the first time
 *                            the shape runs outside a graph capture: cublasGemmEx's own or one of cuBLASLt's
 *                            heuristic candidates, weights cold ({@code TunedGemms}; {@code punica.cuda.gemmTuning},
 *                            default off: written 2026-12-04 without device time, not yet run on a GPU; never with
 *                            {@code batchInvariant}, whose fixed-row GEMMs must not change algorithm between runs)
 * @param batchInvariant      a row's results never depend on the other rows of a step ({@code --batch-invariant}):
 *                            projections as cuBLAS calls of a fixed row count, attention on the general kernel with
 *                            a fixed number of splits, SGMV on the CUDA-core kernels without split-K; it needs
 *                            {@code fusedLora}, {@code decodeAttention}, {@code tensorCoreAttention} and
 *                            {@code sgmvTcMinRows} off, which {@link Builder#batchInvariant} sets (default off)
 */
public record CudaOptions(int device, boolean stepGraphs, boolean fusedLora, boolean wideClusters, boolean loraOverlap,
                          boolean loraApart,
                          int apartGemmSms, int rowTilesUpTo, int fusedMinTiles,
                          boolean decodeAttention, int decodeBlocksPerSm, boolean decodeMerge, int sgmvTcMinRows,
                          boolean tensorCoreAttention, int tensorCoreMinRows, boolean profile, boolean nvrtc,
                          boolean programmaticLaunch, boolean gemmTuning, boolean batchInvariant) {
    /**
     * Decode batches of more tiles than this take the fused kernel; smaller ones the two launches with the
     * shrink overlapping the GEMM. On an H200 (ProjectionBench, Llama-7B projections, rank 16) the LoRA of a
     * 32-layer step cost 0.48 ms overlapped against 1.15 ms fused at 1 row, 0.99 against 1.19 at 8 rows; at 32
     * rows both about 1.65 in the bench, and in the decode step the fused kernel was 0.3 ms faster.
     */
    public static final int FUSED_MIN_TILES = 8;

    /**
     * Steps of up to this many SGMV tiles take one-row tiles ({@link #rowTilesUpTo}), except that above 64 a step whose
     * adapted segments are all long takes the tensor-core kernels ({@code SgmvTiles.rowTiles}). On an H200 (Llama-2-7B,
     * 128-row decode step, docs/benchmarks/2026-12-04-s11-h200.md) 128 against 64 took skewed from 20.6 to 18.4 ms
     * and distinct from 20.6 to 19.7; uniform 18.2 to 18.5, identical (tensor cores either way) alike.
     */
    public static final int ROW_TILES_UP_TO = 128;

    /**
     * SGMV segments of at least this many rows take the tensor-core kernels (prefill chunks; in a mixed step the
     * chunk, beside its decode rows on the CUDA-core kernels); shorter segments, decode-shaped tile tables, ranks
     * above 64 and 0 here take the CUDA-core kernels of sgmv.cu. Not measured yet on a GPU: SgmvBench's
     * "crossover" table times both paths at 1 to 128 rows per segment (docs/gpu.md, "SGMV on tensor cores").
     */
    public static final int SGMV_TC_MIN_ROWS = 16;

    /**
     * Steps with a sequence of at least this many query rows take the tensor-core attention kernel. With two
     * rows a sequence's keys are already read once per 64 / G rows instead of once per row (the CUDA-core
     * kernel's block per row); not yet measured against the CUDA-core kernel at 2 to 16 rows (AttentionBench
     * {@code prefill} prints the mixed-step rows that decide it).
     */
    public static final int TENSOR_CORE_MIN_ROWS = 2;

    public CudaOptions {
        atLeast("punica.cuda.device", device, 0);
        atLeast("fusedMinTiles", fusedMinTiles, 0);
        atLeast("punica.cuda.rowTilesUpTo", rowTilesUpTo, 0);
        atLeast("punica.cuda.apartGemmSms (0: all)", apartGemmSms, 0);
        atLeast("punica.cuda.sgmvTcMinRows (0: off)", sgmvTcMinRows, 0);
        atLeast("decodeBlocksPerSm (blocks per SM)", decodeBlocksPerSm, 1);
        atLeast("tensorCoreMinRows", tensorCoreMinRows, 1);
        if (batchInvariant && (fusedLora || decodeAttention || tensorCoreAttention || sgmvTcMinRows != 0)) {
            throw new IllegalArgumentException("batchInvariant needs fusedLora, decodeAttention, tensorCoreAttention "
                    + "and sgmvTcMinRows off (their kernels split reductions by the step's shape)");
        }
        if (batchInvariant && gemmTuning) {
            throw new IllegalArgumentException("batchInvariant needs gemmTuning off (a timed choice of GEMM algorithm "
                    + "may differ from one run to the next)");
        }
    }

    private static void atLeast(String name, int value, int min) {
        if (value < min) {
            throw new IllegalArgumentException(name + " must be " + min + " or more, got " + value);
        }
    }

    /** Every switch at its default. */
    public static CudaOptions defaults() {
        return builder().build();
    }

    /** The defaults with the {@code -Dpunica.cuda.*} properties of this JVM applied; a malformed value is refused. */
    public static CudaOptions fromSystemProperties() {
        return builder()
                .device(intProperty("punica.cuda.device", 0))
                .stepGraphs(flag("punica.cuda.graphs", true))
                .fusedLora(flag("punica.cuda.fusedLora", true))
                .wideClusters(flag("punica.cuda.wideClusters", false))
                .loraOverlap(flag("punica.cuda.loraOverlap", true))
                .loraApart(flag("punica.cuda.loraApart", false))
                .apartGemmSms(intProperty("punica.cuda.apartGemmSms", 0))
                .rowTilesUpTo(intProperty("punica.cuda.rowTilesUpTo", ROW_TILES_UP_TO))
                .sgmvTcMinRows(intProperty("punica.cuda.sgmvTcMinRows", SGMV_TC_MIN_ROWS))
                .tensorCoreAttention(flag("punica.cuda.tensorCoreAttention", true))
                .decodeMerge(flag("punica.cuda.decodeMerge", false))
                .profile(flag("punica.cuda.profile", false))
                .nvrtc(flag("punica.cuda.nvrtc", false))
                .programmaticLaunch(flag("punica.cuda.pdl", true))
                .gemmTuning(flag("punica.cuda.gemmTuning", false))
                .build();
    }

    public static Builder builder() {
        return new Builder();
    }

    /** A builder holding these options, to change some of them. */
    public Builder toBuilder() {
        return new Builder().device(device).stepGraphs(stepGraphs).fusedLora(fusedLora).wideClusters(wideClusters)
                .loraOverlap(loraOverlap)
                .loraApart(loraApart).apartGemmSms(apartGemmSms).rowTilesUpTo(rowTilesUpTo).fusedMinTiles(fusedMinTiles).decodeAttention(decodeAttention).decodeBlocksPerSm(decodeBlocksPerSm)
                .decodeMerge(decodeMerge)
                .sgmvTcMinRows(sgmvTcMinRows).tensorCoreAttention(tensorCoreAttention)
                .tensorCoreMinRows(tensorCoreMinRows).profile(profile).nvrtc(nvrtc)
                .programmaticLaunch(programmaticLaunch).gemmTuning(gemmTuning).batchInvariant(batchInvariant);
    }

    private static boolean flag(String name, boolean defaultValue) {
        String v = System.getProperty(name);
        if (v == null) {
            return defaultValue;
        }
        return switch (v.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "true" -> true;
            case "false" -> false;
            default -> throw new IllegalArgumentException("-D" + name + "=" + v + ": expected true or false");
        };
    }

    private static int intProperty(String name, int defaultValue) {
        String v = System.getProperty(name);
        if (v == null) {
            return defaultValue;
        }
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("-D" + name + "=" + v + ": expected a whole number", e);
        }
    }

    public static final class Builder {
        private int device;
        private boolean stepGraphs = true;
        private boolean fusedLora = true;
        private boolean wideClusters;
        private boolean loraOverlap = true;
        private boolean loraApart;
        private int apartGemmSms;
        private int rowTilesUpTo = ROW_TILES_UP_TO;
        private int fusedMinTiles = FUSED_MIN_TILES;
        private boolean decodeAttention = true;
        private int decodeBlocksPerSm = 8;
        private boolean decodeMerge;
        private int sgmvTcMinRows = SGMV_TC_MIN_ROWS;
        private boolean tensorCoreAttention = true;
        private int tensorCoreMinRows = TENSOR_CORE_MIN_ROWS;
        private boolean profile;
        private boolean nvrtc;
        private boolean programmaticLaunch = true;
        private boolean gemmTuning;
        private boolean batchInvariant;

        private Builder() {
        }

        // Chosen when the backend starts (step graphs: for the models loaded afterwards).
        public Builder device(int ordinal) { device = ordinal; return this; }
        public Builder profile(boolean on) { profile = on; return this; }
        public Builder nvrtc(boolean on) { nvrtc = on; return this; }
        public Builder stepGraphs(boolean on) { stepGraphs = on; return this; }
        /** Programmatic dependent launch of our kernels on sm_90+ (results do not change). */
        public Builder programmaticLaunch(boolean on) { programmaticLaunch = on; return this; }
        /** The projections' GEMMs take the algorithm timed fastest per shape ({@code TunedGemms}). */
        public Builder gemmTuning(boolean on) { gemmTuning = on; return this; }

        /**
         * Batch-invariant kernels ({@code --batch-invariant}); on, it also turns off the paths whose reductions
         * depend on the step's shape (fused LoRA, decode and tensor-core attention, tensor-core SGMV), off it
         * leaves them as they are.
         */
        public Builder batchInvariant(boolean on) {
            batchInvariant = on;
            if (on) {
                fusedLora = false;
                gemmTuning = false;
                decodeAttention = false;
                tensorCoreAttention = false;
                sgmvTcMinRows = 0;
            }
            return this;
        }

        /** The options, checked (a negative device or tile count, no blocks per SM or no minimum rows is refused). */
        public CudaOptions build() {
            return new CudaOptions(device, stepGraphs, fusedLora, wideClusters, loraOverlap, loraApart, apartGemmSms,
                    rowTilesUpTo,
                    fusedMinTiles,
                    decodeAttention,
                    decodeBlocksPerSm, decodeMerge, sgmvTcMinRows, tensorCoreAttention, tensorCoreMinRows, profile, nvrtc,
                    programmaticLaunch, gemmTuning, batchInvariant);
        }

        // Paths of the LoRA add-on.
        public Builder fusedLora(boolean on) { fusedLora = on; return this; }
        public Builder wideClusters(boolean on) { wideClusters = on; return this; }
        public Builder loraOverlap(boolean on) { loraOverlap = on; return this; }
        public Builder loraApart(boolean on) { loraApart = on; return this; }
        public Builder apartGemmSms(int sms) { apartGemmSms = sms; return this; }
        public Builder fusedMinTiles(int tiles) { fusedMinTiles = tiles; return this; }
        public Builder rowTilesUpTo(int tiles) { rowTilesUpTo = tiles; return this; }
        /** Rows of a segment from which its SGMV runs on tensor cores; 0: never. */
        public Builder sgmvTcMinRows(int rows) { sgmvTcMinRows = rows; return this; }

        // Decode attention.
        public Builder decodeAttention(boolean on) { decodeAttention = on; return this; }
        public Builder decodeBlocksPerSm(int blocks) { decodeBlocksPerSm = blocks; return this; }
        public Builder decodeMerge(boolean on) { decodeMerge = on; return this; }

        // Prefill and mixed-step attention.
        public Builder tensorCoreAttention(boolean on) { tensorCoreAttention = on; return this; }
        public Builder tensorCoreMinRows(int rows) { tensorCoreMinRows = rows; return this; }
    }
}
