package ai.punica.backend.cuda;

import static ai.punica.backend.cuda.GpuChecks.random;
import static ai.punica.backend.cuda.GpuChecks.relativeError;
import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.backend.LoraWeights;
import ai.punica.backend.PinnedHostMemory;
import ai.punica.backend.Segments;
import ai.punica.backend.Tensor;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightBlockLayout;
import ai.punica.backend.WeightUpload;
import ai.punica.lora.LoraAdapter;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Adapters read into the backend's page-locked memory ({@link PinnedHostBlocks}) and copied to a slot's block in
 * one direct {@code cuMemcpyHtoDAsync} ({@link UploadPlan}, {@link AsyncWeightLoads}), no staging:
 * <ul>
 *   <li>the four fixture adapters load pinned, each upload takes the direct path, the device holds exactly the
 *       file's values, and the LoRA add-on (shrink + expand) of every adapted projection computed on the device
 *       from them matches {@link ai.punica.backend.reference.ReferenceBackend} on the adapter's ordinary copy
 *       (‖gpu − ref‖ / ‖ref‖ ≤ 1e-2, bf16 activations, as {@code CudaSgmvTest});</li>
 *   <li>an 80 MB block (the size of a rank-16 all-projection Llama-2-7B adapter, 448 weights) goes in one copy;
 *       the time is printed (the ≤ 2 ms target of issue 13 is the bench's to report, not asserted here), and
 *       the values are exact;</li>
 *   <li>a direct copy closed before it ends leaves the host block safe to reuse at once.</li>
 * </ul>
 * Prints "CHECK pinned ..." lines.
 */
@Tag("gpu")
class CudaPinnedAdapterTest extends GpuBackendTest {
    static final double TOL = 1e-2;

    static long awaitNanos(WeightUpload upload) {
        long start = System.nanoTime();
        while (!upload.isDone()) {
            assertThat(System.nanoTime() - start).as("upload still not done").isLessThan(60_000_000_000L);
            Thread.onSpinWait();
        }
        return System.nanoTime() - start;
    }

    @Test
    void fixtureAdaptersLoadPinnedUploadDirectlyAndComputeTheReferenceAddOn() {
        ModelConfig config = ModelConfig.load(Fixtures.model().resolve("config.json"));
        PinnedHostMemory pinned = gpu.pinnedHostMemory().orElseThrow();
        for (String name : List.of("upper", "reverse", "translate", "sort")) {
            try (LoraAdapter host = LoraAdapter.load(name, Fixtures.adapter(name), config, pinned);
                 LoraAdapter plain = LoraAdapter.load(name, Fixtures.adapter(name), config)) {
                assertThat(host.pinned()).as("%s in page-locked memory", name).isTrue();
                long direct = gpu.uploadStats().direct();
                long staged = gpu.uploadStats().staged();
                List<TensorData> weights = host.weightsInSlotOrder();
                try (WeightUpload upload = gpu.loadWeightsAsync(weights)) {
                    long nanos = awaitNanos(upload);
                    assertThat(gpu.uploadStats().direct()).as("direct path").isEqualTo(direct + 1);
                    assertThat(gpu.uploadStats().staged()).isEqualTo(staged);
                    int i = 0;
                    int projections = 0;
                    double worst = 0;
                    for (int l = 0; l < config.numLayers(); l++) {
                        for (Projection p : Projection.values()) {
                            if (!host.adapts(l, p)) {
                                continue;
                            }
                            Tensor a = upload.tensors().get(i++);
                            Tensor b = upload.tensors().get(i++);
                            CudaAdapterUploadTest.assertSameValues(name + " " + l + " " + p + " A",
                                    CudaAdapterUploadTest.download(gpu, a), CudaAdapterUploadTest.asBf16(plain.loraA(l, p)));
                            CudaAdapterUploadTest.assertSameValues(name + " " + l + " " + p + " B",
                                    CudaAdapterUploadTest.download(gpu, b), CudaAdapterUploadTest.asBf16(plain.loraB(l, p)));
                            worst = Math.max(worst, addOnError(config, plain, l, p, a, b, 31L * l + p.ordinal()));
                            projections++;
                        }
                    }
                    System.out.printf("CHECK pinned %-10s %3d projections, %.2f MB in one direct upload, done after "
                            + "%.3f ms; add-on vs reference: worst relErr %.2e (tol %.0e) %s%n", name, projections,
                            host.sizeBytes() / 1e6, nanos / 1e6, worst, TOL, worst <= TOL ? "ok" : "FAIL");
                    assertThat(worst).isLessThanOrEqualTo(TOL);
                }
            }
        }
    }

    /**
     * ‖gpu − ref‖ / ‖ref‖ of {@code y = scale · (x · Aᵀ) · Bᵀ} for 5 rows: on the device from the uploaded A and B
     * (slot 1 of 2, slot 0 empty), on the reference backend from the adapter's ordinary copy.
     */
    private static double addOnError(ModelConfig config, LoraAdapter plain, int layer, Projection p, Tensor a,
                                     Tensor b, long seed) {
        int rows = 5;
        int in = p.inFeatures(config);
        int out = p.outFeatures(config);
        int rank = plain.rank(layer, p);
        float scale = plain.scale(layer, p);
        float[] x = random(new SplittableRandom(seed), rows * in, 1.0);
        for (int i = 0; i < x.length; i++) {
            x[i] = DType.bf16ToFloat(DType.floatToBf16(x[i])); // both backends see the same inputs
        }
        Segments segments = new Segments(new int[] {0, rows}, new int[] {1});
        LoraWeights gw = LoraWeights.empty(2);
        gw.a()[1] = a;
        gw.b()[1] = b;
        gw.rank()[1] = rank;
        gw.scale()[1] = scale;
        LoraWeights rw = LoraWeights.empty(2);
        rw.a()[1] = ref.loadWeight(plain.loraA(layer, p));
        rw.b()[1] = ref.loadWeight(plain.loraB(layer, p));
        rw.rank()[1] = rank;
        rw.scale()[1] = scale;
        float[] want = run(ref, x, rows, in, out, rank, rw, segments);
        float[] got = run(gpu, x, rows, in, out, rank, gw, segments);
        ref.free(rw.a()[1]);
        ref.free(rw.b()[1]);
        return relativeError(got, want);
    }

    private static float[] run(ai.punica.backend.Backend backend, float[] x, int rows, int in, int out, int rank,
                               LoraWeights w, Segments segments) {
        Tensor xt = backend.allocate(rows, in);
        Tensor v = backend.allocate(rows, rank);
        Tensor y = backend.allocate(rows, out);
        try {
            backend.upload(x, xt);
            backend.upload(new float[rows * out], y);
            backend.sgmvShrink(xt, w, segments, v);
            backend.sgmvExpand(v, w, segments, y, 0);
            float[] result = new float[rows * out];
            backend.download(y, result);
            return result;
        } finally {
            backend.free(xt);
            backend.free(v);
            backend.free(y);
        }
    }

    /** The 448 weights of a rank-16 adapter on all seven projections of Llama-2-7B: 32 layers × 7 × (A, B). */
    static int[][] llama7bRank16Shapes() {
        int hidden = 4096;
        int inter = 11008;
        int r = 16;
        int[][] perLayer = {{r, hidden}, {hidden, r}, {r, hidden}, {hidden, r}, {r, hidden}, {hidden, r},
                {r, hidden}, {hidden, r}, {r, hidden}, {inter, r}, {r, hidden}, {inter, r}, {r, inter}, {hidden, r}};
        int[][] all = new int[32 * perLayer.length][];
        for (int l = 0; l < 32; l++) {
            System.arraycopy(perLayer, 0, all, l * perLayer.length, perLayer.length);
        }
        return all;
    }

    @Test
    void anEightyMegabyteAdapterBlockGoesInOneCopyWithExactValues() {
        uploadEightyMegabytes(gpu, "pinned");
    }

    private static void uploadEightyMegabytes(CudaBackend backend, String label) {
        int[][] shapes = llama7bRank16Shapes();
        PinnedHostMemory pinned = backend.pinnedHostMemory().orElseThrow();
        List<TensorData> shapeOnly = new ArrayList<>();
        for (int[] s : shapes) {
            shapeOnly.add(new TensorData("s", DType.BF16, new long[] {s[0], s[1]}, MemorySegment.NULL));
        }
        WeightBlockLayout layout = WeightBlockLayout.of(shapeOnly, DType.BF16, pinned.alignment());
        ValueLayout.OfShort bf16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        try (Arena arena = Arena.ofShared()) {
            MemorySegment block = pinned.allocate(layout.bytes(), arena);
            assertThat(block).as("page-locked memory for 80 MB").isNotNull();
            SplittableRandom rng = new SplittableRandom(5);
            List<TensorData> weights = new ArrayList<>();
            for (int i = 0; i < shapes.length; i++) {
                long n = (long) shapes[i][0] * shapes[i][1];
                MemorySegment at = block.asSlice(layout.offset(i), n * 2);
                for (long e = 0; e < n; e++) {
                    at.set(bf16, 2 * e, DType.floatToBf16((float) rng.nextDouble(-1, 1)));
                }
                weights.add(new TensorData("w" + i, DType.BF16, new long[] {shapes[i][0], shapes[i][1]}, at));
            }
            long[] times = new long[10];
            for (int round = 0; round < times.length; round++) {
                long direct = backend.uploadStats().direct();
                long start = System.nanoTime();
                try (WeightUpload upload = backend.loadWeightsAsync(weights)) {
                    while (!upload.isDone()) {
                        Thread.onSpinWait();
                    }
                    times[round] = System.nanoTime() - start;
                    assertThat(backend.uploadStats().direct()).isEqualTo(direct + 1);
                    if (round == times.length - 1) {
                        for (int i : new int[] {0, 1, 12, 13, 447}) {
                            float[] want = weights.get(i).toFloatArray();
                            CudaAdapterUploadTest.assertSameValues("w" + i,
                                    CudaAdapterUploadTest.download(backend, upload.tensors().get(i)), want);
                        }
                    }
                }
            }
            long[] sorted = times.clone();
            Arrays.sort(sorted);
            System.out.printf("CHECK %s 80 MB block (%.2f MB, 448 weights): host -> device p50 %.3f ms, min %.3f,"
                            + " max %.3f (%.1f GB/s at p50; target <= 2 ms)%n", label, layout.bytes() / 1e6,
                    sorted[sorted.length / 2] / 1e6, sorted[0] / 1e6, sorted[sorted.length - 1] / 1e6,
                    layout.bytes() / (sorted[sorted.length / 2] / 1e9) / 1e9);
        }
    }

    @Test
    void aDirectCopyClosedBeforeItEndsLeavesItsHostBlockFreeToReuse() {
        PinnedHostMemory pinned = gpu.pinnedHostMemory().orElseThrow();
        long bytes = 64L << 20;
        long before = gpu.pinnedHostStats().driverAllocations();
        for (int round = 0; round < 3; round++) {
            Arena arena = Arena.ofShared();
            MemorySegment block = pinned.allocate(bytes, arena);
            block.fill((byte) (round + 1));
            TensorData w = new TensorData("big", DType.BF16, new long[] {8192, (bytes / 2) / 8192}, block);
            WeightUpload upload = gpu.loadWeightsAsync(List.of(w));
            upload.close(); // at once: the copy is still reading the host block; close waits for it
            arena.close(); // the block goes back to the pool and is handed out again next round
            assertThat(gpu.pinnedHostStats().liveBytes()).isZero();
        }
        assertThat(gpu.pinnedHostStats().driverAllocations() - before).as("one block, reused").isEqualTo(1);
        assertThat(gpu.pinnedHostStats().reused()).isGreaterThanOrEqualTo(2);
        System.out.println("CHECK pinned abandoned direct copies x3: host block reused ok");
    }
}
