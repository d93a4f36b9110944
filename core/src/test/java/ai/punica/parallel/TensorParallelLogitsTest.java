package ai.punica.parallel;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.HfReference;
import ai.punica.HfReference.Run;
import ai.punica.model.ModelHarness;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The fixture model (8 query heads, 2 KV heads, intermediate 704) split over 2 ranks (one KV head each) and
 * over 4 (each KV head replicated on two ranks), CPU backend per rank, in-memory all-reduce: the mixed
 * batch of the base model and all four adapters, run as one step, gives HF's logits within the tolerance
 * the whole model is held to ({@code ReferenceLogitsTest}), and the unsharded model's logits within the
 * same bound.
 */
class TensorParallelLogitsTest {
    /** ReferenceLogitsTest's: float32 over bf16 weights, only the summation order differs. */
    static final float TOLERANCE = 2e-3f;

    static Map<String, Path> adapters() {
        return Map.of("upper", Fixtures.adapter("upper"), "reverse", Fixtures.adapter("reverse"),
                "translate", Fixtures.adapter("translate"), "sort", Fixtures.adapter("sort"));
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 4})
    void shardedMixedAdapterBatchMatchesHfAndTheWholeModel(int ranks) {
        HfReference ref = HfReference.load();
        List<ModelHarness.Input> inputs = new ArrayList<>();
        for (Run run : ref.mixedBatch()) {
            inputs.add(new ModelHarness.Input(run.promptIds(), run.adapter()));
        }
        assertThat(inputs.stream().map(ModelHarness.Input::adapter).distinct().count())
                .as("the mixed batch covers the base and all four adapters").isEqualTo(5);
        float[][] whole;
        try (ModelHarness harness = new ModelHarness(Fixtures.model(), adapters(), "cpu")) {
            whole = harness.lastLogits(inputs);
        }
        try (ModelHarness harness = new ModelHarness(Fixtures.model(), adapters(), "cpu", ranks)) {
            float[][] sharded = harness.lastLogits(inputs);
            for (int i = 0; i < inputs.size(); i++) {
                Run run = ref.mixedBatch().get(i);
                String what = "TP=" + ranks + " row " + i + " " + run.promptName() + " / " + run.adapter();
                assertClose(sharded[i], run.lastLogits(), what + " vs HF");
                assertClose(sharded[i], whole[i], what + " vs the unsharded model");
            }
            // A second step on the same ranks (adapter slots reused, KV pages overwritten) agrees as well.
            float[][] again = harness.lastLogits(inputs.reversed());
            for (int i = 0; i < inputs.size(); i++) {
                assertClose(again[inputs.size() - 1 - i], whole[i], "TP=" + ranks + " second step row " + i);
            }
        }
    }

    static void assertClose(float[] actual, float[] expected, String what) {
        assertThat(actual).as(what + ": vocabulary size").hasSize(expected.length);
        float maxDiff = 0;
        int worst = 0;
        for (int i = 0; i < expected.length; i++) {
            float d = Math.abs(actual[i] - expected[i]);
            if (!(d <= maxDiff)) {
                maxDiff = d;
                worst = i;
            }
        }
        assertThat(maxDiff).as("%s: max |logit diff| (worst token %d: %f vs %f)", what, worst, actual[worst],
                expected[worst]).isLessThanOrEqualTo(TOLERANCE);
    }
}
