package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.backend.Backend;
import ai.punica.backend.Backends;
import ai.punica.backend.StepRecorder;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/**
 * Decode steps on a backend with a step recorder are padded to a batch-size bucket (extra one-token
 * sequences in a KV page of their own, no adapter). The padding must not change any real row: the same
 * decode steps on the CPU backend with and without padding give the same logits. The recorder here runs
 * each step directly, so what is tested is the padding; CUDA graph replay itself is tested on the GPU.
 */
class DecodePaddingTest {

    /** The CPU backend, answering {@link Backend#stepRecorder()} with a recorder that runs every step as is. */
    private static Backend withPassThroughRecorder(Backend inner, List<Object> keys) {
        StepRecorder recorder = new StepRecorder() {
            @Override
            public void run(Object key, Runnable step) {
                keys.add(key);
                step.run();
            }

            @Override
            public void clear() {
            }

            @Override
            public int recordings() {
                return 0;
            }

            @Override
            public long replays() {
                return 0;
            }

            @Override
            public long records() {
                return 0;
            }
        };
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                (proxy, method, args) -> {
                    if (method.getName().equals("stepRecorder")) {
                        return recorder;
                    }
                    try {
                        return method.invoke(inner, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
    }

    @Test
    void paddedDecodeStepsGiveTheSameLogitsAsUnpaddedOnes() {
        List<Object> keys = new ArrayList<>();
        try (Backend plainBackend = Backends.create("cpu");
             Backend paddingBackend = Backends.create("cpu");
             DecodeStepFixture.Runner plain = new DecodeStepFixture.Runner(plainBackend);
             DecodeStepFixture.Runner padded = new DecodeStepFixture.Runner(withPassThroughRecorder(paddingBackend, keys))) {
            SplittableRandom random = new SplittableRandom(7);
            int vocab = plain.model.config().vocabSize();
            // Each sequence owns pages 8s .. 8s+7 (a 128-token context).
            int[] lengths = new int[DecodeStepFixture.SEQUENCES];
            int[][] contexts = new int[DecodeStepFixture.SEQUENCES][128];
            for (int s = 0; s < DecodeStepFixture.SEQUENCES; s++) {
                lengths[s] = 5 + random.nextInt(30);
                for (int t = 0; t < lengths[s]; t++) {
                    contexts[s][t] = random.nextInt(vocab);
                }
            }
            // Prefill all sequences but their last token (not a decode step: never padded).
            int[] all = {0, 1, 2, 3, 4, 5, 6};
            float[] a = plain.forward(DecodeStepFixture.step(all, lengths, contexts, plain.slots, true)).clone();
            float[] b = padded.forward(DecodeStepFixture.step(all, lengths, contexts, padded.slots, true));
            assertClose(a, b, all.length * vocab);
            assertThat(keys).isEmpty();
            // Decode steps of 7, 5, 3, 2 and 1 sequences (buckets 8, 8, 4, 2, 1), each appending one token.
            int[][] subsets = {all, {0, 2, 3, 5, 6}, {1, 4, 6}, {2, 3}, {5}, all};
            for (int[] subset : subsets) {
                for (int s : subset) {
                    contexts[s][lengths[s]] = random.nextInt(vocab);
                    lengths[s]++;
                }
                a = plain.forward(DecodeStepFixture.step(subset, lengths, contexts, plain.slots, false)).clone();
                b = padded.forward(DecodeStepFixture.step(subset, lengths, contexts, padded.slots, false));
                assertClose(a, b, subset.length * vocab);
            }
            assertThat(keys).hasSize(subsets.length);
            assertThat(keys.get(0).toString()).contains("rows=8");
            assertThat(keys.get(2).toString()).contains("rows=4");
            assertThat(keys.get(4).toString()).contains("rows=1");
        }
    }

    private static void assertClose(float[] expected, float[] actual, int count) {
        double worst = 0;
        for (int i = 0; i < count; i++) {
            worst = Math.max(worst, Math.abs(expected[i] - actual[i]));
        }
        assertThat(worst).as("largest logit difference").isLessThanOrEqualTo(1e-4);
    }
}
