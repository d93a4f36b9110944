package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.backend.Backend;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import ai.punica.backend.cpu.CpuBackend;
import ai.punica.lora.AdapterManager.Acquisition;
import ai.punica.model.Checkpoint;
import ai.punica.model.LlamaModel;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The copying state of a slot: between admission and the end of its copy the slot is reserved for the
 * adapter but neither served nor visible to the kernels, and no other adapter can take it. Uploads here
 * are held back by a gate the test opens, on the CPU backend.
 */
class AdapterSlotCopyTest {

    /** A CPU backend whose weight uploads complete only once {@link #open} is set. */
    static final class GatedUploads {
        volatile boolean open;
        volatile boolean fail;
        int started;
        int closed;
        final Backend backend;

        GatedUploads(Backend cpu) {
            backend = (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                    (proxy, method, args) -> {
                        if (method.getName().equals("loadWeightsAsync")) {
                            @SuppressWarnings("unchecked")
                            List<TensorData> weights = (List<TensorData>) args[0];
                            started++;
                            return gated(cpu.loadWeightsAsync(weights));
                        }
                        try {
                            return method.invoke(cpu, args);
                        } catch (InvocationTargetException e) {
                            throw e.getCause();
                        }
                    });
        }

        private WeightUpload gated(WeightUpload real) {
            return new WeightUpload() {
                @Override
                public List<Tensor> tensors() {
                    return real.tensors();
                }

                @Override
                public boolean isDone() {
                    if (fail) {
                        throw new IllegalStateException("simulated copy failure");
                    }
                    return open && real.isDone();
                }

                @Override
                public void close() {
                    closed++;
                    real.close();
                }
            };
        }
    }

    /**
     * The fixture model on a gated CPU backend with one adapter slot; host reads complete inside {@code acquire()}
     * (the loader runs inline).
     */
    static final class OneSlot implements AutoCloseable {
        final GatedUploads gate = new GatedUploads(new CpuBackend());
        final Checkpoint checkpoint = Checkpoint.open(Fixtures.model());
        final LlamaModel model = LlamaModel.load(ModelConfig.load(Fixtures.model().resolve("config.json")), checkpoint,
                gate.backend, 16, 4, 1, 64);
        final AdapterManager adapters = new AdapterManager(model, Long.MAX_VALUE, Runnable::run);

        @Override
        public void close() {
            adapters.close();
            model.close();
            checkpoint.close();
            gate.backend.close();
        }
    }

    @Test
    void aSlotIsServedOnlyOnceItsCopyHasCompletedAndIsNotTakenMeanwhile() {
        try (OneSlot one = new OneSlot()) {
            GatedUploads gate = one.gate;
            LlamaModel model = one.model;
            AdapterManager adapters = one.adapters;
            adapters.register("upper", Fixtures.adapter("upper"));
            adapters.register("reverse", Fixtures.adapter("reverse"));

            assertThat(adapters.acquire("upper")).as("first ask: read from disk").isInstanceOf(Acquisition.Loading.class);
            assertThat(adapters.acquire("upper")).as("second ask: copy started").isInstanceOf(Acquisition.Loading.class);
            assertThat(gate.started).isEqualTo(1);
            for (int step = 0; step < 3; step++) {
                assertThat(adapters.acquire("upper")).as("copy still running").isInstanceOf(Acquisition.Loading.class);
            }
            assertThat(gate.started).as("asking again does not start another copy").isEqualTo(1);
            assertThat(adapters.copyingAdapters()).containsExactly("upper");
            assertThat(adapters.residentAdapters()).isEmpty();
            assertThat(model.loraWeights(0, Projection.Q_PROJ).present(0)).as("kernels see no half-copied slot").isFalse();
            assertThat(adapters.loadCount()).isZero();

            // The only slot is copying: another adapter must wait instead of evicting it.
            assertThat(adapters.acquire("reverse")).isInstanceOf(Acquisition.Loading.class); // disk read
            assertThat(adapters.acquire("reverse")).isInstanceOf(Acquisition.NoFreeSlot.class);
            assertThat(gate.closed).isZero();

            gate.open = true;
            assertThat(adapters.acquire("upper")).isEqualTo(new Acquisition.Ready(0));
            assertThat(adapters.copyingAdapters()).isEmpty();
            assertThat(adapters.residentAdapters()).containsEntry("upper", 1);
            assertThat(model.loraWeights(0, Projection.Q_PROJ).present(0)).isTrue();
            assertThat(model.loraWeights(0, Projection.GATE_PROJ).present(0)).as("upper adapts attention only").isFalse();
            assertThat(adapters.loadCount()).isEqualTo(1);

            // Pinned: still no slot for reverse; once released, reverse replaces it (the gate is open now).
            assertThat(adapters.acquire("reverse")).isInstanceOf(Acquisition.NoFreeSlot.class);
            adapters.release(0);
            assertThat(adapters.acquire("reverse")).isEqualTo(new Acquisition.Ready(0));
            assertThat(gate.closed).as("upper's upload released on eviction").isEqualTo(1);
            assertThat(model.loraWeights(0, Projection.GATE_PROJ).present(0)).isTrue();
            adapters.release(0);
        }
    }

