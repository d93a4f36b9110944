package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.StepRecorder;
import ai.punica.model.DecodeStepFixture.Runner;
import ai.punica.model.DecodeStepFixture;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * Decode steps replayed from CUDA graphs against the same steps run kernel by kernel: a replay of a step
 * with the very same inputs as its recording gives bit-identical logits, and replays with new tokens,
 * positions and adapters (the same graph, new index data) match a model without graphs to bf16 accuracy.
 */
@Tag("gpu")
class CudaStepGraphTest {

    @Test
    void replayedDecodeStepsMatchEagerSteps() {
        GpuChecks.requireDevice();
        try (CudaBackend gpu = GpuChecks.open(o -> o.stepGraphs(true));
             CudaBackend eagerGpu = GpuChecks.open(o -> o.stepGraphs(false))) {
            Runner graphed = new Runner(gpu);
            Runner eager = new Runner(eagerGpu);
            assertThat(eagerGpu.stepRecorder()).isNull(); // graphs off: models on this backend run kernel by kernel
            StepRecorder recorder = gpu.stepRecorder();
            try {
                SplittableRandom random = new SplittableRandom(11);
                int vocab = graphed.model.config().vocabSize();
                int n = DecodeStepFixture.SEQUENCES;
                int[] lengths = new int[n];
                int[][] contexts = new int[n][128];
                for (int s = 0; s < n; s++) {
                    lengths[s] = 5 + random.nextInt(40);
                    for (int t = 0; t < lengths[s]; t++) {
                        contexts[s][t] = random.nextInt(vocab);
                    }
                }
                int[] all = {0, 1, 2, 3, 4, 5, 6};
                graphed.forward(DecodeStepFixture.step(all, lengths, contexts, graphed.slots, true));
                eager.forward(DecodeStepFixture.step(all, lengths, contexts, eager.slots, true));

                int[][] subsets = {all, {0, 2, 3, 5, 6}, {1, 4, 6}, {2, 3}, {5}, {0, 1}, {3, 4, 5, 6}, all, {6}};
                double worst = 0;
                for (int round = 0; round < 3; round++) {
                    for (int[] subset : subsets) {
                        for (int s : subset) {
                            contexts[s][lengths[s]] = random.nextInt(vocab);
                            lengths[s]++;
                        }
                        int count = subset.length * vocab;
                        float[] first = Arrays.copyOf(graphed.forward(
                                DecodeStepFixture.step(subset, lengths, contexts, graphed.slots, false)), count);
                        // The same step again (it rewrites the same KV slots with the same values): a replay.
                        long replaysBefore = recorder.replays();
                        float[] again = Arrays.copyOf(graphed.forward(
                                DecodeStepFixture.step(subset, lengths, contexts, graphed.slots, false)), count);
                        assertThat(recorder.replays()).as("the repeated step was replayed").isEqualTo(replaysBefore + 1);
                        assertThat(again).as("replay of an identical step").isEqualTo(first);
                        float[] reference = Arrays.copyOf(eager.forward(
                                DecodeStepFixture.step(subset, lengths, contexts, eager.slots, false)), count);
                        worst = Math.max(worst, GpuChecks.relativeError(first, reference));
                    }
                }
                System.out.printf("CHECK step graphs: %d recorded, %d replays, %d graphs kept; worst relative error"
                                + " vs eager %.3e (tol 2e-2)%n", recorder.records(), recorder.replays(),
                        recorder.recordings(), worst);
                assertThat(worst).isLessThanOrEqualTo(2e-2);
                // Every decode step was either recorded (once per bucket and adapter signature: buckets 8, 4,
                // 2, 1, and 2 again with no adapter) or replayed; none fell back to running eagerly.
                assertThat(recorder.records()).isBetween(4L, 6L);
                assertThat(recorder.records() + recorder.replays()).isEqualTo(3L * subsets.length * 2);
            } finally {
                graphed.close();
                eager.close();
            }
        }
    }
}
