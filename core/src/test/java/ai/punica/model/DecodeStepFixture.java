package ai.punica.model;

import ai.punica.Fixtures;
import ai.punica.backend.AttentionBatch;
import ai.punica.backend.Backend;
import ai.punica.backend.Segments;
import ai.punica.engine.ModelRunner;
import ai.punica.lora.AdapterManager.Acquisition;
import ai.punica.lora.AdapterManager;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * The fixture model with two adapters and {@value #SEQUENCES} sequences (two on the base model, three on
 * "reverse", two on "sort", sorted by adapter as the scheduler sorts them), and a builder of prefill and
 * decode steps over any ascending subset of them. Each sequence owns pages 8s .. 8s+7, in reverse order,
 * so at most 128 tokens. Used by the decode-padding test here and the step-graph test on the GPU.
 */
public final class DecodeStepFixture {
    public static final int PAGE_SIZE = 16;
    public static final int SEQUENCES = 7;

    private DecodeStepFixture() {
    }

    /** One model with its adapters and KV, and the state of SEQUENCES sequences on it. */
    public static final class Runner implements AutoCloseable {
        public final LlamaModel model;
        /** Lays out, pads and (with a step recorder) replays the steps, as in the engine. */
        public final ModelRunner runner;
        /** Adapter slot of each sequence (-1: base model). */
        public final int[] slots = new int[SEQUENCES];
        private final AdapterManager adapters;
        private final ExecutorService loader = Executors.newVirtualThreadPerTaskExecutor();

        public Runner(Backend backend) {
            ModelConfig config = ModelConfig.load(Fixtures.model().resolve("config.json"));
            model = LlamaModel.load(config, Checkpoint.open(Fixtures.model()), backend, 256, 16, 4, 64);
            adapters = new AdapterManager(model, 1L << 30, loader);
            adapters.register("reverse", Fixtures.adapter("reverse"));
            adapters.register("sort", Fixtures.adapter("sort"));
            runner = new ModelRunner(model, 64, PAGE_SIZE);
            // Sequences sorted by adapter (as the scheduler does): base, base, reverse ×3, sort ×2.
            String[] adapterOf = {null, null, "reverse", "reverse", "reverse", "sort", "sort"};
            for (int s = 0; s < SEQUENCES; s++) {
                slots[s] = adapterOf[s] == null ? -1 : acquire(adapterOf[s]);
            }
        }

        private int acquire(String name) {
            long deadline = System.nanoTime() + 30_000_000_000L;
            while (System.nanoTime() < deadline) {
                if (adapters.acquire(name) instanceof Acquisition.Ready(int slot)) {
                    return slot;
                }
                Thread.onSpinWait();
            }
            throw new IllegalStateException(name + " did not load");
        }

        /** One step through the runner: the logits of its logit rows, in a buffer the next step reuses. */
        public float[] forward(ForwardBatch step) {
            return runner.forward(step);
        }

        @Override
        public void close() {
            adapters.close();
            model.close();
            loader.shutdownNow();
        }
    }

    /**
     * A step over {@code seqs} (ascending, so adapter segments stay sorted): their whole context but the
     * last token when {@code prefill}, else only their last token.
     */
    public static ForwardBatch step(int[] seqs, int[] lengths, int[][] contexts, int[] slots, boolean prefill) {
        List<Integer> tokens = new ArrayList<>();
        List<Integer> positions = new ArrayList<>();
        List<Integer> slotMapping = new ArrayList<>();
        int n = seqs.length;
        int[] queryStarts = new int[n + 1];
        int[] contextLens = new int[n];
        int[] pageTableStarts = new int[n + 1];
        int[] pageTables = new int[8 * n];
        int[] logitRows = new int[n];
        List<Integer> segStarts = new ArrayList<>();
        List<Integer> segSlots = new ArrayList<>();
        for (int k = 0; k < n; k++) {
            int s = seqs[k];
            queryStarts[k] = tokens.size();
            pageTableStarts[k] = 8 * k;
            for (int p = 0; p < 8; p++) {
                pageTables[8 * k + p] = 8 * s + (7 - p); // pages out of order
            }
            int end = prefill ? lengths[s] - 1 : lengths[s];
            int begin = prefill ? 0 : lengths[s] - 1;
            if (segSlots.isEmpty() || segSlots.getLast() != slots[s]) {
                segStarts.add(tokens.size());
                segSlots.add(slots[s]);
            }
            for (int t = begin; t < end; t++) {
                tokens.add(contexts[s][t]);
                positions.add(t);
                slotMapping.add(pageTables[8 * k + t / PAGE_SIZE] * PAGE_SIZE + t % PAGE_SIZE);
            }
            contextLens[k] = end;
            logitRows[k] = tokens.size() - 1;
        }
        queryStarts[n] = tokens.size();
        pageTableStarts[n] = 8 * n;
        segStarts.add(tokens.size());
        AttentionBatch attention = new AttentionBatch(queryStarts, contextLens, pageTableStarts, pageTables,
                ints(slotMapping), PAGE_SIZE);
        Segments segments = new Segments(ints(segStarts), ints(segSlots));
        int[] tokenArray = ints(tokens);
        int[] positionArray = ints(positions);
        ForwardBatch restricted = ForwardBatch.restrictToLogitRows(tokenArray, positionArray, attention, segments,
                logitRows);
        return new ForwardBatch(tokenArray, positionArray, attention, segments, logitRows, restricted);
    }

    private static int[] ints(List<Integer> values) {
        return values.stream().mapToInt(Integer::intValue).toArray();
    }
}
