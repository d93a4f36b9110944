package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightUpload;
import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.lora.AdapterManager.Acquisition;
import ai.punica.lora.AdapterManager;
import ai.punica.lora.LoraAdapter;
import ai.punica.model.Projection;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Adapter weights copied on the copy stream ({@link CudaBackend#loadWeightsAsync}): the device holds exactly
 * the source values rounded to bf16 (from bf16, f16 and f32 files), a copy completes while the compute
 * stream is still busy, an abandoned copy never writes into memory that was handed out again, and adapters
 * coming and going through {@link AdapterManager} while an engine runs steps reuse freed device memory.
 * Prints "CHECK upload ..." lines.
 */
@Tag("gpu")
class CudaAdapterUploadTest {

    @BeforeAll
    static void needsGpu() {
        GpuChecks.requireDevice();
    }

    static TensorData random(String name, DType dtype, int rows, int cols, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        float[] v = new float[rows * cols];
        for (int i = 0; i < v.length; i++) {
            double x = rng.nextDouble(-1, 1);
            v[i] = (float) (x == 0 ? 0.3 : x);
        }
        return TensorData.of(name, dtype, rows, cols, v);
    }

    /** The source's values as the device should hold them: each rounded to bf16 (nearest even). */
    static float[] asBf16(TensorData w) {
        float[] v = new float[Math.toIntExact(w.elementCount())];
        for (int i = 0; i < v.length; i++) {
            v[i] = DType.bf16ToFloat(DType.floatToBf16(w.getFloat(i)));
        }
        return v;
    }

    static float[] download(CudaBackend gpu, Tensor t) {
        float[] v = new float[t.rows() * t.cols()];
        gpu.download(t, v);
        return v;
    }

    /** Exact equality, reporting the first difference and how many there are (not the whole array). */
    static void assertSameValues(String what, float[] got, float[] want) {
        assertThat(got.length).as(what + ": length").isEqualTo(want.length);
        int differ = 0;
        int first = -1;
        for (int i = 0; i < want.length; i++) {
            if (Float.floatToIntBits(got[i]) != Float.floatToIntBits(want[i])) {
                differ++;
                first = first < 0 ? i : first;
            }
        }
        if (differ > 0) {
            throw new AssertionError(what + ": " + differ + " of " + want.length + " values differ; first at " + first
                    + ": device " + got[first] + ", expected " + want[first]);
        }
    }

    /** Waits (host side, without blocking the streams) until the upload is done, at most 60 s. */
    static long awaitMillis(WeightUpload upload) {
        long start = System.nanoTime();
        while (!upload.isDone()) {
            assertThat(System.nanoTime() - start).as("upload still not done").isLessThan(60_000_000_000L);
            Thread.onSpinWait();
        }
        return (System.nanoTime() - start) / 1_000_000;
    }

    @Test
    void uploadedWeightsEqualTheirSourcesAndTheCopyEndsWhileTheComputeStreamIsBusy() {
        try (CudaBackend gpu = new CudaBackend()) {
            List<TensorData> weights = List.of(
                    random("A bf16", DType.BF16, 16, 4096, 1),
                    random("B f32", DType.F32, 4096, 16, 2),
                    random("B f16", DType.F16, 11008, 16, 3),
                    random("odd f32", DType.F32, 3, 1001, 4),
                    random("row bf16", DType.BF16, 1, 77, 5),
                    random("big bf16 (crosses staging buffers)", DType.BF16, 4096, 4096, 6),
                    random("big f32", DType.F32, 2048, 2050, 7));
            // Enough compute for about a second: 1200 GEMMs of 16384×4096×4096.
            int m = 16384;
            Tensor x = gpu.allocate(m, 4096);
            Tensor out = gpu.allocate(m, 4096);
            Tensor w = gpu.loadWeight(random("w", DType.BF16, 4096, 4096, 8));
            gpu.synchronize();

            long start = System.nanoTime();
            WeightUpload upload = gpu.loadWeightsAsync(weights);
            long submitMicros = (System.nanoTime() - start) / 1000;
            for (int i = 0; i < 1200; i++) {
                gpu.matmul(x, w, null, out);
            }
            long waited = awaitMillis(upload);
            boolean computeBusy = !gpu.computeStreamIdle();
            System.out.printf("CHECK upload %d tensors (%.1f MB bf16): submit %d us, done after %d ms, compute stream"
                            + " still busy then: %s%n", weights.size(),
                    weights.stream().mapToLong(t -> t.elementCount() * 2).sum() / 1e6, submitMicros, waited,
                    computeBusy);
            assertThat(computeBusy).as("the copy overlapped the GEMMs (they were still running when it ended)").isTrue();
            gpu.synchronize();

            for (int i = 0; i < weights.size(); i++) {
                TensorData src = weights.get(i);
                Tensor t = upload.tensors().get(i);
                int[] shape = src.matrixShape("test");
                assertThat(t.rows()).isEqualTo(shape[0]);
                assertThat(t.cols()).isEqualTo(shape[1]);
                assertSameValues(src.name(), download(gpu, t), asBf16(src));
                System.out.printf("CHECK upload %-40s %s exact ok%n", src.name(), src.dtype());
            }
            upload.close();
            upload.close(); // twice does nothing
            gpu.free(x);
            gpu.free(out);
            gpu.free(w);
        }
    }

    @Test
    void anAbandonedCopyNeverWritesIntoTheBlockItGaveBack() {
        try (CudaBackend gpu = new CudaBackend()) {
            List<TensorData> first = List.of(random("first big", DType.BF16, 4096, 4096, 11),
                    random("first f32", DType.F32, 2048, 4096, 12));
            List<TensorData> second = List.of(random("second big", DType.BF16, 4096, 4096, 21),
                    random("second f32", DType.F32, 2048, 4096, 22));
            for (int round = 0; round < 3; round++) {
                WeightUpload abandoned = gpu.loadWeightsAsync(first);
                abandoned.close(); // at once: most of the copy has not happened yet
                long reused = gpu.allocatorStats().reusedBlocks();
                long fresh = gpu.allocatorStats().driverAllocations();
                WeightUpload kept = gpu.loadWeightsAsync(second);
                assertThat(gpu.allocatorStats().reusedBlocks()).as("the abandoned block is taken again").isEqualTo(reused + 1);
                assertThat(gpu.allocatorStats().driverAllocations()).isEqualTo(fresh);
                awaitMillis(kept);
                // Stragglers of the abandoned copy would land after `kept` completed: look after a pause too.
                gpu.synchronize();
                for (int i = 0; i < second.size(); i++) {
                    assertSameValues("round " + round + " " + second.get(i).name(), download(gpu, kept.tensors().get(i)),
                            asBf16(second.get(i)));
                }
                kept.close();
            }
            System.out.println("CHECK upload abandoned copies x3: reused block holds only the new weights ok");
        }
    }

    @Test
    void adaptersComingAndGoingWhileStepsRunAreExactOnTheDeviceAndReuseFreedMemory() throws Exception {
        Map<String, java.nio.file.Path> dirs = Map.of("upper", Fixtures.adapter("upper"), "reverse",
                Fixtures.adapter("reverse"), "translate", Fixtures.adapter("translate"), "sort", Fixtures.adapter("sort"));
        EngineBuilder builder = new EngineBuilder().model(Fixtures.model()).backend("cuda")
                .config(EngineConfig.builder().loraSlots(2).build());
        dirs.forEach(builder::adapter);
        try (var runtime = builder.build()) {
            CudaBackend gpu = (CudaBackend) runtime.backend();
            var engine = runtime.engine();
            AdapterManager adapters = runtime.adapters();
            Map<String, LoraAdapter> files = new HashMap<>();
            dirs.forEach((name, dir) -> files.put(name, LoraAdapter.load(name, dir, runtime.modelConfig())));
            int[] prompt = runtime.tokenizer().encode("input: red apple stone\noutput:", true);

            // One long request keeps steps running with "upper" in one slot; the others take turns in the
            // second slot, each copy overlapping the long request's steps.
            SamplingParams longRun = SamplingParams.builder().temperature(0).maxTokens(900).ignoreEos(true).build();
            CompletableFuture<Completion> background = engine.generate(new GenerationRequest("bg", "upper", prompt, longRun));
            String[] order = {"reverse", "translate", "sort"};
            Map<String, String> firstText = new HashMap<>();
            long reusedBefore = 0;
            long freshBefore = 0;
            long loadsBefore = 0;
            int checkedSlots = 0;
            int roundsWithSteps = 0;
            for (int round = 0; round < 4; round++) {
                if (round == 1) {
                    reusedBefore = gpu.allocatorStats().reusedBlocks();
                    freshBefore = gpu.allocatorStats().driverAllocations();
                    loadsBefore = adapters.loadCount();
                }
                for (String name : order) {
                    Completion c = engine.generate(new GenerationRequest(name + round, name, prompt,
                            SamplingParams.greedy(16))).join();
                    firstText.putIfAbsent(name, c.text());
                    assertThat(c.text()).as("%s in round %d", name, round).isEqualTo(firstText.get(name));
                    checkedSlots += engine.callOnEngineThread(() -> checkResidentWeights(gpu, runtime.model(), adapters,
                            files));
                }
                roundsWithSteps += background.isDone() ? 0 : 1;
            }
            assertThat(firstText.get("reverse").strip()).isEqualTo("stone apple red");
            long reused = gpu.allocatorStats().reusedBlocks() - reusedBefore;
            long fresh = gpu.allocatorStats().driverAllocations() - freshBefore;
            long loads = adapters.loadCount() - loadsBefore;
            System.out.printf("CHECK upload engine: %d slot checks exact; rounds 2-4: %d adapter loads, %d blocks reused,"
                            + " %d cuMemAlloc, %d KiB on free lists; background request still running after %d of 4"
                            + " rounds%n", checkedSlots, loads, reused, fresh, gpu.allocatorStats().freeBlockBytes() >> 10, roundsWithSteps);
            // Every adapter was in a slot in round 1 and left it since: each later load finds its own block
            // (the four adapters' blocks all differ in size) on the free list.
            assertThat(loads).as("adapters kept coming and going").isGreaterThanOrEqualTo(3);
            assertThat(reused).as("later loads reuse freed blocks").isGreaterThanOrEqualTo(loads);
        }
    }

    /** On the engine thread: every ready adapter's A and B on the device equal its files, bf16-rounded. */
    static int checkResidentWeights(CudaBackend gpu, ai.punica.model.LlamaModel model, AdapterManager adapters,
                                    Map<String, LoraAdapter> files) {
        int checked = 0;
        for (String name : new ArrayList<>(adapters.residentAdapters().keySet())) {
            int slot = ((Acquisition.Ready) adapters.acquire(name)).slot();
            try {
                LoraAdapter file = files.get(name);
                for (int l = 0; l < model.config().numLayers(); l++) {
                    for (Projection p : Projection.values()) {
                        LoraWeights w = model.loraWeights(l, p);
                        if (!file.adapts(l, p)) {
                            assertThat(w.present(slot)).as("%s layer %d %s", name, l, p).isFalse();
                            continue;
                        }
                        assertThat(w.rank()[slot]).isEqualTo(file.rank(l, p));
                        assertThat(w.scale()[slot]).isEqualTo(file.scale(l, p));
                        assertSameValues(name + " layer " + l + " " + p + " A", download(gpu, w.a()[slot]),
                                asBf16(file.loraA(l, p)));
                        assertSameValues(name + " layer " + l + " " + p + " B", download(gpu, w.b()[slot]),
                                asBf16(file.loraB(l, p)));
                    }
                }
                checked++;
            } finally {
                adapters.release(slot);
            }
        }
        return checked;
    }
}
