package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightBlockLayout;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The copy planning of direct uploads ({@link UploadPlan}), on the CPU: "pinned" ranges here are blocks of native
 * memory the test declares pinned, as {@link PinnedHostBlocks#contains} declares its page-locked blocks.
 */
class UploadPlanTest {

    /** Tensors of {@code shapes} (bf16) placed in {@code block} at the offsets of {@code layout}. */
    private static List<TensorData> placed(MemorySegment block, WeightBlockLayout layout, int[][] shapes, DType dtype) {
        List<TensorData> out = new ArrayList<>();
        for (int i = 0; i < shapes.length; i++) {
            long bytes = (long) shapes[i][0] * shapes[i][1] * dtype.byteSize();
            out.add(new TensorData("w" + i, dtype, new long[] {shapes[i][0], shapes[i][1]},
                    block.asSlice(layout.offset(i), bytes)));
        }
        return out;
    }

    private static final int[][] ADAPTER = {{16, 4096}, {4096, 16}, {16, 4096}, {1024, 16}, {16, 11008}, {11008, 16},
            {3, 5}, {7, 1}};

    private static List<TensorData> shapesOnly(int[][] shapes) {
        List<TensorData> out = new ArrayList<>();
        for (int[] s : shapes) {
            out.add(new TensorData("s", DType.BF16, new long[] {s[0], s[1]}, MemorySegment.NULL));
        }
        return out;
    }

    @Test
    void anAdapterInPinnedMemoryInTheDeviceLayoutIsOneCopyOfItsWholeBlock() {
        WeightBlockLayout layout = WeightBlockLayout.of(shapesOnly(ADAPTER), DType.BF16, DeviceAllocator.BLOCK_ALIGN);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment block = arena.allocate(layout.bytes(), 4096);
            List<TensorData> weights = placed(block, layout, ADAPTER, DType.BF16);
            UploadPlan plan = UploadPlan.direct(weights, layout.offsets(),
                    (a, n) -> a >= block.address() && a + n <= block.address() + block.byteSize());
            assertThat(plan).isNotNull();
            assertThat(plan.runs()).hasSize(1);
            UploadPlan.Run run = plan.runs().getFirst();
            assertThat(run.host()).isEqualTo(block.address());
            assertThat(run.deviceOffset()).isZero();
            long lastEnd = layout.offset(ADAPTER.length - 1) + 7 * 2;
            assertThat(run.bytes()).as("through the last weight's end, padding between weights included").isEqualTo(lastEnd);
        }
    }

    @Test
    void weightsWhoseHostGapsDifferFromTheDeviceLayoutSplitIntoRuns() {
        // Host layout with 64-byte alignment against the device's 256: weights line up only where both paddings agree.
        List<TensorData> shapes = shapesOnly(ADAPTER);
        WeightBlockLayout device = WeightBlockLayout.of(shapes, DType.BF16, 256);
        WeightBlockLayout host = WeightBlockLayout.of(shapes, DType.BF16, 64);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment block = arena.allocate(host.bytes(), 4096);
            List<TensorData> weights = placed(block, host, ADAPTER, DType.BF16);
            UploadPlan plan = UploadPlan.direct(weights, device.offsets(),
                    (a, n) -> a >= block.address() && a + n <= block.address() + block.byteSize());
            assertThat(plan).isNotNull();
            // Every weight's bytes land at its device offset, whatever the runs.
            long covered = 0;
            for (int i = 0; i < weights.size(); i++) {
                long host0 = weights.get(i).data().address();
                long bytes = weights.get(i).data().byteSize();
                boolean inARun = false;
                for (UploadPlan.Run r : plan.runs()) {
                    if (host0 >= r.host() && host0 + bytes <= r.host() + r.bytes()) {
                        assertThat(r.deviceOffset() + (host0 - r.host())).as("w%d's device offset", i)
                                .isEqualTo(device.offset(i));
                        inARun = true;
                    }
                }
                assertThat(inARun).as("w%d copied", i).isTrue();
                covered += bytes;
            }
            assertThat(plan.runs().size()).isBetween(2, weights.size());
            assertThat(plan.bytes()).isGreaterThanOrEqualTo(covered);
        }
    }

    @Test
    void twoPinnedBlocksAreNeverJoinedIntoOneCopy() {
        int[][] one = {{16, 64}};
        WeightBlockLayout layout = WeightBlockLayout.of(shapesOnly(new int[][] {{16, 64}, {16, 64}}), DType.BF16, 256);
        try (Arena arena = Arena.ofConfined()) {
            // One allocation split in two "pinned blocks" placed exactly as the device layout wants: still two runs.
            MemorySegment both = arena.allocate(layout.bytes(), 4096);
            MemorySegment first = both.asSlice(0, layout.offset(1));
            MemorySegment second = both.asSlice(layout.offset(1));
            List<TensorData> weights = List.of(
                    placed(first, WeightBlockLayout.of(shapesOnly(one), DType.BF16, 256), one, DType.BF16).getFirst(),
                    placed(second, WeightBlockLayout.of(shapesOnly(one), DType.BF16, 256), one, DType.BF16).getFirst());
            UploadPlan.PinnedRanges blocks = (a, n) -> inside(first, a, n) || inside(second, a, n);
            UploadPlan plan = UploadPlan.direct(weights, layout.offsets(), blocks);
            assertThat(plan.runs()).hasSize(2);
            assertThat(plan.runs().get(1).deviceOffset()).isEqualTo(layout.offset(1));
        }
    }

    @Test
    void weightsNotInPinnedMemoryOrNotBf16AreStaged() {
        WeightBlockLayout layout = WeightBlockLayout.of(shapesOnly(ADAPTER), DType.BF16, 256);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment block = arena.allocate(layout.bytes(), 4096);
            List<TensorData> weights = placed(block, layout, ADAPTER, DType.BF16);
            assertThat(UploadPlan.direct(weights, layout.offsets(), (a, n) -> false)).as("ordinary memory").isNull();
            // pinned except the last weight
            long lastStart = weights.getLast().data().address();
            assertThat(UploadPlan.direct(weights, layout.offsets(), (a, n) -> a + n <= lastStart)).isNull();
            List<TensorData> withF32 = new ArrayList<>(weights);
            TensorData f32 = TensorData.of("f32", DType.F32, 7, 1, new float[] {1, 2, 3, 4, 5, 6, 7});
            withF32.set(withF32.size() - 1, f32);
            assertThat(UploadPlan.direct(withF32, layout.offsets(), (a, n) -> true)).as("an f32 weight needs converting")
                    .isNull();
            List<TensorData> onHeap = List.of(TensorData.of("heap", DType.BF16, 1, 4, new float[] {1, 2, 3, 4}));
            assertThat(UploadPlan.direct(onHeap, new long[] {0}, (a, n) -> true)).as("heap memory").isNull();
            assertThat(UploadPlan.direct(List.of(), new long[0], (a, n) -> true)).isNull();
        }
    }

    private static boolean inside(MemorySegment s, long a, long n) {
        return a >= s.address() && a + n <= s.address() + s.byteSize();
    }
}
