package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import ai.punica.Fixtures;
import ai.punica.backend.Backend;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import ai.punica.backend.cpu.CpuBackend;
import ai.punica.lora.AdapterManager.Acquisition;
import ai.punica.model.Checkpoint;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import java.lang.foreign.MemorySegment;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.Executor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Regression test for the race fixed in a52d120: the host tier's trim, on the loader thread, closed host copies
 * that a slot's upload was still reading ("Already closed" on the H200 serving run with 1,000 adapters). Here the
 * interleaving is forced, deterministically, on the CPU backend:
 * <ul>
 *   <li>the loader is a queue the test runs by hand: disk reads finish (and trim the tier) exactly when the test
 *       says, including <em>inside</em> {@link Backend#loadWeightsAsync}, between the engine thread finding the
 *       adapter in host memory and the copy reading it (the window the old code left open: it guarded only
 *       adapters already named in the slot arrays);</li>
 *   <li>the upload reads the host copy only on its second {@link WeightUpload#isDone} (as the CUDA upload thread
 *       reads it after {@code acquire} returned), so the loader trims while copies are under way;</li>
 *   <li>the host budget is one byte: every disk read trims everything it may.</li>
 * </ul>
 * 48 requests over 8 adapters through 2 slots: no acquisition fails, and every slot, when served, computes that
 * adapter's LoRA add-on (shrink + expand on the backend against the adapter's own file values).
 */
class HostTierTrimRaceTest {
    private static final int ADAPTERS = 8;
    private static final int SLOTS = 2;
    private static final int REQUESTS = 48;

    /** The loader thread, run by hand: each {@link #drain} finishes every disk read queued so far. */
    static final class ManualLoader implements Executor {
        private final ArrayDeque<Runnable> queued = new ArrayDeque<>();
        int ran;

        @Override
        public void execute(Runnable task) {
            queued.add(task);
        }

        void drain() {
            Runnable r;
            while ((r = queued.poll()) != null) {
                r.run();
                ran++;
            }
        }
    }

