package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.backend.PinnedHostMemory;
import ai.punica.backend.TensorData;
import ai.punica.backend.WeightBlockLayout;
import ai.punica.model.ModelConfig;
import ai.punica.model.SafeTensors;
import ai.punica.model.SafeTensorsWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Adapters read into a backend's pinned memory ({@link LoraAdapter#load(String, Path, ModelConfig, PinnedHostMemory)}):
 * one block in the device's layout, so that the upload is one copy. The pinned memory here is ordinary native
 * memory handed out the way the CUDA backend hands out page-locked blocks (one block per adapter, given back when the
 * adapter closes, or none at all); what is checked is the layout, the values and who owns the block.
 */
class PinnedAdapterLoadTest {
    private static final ModelConfig BASE = ModelConfig.load(Fixtures.model().resolve("config.json"));

    /** Blocks of native memory with the CUDA backend's layout (bf16, 256-byte alignment); refuses all when asked. */
    static final class NativeBlocks implements PinnedHostMemory {
        final boolean refuse;
        int handedOut;
        int givenBack;
        MemorySegment last;

        NativeBlocks(boolean refuse) {
            this.refuse = refuse;
        }

        @Override
        public DType dtype() {
            return DType.BF16;
        }

        @Override
        public long alignment() {
            return 256;
        }

        int refused;
        long liveBytes;

        @Override
        public synchronized Stats stats() {
            return new Stats(handedOut, 0, refused, liveBytes, 0);
        }

        @Override
        public synchronized MemorySegment allocate(long bytes, Arena arena) {
            if (refuse) {
                refused++;
                return null;
            }
            Arena own = Arena.ofShared();
            MemorySegment block = own.allocate(bytes, 4096);
            handedOut++;
            liveBytes += bytes;
            last = block;
            return block.reinterpret(bytes, arena, s -> {
                synchronized (this) {
                    givenBack++;
                    liveBytes -= bytes;
                }
                own.close();
            });
        }
    }

