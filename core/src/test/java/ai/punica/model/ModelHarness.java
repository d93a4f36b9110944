package ai.punica.model;

import ai.punica.backend.AttentionBatch;
import ai.punica.backend.Backend;
import ai.punica.backend.Backends;
import ai.punica.backend.Segments;
import ai.punica.engine.ModelRunner;
import ai.punica.lora.AdapterManager.Acquisition;
import ai.punica.lora.AdapterManager;
import ai.punica.parallel.TensorParallel;
import ai.punica.parallel.TensorParallelGroup;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * Runs the model directly, without the engine: one forward pass over several whole prompts, each with
 * its own adapter, laid out independently of the scheduler (so model tests do not depend on it).
 */
public final class ModelHarness implements AutoCloseable {
    public static final int MAX_ROWS = 2048;
    public static final int MAX_SEQUENCES = 32;
    private static final int PAGE_SIZE = 16;

    private final Backend backend;
    private final Checkpoint checkpoint;
    private final LlamaModel model;
    private final AdapterManager adapters;
    private final ExecutorService loader = Executors.newVirtualThreadPerTaskExecutor();
    private final ModelRunner runner;
    private final int numPages;

    public ModelHarness(Path modelDir, Map<String, Path> adapterDirs, String backendName) {
        this(modelDir, adapterDirs, backendName, 1);
    }

    /**
     * With {@code tensorParallel} > 1: the model over that many in-process ranks, as {@code punica serve
     * --tensor-parallel} makes them (in-memory all-reduce on the CPU, NCCL on CUDA GPUs 0..N-1).
     */
    public ModelHarness(Path modelDir, Map<String, Path> adapterDirs, String backendName, int tensorParallel) {
        this(modelDir, adapterDirs, tensorParallel == 1 ? Backends.create(backendName) : null, backendName,
                tensorParallel);
    }

    /** The model on {@code backend}, which the harness closes. */
    public ModelHarness(Path modelDir, Map<String, Path> adapterDirs, Backend backend) {
        this(modelDir, adapterDirs, backend, backend.name(), 1);
    }

    private ModelHarness(Path modelDir, Map<String, Path> adapterDirs, Backend single, String backendName,
                         int tensorParallel) {
        ModelConfig config = ModelConfig.load(modelDir.resolve("config.json"));
        checkpoint = Checkpoint.open(modelDir);
        if (tensorParallel == 1) {
            backend = single;
            model = LlamaModel.load(config, checkpoint, backend, MAX_ROWS, MAX_SEQUENCES, 8, 64);
        } else {
            model = TensorParallel.load(config, checkpoint, backendName, 0, tensorParallel,
                    new TensorParallelGroup.Sizes(MAX_ROWS, MAX_SEQUENCES, 8, 64));
            backend = model.backend(); // closing it closes every rank
        }
        adapters = new AdapterManager(model, 1L << 30, loader);
        adapterDirs.forEach(adapters::register);
        numPages = MAX_ROWS / PAGE_SIZE + MAX_SEQUENCES;
        runner = new ModelRunner(model, numPages, PAGE_SIZE);
    }

    public LlamaModel model() {
        return model;
    }

    /** One sequence of a batch: a whole prompt and its adapter (null for the base model). */
    public record Input(int[] tokens, String adapter) {
    }

    /**
     * Last-position logits of every input, computed in ONE forward pass with rows grouped by adapter.
     * Returns them in input order.
     */
    public float[][] lastLogits(List<Input> inputs) {
        int n = inputs.size();
        int[] slot = new int[n];
        for (int i = 0; i < n; i++) {
            slot[i] = inputs.get(i).adapter() == null ? -1 : acquire(inputs.get(i).adapter());
        }
        try {
            Integer[] order = new Integer[n];
            for (int i = 0; i < n; i++) {
                order[i] = i;
            }
            Arrays.sort(order, Comparator.comparingInt(i -> slot[i]));
            int rows = inputs.stream().mapToInt(in -> in.tokens().length).sum();
            int[] tokens = new int[rows];
            int[] positions = new int[rows];
            int[] slotMapping = new int[rows];
            int[] queryStarts = new int[n + 1];
            int[] contextLens = new int[n];
            int[] pageTableStarts = new int[n + 1];
            List<Integer> pageTables = new ArrayList<>();
            List<Integer> segStarts = new ArrayList<>();
            List<Integer> segSlots = new ArrayList<>();
            int[] logitRows = new int[n];
            // Hand pages out from the top down, so page ids are not in token order.
            int nextPage = numPages - 1;
            int row = 0;
            for (int k = 0; k < n; k++) {
                int[] prompt = inputs.get(order[k]).tokens();
                queryStarts[k] = row;
                pageTableStarts[k] = pageTables.size();
                int pages = (prompt.length + PAGE_SIZE - 1) / PAGE_SIZE;
                int firstPage = pageTables.size();
                for (int p = 0; p < pages; p++) {
                    pageTables.add(nextPage--);
                }
                if (segSlots.isEmpty() || segSlots.getLast() != slot[order[k]]) {
                    segStarts.add(row);
                    segSlots.add(slot[order[k]]);
                }
                for (int t = 0; t < prompt.length; t++) {
                    tokens[row] = prompt[t];
                    positions[row] = t;
                    slotMapping[row] = pageTables.get(firstPage + t / PAGE_SIZE) * PAGE_SIZE + t % PAGE_SIZE;
                    row++;
                }
                contextLens[k] = prompt.length;
                logitRows[k] = row - 1;
            }
            queryStarts[n] = row;
            pageTableStarts[n] = pageTables.size();
            segStarts.add(row);
            AttentionBatch attention = new AttentionBatch(queryStarts, contextLens, pageTableStarts,
                    pageTables.stream().mapToInt(Integer::intValue).toArray(), slotMapping, PAGE_SIZE);
            Segments segments = new Segments(segStarts.stream().mapToInt(Integer::intValue).toArray(),
                    segSlots.stream().mapToInt(Integer::intValue).toArray());
            ForwardBatch restricted = ForwardBatch.restrictToLogitRows(tokens, positions, attention, segments, logitRows);
            float[] flat = runner.forward(new ForwardBatch(tokens, positions, attention, segments, logitRows, restricted));
            int vocab = model.config().vocabSize();
            float[][] out = new float[n][];
            for (int k = 0; k < n; k++) {
                out[order[k]] = Arrays.copyOfRange(flat, k * vocab, (k + 1) * vocab);
            }
            return out;
        } finally {
            for (int s : slot) {
                if (s >= 0) {
                    adapters.release(s);
                }
            }
        }
    }

    private int acquire(String adapter) {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (System.nanoTime() < deadline) {
            Acquisition a = adapters.acquire(adapter);
            switch (a) {
                case Acquisition.Ready(int s) -> {
                    return s;
                }
                case Acquisition.Failed(String message) -> throw new IllegalStateException(message);
                default -> Thread.onSpinWait();
            }
        }
        throw new IllegalStateException("adapter " + adapter + " did not load within 30 s");
    }

    @Override
    public void close() {
        adapters.close();
        model.close();
        loader.shutdownNow();
        checkpoint.close();
        backend.close();
    }
}
