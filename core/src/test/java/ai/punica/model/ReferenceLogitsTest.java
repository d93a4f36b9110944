package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.HfReference;
import ai.punica.HfReference.Run;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The model's last-position logits against HF transformers + PEFT (float32 compute on the same bf16
 * weights), for every reference prompt × adapter, and for the mixed-adapter batch run as ONE step.
 */
class ReferenceLogitsTest {
    /**
     * Both sides compute in float32 over the same bf16 weights; only summation order differs. Logits of
     * the fixture model span tens of units; 2e-3 absolute is ~1e-4 of that range, far below the gap a
     * wrong adapter, scale or rope would cause (those move logits by whole units).
     */
    static final float TOLERANCE = 2e-3f;

    static Map<String, java.nio.file.Path> adapters() {
        return Map.of("upper", Fixtures.adapter("upper"), "reverse", Fixtures.adapter("reverse"),
                "translate", Fixtures.adapter("translate"), "sort", Fixtures.adapter("sort"));
    }

    /** CPU only: the reference backend (scalar, double sums) takes minutes over 40 runs; it runs the mixed batch. */
    @ParameterizedTest
    @ValueSource(strings = {"cpu"})
    void everyPromptWithEveryAdapterMatchesHfLogits(String backend) {
        HfReference ref = HfReference.load();
        try (ModelHarness harness = new ModelHarness(Fixtures.model(), adapters(), backend)) {
            for (Run run : ref.single()) {
                float[] logits = harness.lastLogits(List.of(new ModelHarness.Input(run.promptIds(), run.adapter())))[0];
                assertClose(logits, run, "single " + run.promptName() + " / " + run.adapter());
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"cpu", "reference"})
    void mixedAdapterBatchInOneStepMatchesHfLogits(String backend) {
        HfReference ref = HfReference.load();
        List<ModelHarness.Input> inputs = new ArrayList<>();
        for (Run run : ref.mixedBatch()) {
            inputs.add(new ModelHarness.Input(run.promptIds(), run.adapter()));
        }
        assertThat(inputs.stream().map(ModelHarness.Input::adapter).distinct().count())
                .as("the mixed batch covers the base and all four adapters").isEqualTo(5);
        try (ModelHarness harness = new ModelHarness(Fixtures.model(), adapters(), backend)) {
            float[][] logits = harness.lastLogits(inputs);
            for (int i = 0; i < inputs.size(); i++) {
                Run run = ref.mixedBatch().get(i);
                assertClose(logits[i], run, "mixed row " + i + " " + run.promptName() + " / " + run.adapter());
            }
        }
    }

    static void assertClose(float[] actual, Run run, String what) {
        float[] expected = run.lastLogits();
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
        assertThat(maxDiff).as("%s: max |logit - HF| (worst token %d: %f vs %f)", what, worst, actual[worst],
                expected[worst]).isLessThanOrEqualTo(TOLERANCE);
    }
}