    @Test
    void aBf16AdapterIsReadStraightIntoOneBlockInTheDeviceLayout(@TempDir Path tmp) {
        Path dir = RandomFixtureAdapters.write(tmp.resolve("r"), 7);
        NativeBlocks blocks = new NativeBlocks(false);
        try (LoraAdapter plain = LoraAdapter.load("r", dir, BASE);
             LoraAdapter pinned = LoraAdapter.load("r", dir, BASE, blocks)) {
            assertThat(plain.pinned()).isFalse();
            assertThat(pinned.pinned()).isTrue();
            assertThat(blocks.handedOut).isEqualTo(1);
            List<TensorData> weights = pinned.weightsInSlotOrder();
            WeightBlockLayout layout = WeightBlockLayout.of(weights, DType.BF16, 256);
            assertThat(pinned.sizeBytes()).as("the host tier counts the whole block").isEqualTo(layout.bytes());
            long base = blocks.last.address();
            List<TensorData> expected = plain.weightsInSlotOrder();
            for (int i = 0; i < weights.size(); i++) {
                TensorData w = weights.get(i);
                assertThat(w.data().address() - base).as("%s at its layout offset", w.name()).isEqualTo(layout.offset(i));
                assertThat(w.dtype()).isEqualTo(DType.BF16);
                assertThat(w.shape()).isEqualTo(expected.get(i).shape());
                assertThat(w.data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE))
                        .as("%s read from the file byte for byte", w.name())
                        .isEqualTo(expected.get(i).data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
            assertThat(pinned.rank(0, ai.punica.model.Projection.Q_PROJ)).isEqualTo(plain.rank(0, ai.punica.model.Projection.Q_PROJ));
            assertThat(pinned.scale(0, ai.punica.model.Projection.V_PROJ)).isEqualTo(plain.scale(0, ai.punica.model.Projection.V_PROJ));
        }
        assertThat(blocks.givenBack).as("closing the adapter gives its block back").isEqualTo(1);
    }

    @Test
    void anF32AdapterIsConvertedToTheDeviceDtypeInItsBlock(@TempDir Path tmp) throws Exception {
        Path dir = writeF32Adapter(tmp.resolve("f32"));
        NativeBlocks blocks = new NativeBlocks(false);
        try (LoraAdapter plain = LoraAdapter.load("f", dir, BASE);
             LoraAdapter pinned = LoraAdapter.load("f", dir, BASE, blocks)) {
            List<TensorData> got = pinned.weightsInSlotOrder();
            List<TensorData> want = plain.weightsInSlotOrder();
            assertThat(want.getFirst().dtype()).isEqualTo(DType.F32);
            for (int i = 0; i < got.size(); i++) {
                assertThat(got.get(i).dtype()).isEqualTo(DType.BF16);
                for (long e = 0; e < want.get(i).elementCount(); e++) {
                    float rounded = DType.bf16ToFloat(DType.floatToBf16(want.get(i).getFloat(e)));
                    assertThat(got.get(i).getFloat(e)).as("%s[%d]", want.get(i).name(), e).isEqualTo(rounded);
                }
            }
            assertThat(pinned.sizeBytes()).isEqualTo(WeightBlockLayout.of(got, DType.BF16, 256).bytes());
        }
        assertThat(blocks.givenBack).isEqualTo(1);
    }

    @Test
    void whenNoPinnedBlockCanBeHadTheAdapterLoadsIntoOrdinaryMemory(@TempDir Path tmp) {
        Path dir = RandomFixtureAdapters.write(tmp.resolve("r"), 8);
        try (LoraAdapter plain = LoraAdapter.load("r", dir, BASE);
             LoraAdapter fallback = LoraAdapter.load("r", dir, BASE, new NativeBlocks(true))) {
            assertThat(fallback.pinned()).isFalse();
            assertThat(fallback.sizeBytes()).isEqualTo(plain.sizeBytes());
            assertThat(fallback.loraA(3, ai.punica.model.Projection.Q_PROJ).toFloatArray())
                    .isEqualTo(plain.loraA(3, ai.punica.model.Projection.Q_PROJ).toFloatArray());
        }
    }

    @Test
    void layoutsPlaceEachWeightAtTheNextAlignedOffset() {
        List<TensorData> weights = List.of(
                TensorData.of("a", DType.F32, 1, 3, new float[] {1, 2, 3}), // 6 bytes as bf16
                TensorData.of("b", DType.BF16, 2, 128, new float[256]), // 512 bytes: exactly two units
                TensorData.of("c", DType.F16, 1, 1, new float[] {1})); // 2 bytes
        WeightBlockLayout l = WeightBlockLayout.of(weights, DType.BF16, 256);
        assertThat(l.offsets()).containsExactly(0, 256, 768);
        assertThat(l.bytes()).isEqualTo(1024);
        assertThat(WeightBlockLayout.of(weights, DType.F32, 64).offsets()).containsExactly(0, 64, 1088);
        assertThat(WeightBlockLayout.of(List.of(), DType.BF16, 256).bytes()).isZero();
    }

    @Test
    void aTensorsFileOffsetPointsAtItsBytes(@TempDir Path tmp) throws Exception {
        Path dir = RandomFixtureAdapters.write(tmp.resolve("r"), 9);
        Path file = dir.resolve(LoraAdapter.WEIGHTS_FILE);
        byte[] all = Files.readAllBytes(file);
        try (SafeTensors st = SafeTensors.open(file)) {
            for (String name : st.names()) {
                byte[] mapped = st.get(name).data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
                int at = Math.toIntExact(st.fileOffset(name));
                assertThat(java.util.Arrays.copyOfRange(all, at, at + mapped.length)).as(name).isEqualTo(mapped);
            }
            assertThat(st.fileOffset("no such tensor")).isEqualTo(-1);
        }
    }

    /** q_proj and v_proj of every layer at rank 2, stored as F32. */
    private static Path writeF32Adapter(Path dir) throws Exception {
        SplittableRandom random = new SplittableRandom(3);
        SafeTensorsWriter writer = new SafeTensorsWriter();
        int hidden = BASE.hiddenSize();
        int q = BASE.numHeads() * BASE.headDim();
        int kv = BASE.numKvHeads() * BASE.headDim();
        for (int layer = 0; layer < BASE.numLayers(); layer++) {
            String prefix = "base_model.model.model.layers." + layer + ".self_attn.";
            writer.add(prefix + "q_proj.lora_A.weight", DType.F32, new long[] {2, hidden}, values(random, 2 * hidden));
            writer.add(prefix + "q_proj.lora_B.weight", DType.F32, new long[] {q, 2}, values(random, 2 * q));
            writer.add(prefix + "v_proj.lora_A.weight", DType.F32, new long[] {2, hidden}, values(random, 2 * hidden));
            writer.add(prefix + "v_proj.lora_B.weight", DType.F32, new long[] {kv, 2}, values(random, 2 * kv));
        }
        Files.createDirectories(dir);
        Files.writeString(dir.resolve(LoraAdapter.CONFIG_FILE), """
                {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"],
                 "bias": "none", "task_type": "CAUSAL_LM"}
                """);
        writer.write(dir.resolve(LoraAdapter.WEIGHTS_FILE));
        return dir;
    }

    private static float[] values(SplittableRandom random, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) random.nextDouble(-1, 1) + 1e-4f; // digits below bf16's precision: rounding shows
        }
        return v;
    }
}