    /**
     * The CPU backend with a copy that behaves as the GPU's: the loader gets to run while the copy starts, and the
     * host weights are read (into the backend's own memory) only when the engine thread polls the copy again.
     */
    static Backend deferredCopies(Backend cpu, ManualLoader loader) {
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                (proxy, method, args) -> {
                    if (method.getName().equals("loadWeightsAsync")) {
                        loader.drain(); // the loader thread finishes a read and trims, just as the copy starts
                        @SuppressWarnings("unchecked")
                        List<TensorData> weights = (List<TensorData>) args[0];
                        return new DeferredUpload(cpu, weights);
                    }
                    try {
                        return method.invoke(cpu, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
    }

    /** Reads the host weights on the second poll: copies them to the heap, then loads those on the CPU backend. */
    static final class DeferredUpload implements WeightUpload {
        private final Backend cpu;
        private final List<TensorData> host;
        private int polls;
        private WeightUpload copied;

        DeferredUpload(Backend cpu, List<TensorData> host) {
            this.cpu = cpu;
            this.host = host;
        }

        @Override
        public List<Tensor> tensors() {
            return copied.tensors();
        }

        @Override
        public boolean isDone() {
            if (copied != null) {
                return true;
            }
            if (++polls < 2) {
                return false;
            }
            List<TensorData> onHeap = new ArrayList<>(host.size());
            for (TensorData w : host) { // throws "Already closed" if the host tier closed the copy
                MemorySegment bytes = MemorySegment.ofArray(new byte[(int) w.data().byteSize()]);
                bytes.copyFrom(w.data());
                onHeap.add(new TensorData(w.name(), w.dtype(), w.shape(), bytes));
            }
            copied = cpu.loadWeightsAsync(onHeap);
            return true;
        }

        @Override
        public void close() {
            if (copied != null) {
                copied.close();
            }
        }
    }

    @Test
    void theHostTierNeverClosesACopyThatASlotIsReadingWhileLoadsTrimIt(@TempDir Path tmp) {
        ModelConfig config = ModelConfig.load(Fixtures.model().resolve("config.json"));
        List<String> names = new ArrayList<>();
        Map<String, LoraAdapter> expected = new HashMap<>();
        ManualLoader loader = new ManualLoader();
        try (Backend cpu = new CpuBackend();
             Checkpoint checkpoint = Checkpoint.open(Fixtures.model());
             LlamaModel model = LlamaModel.load(config, checkpoint, deferredCopies(cpu, loader), 16, 4, SLOTS, 8);
             // a host budget of one byte: every disk read trims every adapter it is allowed to close
             AdapterManager adapters = new AdapterManager(model, 1, loader)) {
            for (int i = 0; i < ADAPTERS; i++) {
                String name = "r" + i;
                Path dir = RandomFixtureAdapters.write(tmp.resolve(name), 500 + i);
                adapters.register(name, dir);
                names.add(name);
                expected.put(name, LoraAdapter.load(name, dir, config)); // the oracle's own copy
            }
            SplittableRandom random = new SplittableRandom(42);
            ArrayDeque<String> waiting = new ArrayDeque<>();
            for (int i = 0; i < REQUESTS; i++) {
                waiting.add(names.get(random.nextInt(ADAPTERS)));
            }
            // running request → steps left; a request runs two steps, then releases its slot
            Map<Integer, List<int[]>> running = new HashMap<>();
            int served = 0;
            int checked = 0;
            for (int step = 0; step < 2000 && (served < REQUESTS || !running.isEmpty()); step++) {
                // admission: every waiting request, in order, as a scheduler would ask
                for (var it = waiting.iterator(); it.hasNext(); ) {
                    String name = it.next();
                    Acquisition a = adapters.acquire(name);
                    assertThat(a).as("step %d, acquire %s", step, name).isNotInstanceOf(Acquisition.Failed.class);
                    if (a instanceof Acquisition.Ready(int slot)) {
                        checkSlotComputes(cpu, model, config, slot, expected.get(name), step);
                        checked++;
                        running.computeIfAbsent(slot, s -> new ArrayList<>()).add(new int[] {2});
                        it.remove();
                        served++;
                    }
                }
                // the step: running requests age; finished ones release their slot
                for (var e : running.entrySet()) {
                    for (var r = e.getValue().iterator(); r.hasNext(); ) {
                        int[] left = r.next();
                        if (--left[0] == 0) {
                            adapters.release(e.getKey());
                            r.remove();
                        }
                    }
                }
                running.values().removeIf(List::isEmpty);
                loader.drain(); // disk reads finish between steps too
            }
            assertThat(served).as("every request got its adapter").isEqualTo(REQUESTS);
            assertThat(checked).isEqualTo(REQUESTS);
            assertThat(loader.ran).as("adapters were read from disk again and again (the tier trimmed them)")
                    .isGreaterThan(ADAPTERS);
            assertThat(adapters.pinnedSlots()).isZero();
        } finally {
            expected.values().forEach(LoraAdapter::close);
        }
    }

    /**
     * The slot's add-on on the backend, {@code y = scale · (x · Aᵀ) · Bᵀ} for q_proj of layer 0 and v_proj of the
     * last layer, against the same product from the adapter's file, in doubles (bf16 weights, float32 on the CPU).
     */
    private static void checkSlotComputes(Backend cpu, LlamaModel model, ModelConfig config, int slot,
                                          LoraAdapter adapter, int step) {
        int rows = 2;
        SplittableRandom random = new SplittableRandom(step * 31L + slot);
        for (int layer : new int[] {0, config.numLayers() - 1}) {
            for (Projection p : new Projection[] {Projection.Q_PROJ, Projection.V_PROJ}) {
                int in = p.inFeatures(config);
                int out = p.outFeatures(config);
                int rank = adapter.rank(layer, p);
                float[] x = new float[rows * in];
                for (int i = 0; i < x.length; i++) {
                    x[i] = (float) random.nextDouble(-1, 1);
                }
                LoraWeights weights = model.loraWeights(layer, p);
                assertThat(weights.present(slot)).isTrue();
                Segments segments = new Segments(new int[] {0, rows}, new int[] {slot});
                Tensor xt = cpu.allocate(rows, in);
                Tensor v = cpu.allocate(rows, Math.max(1, weights.maxRank()));
                Tensor y = cpu.allocate(rows, out);
                try {
                    cpu.upload(x, xt);
                    cpu.upload(new float[rows * out], y);
                    cpu.sgmvShrink(xt, weights, segments, v);
                    cpu.sgmvExpand(v, weights, segments, y, 0);
                    float[] got = new float[rows * out];
                    cpu.download(y, got);
                    float[] a = adapter.loraA(layer, p).toFloatArray();
                    float[] b = adapter.loraB(layer, p).toFloatArray();
                    float scale = adapter.scale(layer, p);
                    for (int r = 0; r < rows; r++) {
                        double[] shrunk = new double[rank];
                        for (int k = 0; k < rank; k++) {
                            for (int i = 0; i < in; i++) {
                                shrunk[k] += (double) x[r * in + i] * a[k * in + i];
                            }
                        }
                        for (int o = 0; o < out; o++) {
                            double want = 0;
                            for (int k = 0; k < rank; k++) {
                                want += shrunk[k] * b[o * rank + k];
                            }
                            want *= scale;
                            assertThat((double) got[r * out + o]).as("%s slot %d layer %d %s row %d col %d",
                                    adapter.name(), slot, layer, p, r, o).isCloseTo(want, within(1e-3 + 1e-3 * Math.abs(want)));
                        }
                    }
                } finally {
                    cpu.free(xt);
                    cpu.free(v);
                    cpu.free(y);
                }
            }
        }
    }
}
