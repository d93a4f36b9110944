package ai.punica.backend.cuda;

import ai.punica.backend.SamplingBatch;
import ai.punica.backend.SamplingRow;
import ai.punica.backend.Tensor;
import java.util.SplittableRandom;

/**
 * Device time of {@code CudaBackend.sample} for a decode batch (1 and 64 rows) at Llama-2 and Llama-3
 * vocabularies: greedy, top-p, and everything at once (top-k, top-p, min-p, penalties, 20 log-probabilities).
 * Seeded random logits as in {@link CudaSamplingTest}; 20 calls timed by events after one warm-up call.
 * Run: {@code bash .device-bundle/device-run bench ai.punica.backend.cuda.SamplingBench}.
 */
public final class SamplingBench {
    private static final int REPS = 20;

    private SamplingBench() {
    }

    public static void main(String[] args) {
        SplittableRandom random = new SplittableRandom(5);
        try (CudaBackend gpu = new CudaBackend()) {
            System.out.println("device " + gpu.deviceDescription());
            String[] names = {"greedy", "top-p 0.9", "top-k 50 + top-p 0.9 + min-p + penalties + 20 logprobs"};
            for (int vocab : new int[] {32000, 128256}) {
                for (int rows : new int[] {1, 64}) {
                    float[] logits = new float[rows * vocab];
                    for (int r = 0; r < rows; r++) {
                        CudaSamplingTest.randomRow(random, logits, r * vocab, vocab, false);
                    }
                    Tensor g = gpu.allocateLogits(rows, vocab); // float32, as the model's logits
                    gpu.upload(logits, g);
                    for (int mode = 0; mode < names.length; mode++) {
                        SamplingBatch batch = batch(random, mode, rows, vocab);
                        gpu.sample(g, batch); // warm-up
                        float ms = gpu.timeMillis(() -> {
                            for (int i = 0; i < REPS; i++) {
                                gpu.sample(g, batch);
                            }
                        });
                        System.out.printf("BENCH sampling vocab %d rows %d %s: %.3f ms per step%n", vocab, rows,
                                names[mode], ms / REPS);
                    }
                    gpu.free(g);
                }
            }
        }
    }

    private static SamplingBatch batch(SplittableRandom random, int mode, int rows, int vocab) {
        SamplingBatch.Builder builder = SamplingBatch.builder();
        for (int r = 0; r < rows; r++) {
            builder.row(switch (mode) {
                case 0 -> SamplingRow.GREEDY;
                case 1 -> new SamplingRow(1f, 0, 0.9f, 0f, 1f, 0f, 0f, random.nextDouble(), -1);
                default -> new SamplingRow(0.8f, 50, 0.9f, 0.05f, 1.1f, 0.5f, 0.2f, random.nextDouble(), 20);
            });
            if (mode == 2) {
                CudaSamplingTest.randomPenalties(random, builder, vocab);
            }
        }
        return builder.build();
    }
}