    @Test
    void aFailedCopyFailsTheAdapterAndFreesItsSlot() {
        try (OneSlot one = new OneSlot()) {
            GatedUploads gate = one.gate;
            AdapterManager adapters = one.adapters;
            adapters.register("upper", Fixtures.adapter("upper"));
            adapters.register("reverse", Fixtures.adapter("reverse"));
            assertThat(adapters.acquire("upper")).isInstanceOf(Acquisition.Loading.class);
            assertThat(adapters.acquire("upper")).isInstanceOf(Acquisition.Loading.class);
            gate.fail = true;
            Acquisition failed = adapters.acquire("upper");
            assertThat(failed).isInstanceOf(Acquisition.Failed.class);
            assertThat(((Acquisition.Failed) failed).message()).contains("upper").contains("simulated copy failure");
            assertThat(adapters.copyingAdapters()).isEmpty();
            assertThat(gate.closed).isEqualTo(1);

            gate.fail = false;
            gate.open = true;
            assertThat(adapters.acquire("upper")).as("stays failed until registered again")
                    .isInstanceOf(Acquisition.Failed.class);
            assertThat(adapters.acquire("reverse")).isInstanceOf(Acquisition.Loading.class);
            assertThat(adapters.acquire("reverse")).as("the slot is free again").isEqualTo(new Acquisition.Ready(0));
            adapters.release(0);
        }
    }

    /**
     * The engine looks at copying slots before every step ({@link AdapterManager#finishCopies}): a finished copy
     * becomes ready and its device stage is timed then, without anyone asking for the adapter (at saturation the
     * scheduler asks only when a running request finishes, which made the device stage read 50-200 ms on a GPU).
     */
    @Test
    void aFinishedCopyIsMadeReadyBeforeTheNextStepWithoutAnAcquire() {
        try (OneSlot one = new OneSlot()) {
            GatedUploads gate = one.gate;
            AdapterManager adapters = one.adapters;
            adapters.register("upper", Fixtures.adapter("upper"));
            java.util.List<LoadStage> stages = new java.util.concurrent.CopyOnWriteArrayList<>();
            adapters.addLoadListener((stage, name, nanos) -> stages.add(stage));
            assertThat(adapters.acquire("upper")).isInstanceOf(Acquisition.Loading.class);
            assertThat(adapters.acquire("upper")).isInstanceOf(Acquisition.Loading.class);
            adapters.finishCopies();
            assertThat(adapters.copyingAdapters()).as("gate closed: still copying").containsExactly("upper");
            assertThat(stages).containsExactly(LoadStage.DISK);

            gate.open = true;
            adapters.finishCopies();
            assertThat(adapters.copyingAdapters()).isEmpty();
            assertThat(adapters.residentAdapters()).containsEntry("upper", 0);
            assertThat(stages).containsExactly(LoadStage.DISK, LoadStage.DEVICE);
            assertThat(adapters.loadCount()).isEqualTo(1);
            assertThat(adapters.acquire("upper")).isEqualTo(new Acquisition.Ready(0));
            assertThat(stages).as("the device stage is reported once").hasSize(2);
            adapters.release(0);
        }
    }
}
