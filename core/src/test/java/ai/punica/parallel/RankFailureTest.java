package ai.punica.parallel;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import ai.punica.Fixtures;
import ai.punica.model.ModelHarness;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Ranks 1..3 of 4 failing in the middle of a step (in layer 0's attention, while rank 0 already waits for
 * them in o's all-reduce) fail that step with the ranks' own error instead of hanging, and the group's next
 * step is right.
 */
class RankFailureTest {

    @AfterEach
    void disarm() {
        FaultyRankBackend.ARMED.set(false);
    }

    @Test
    void aRankFailingMidStepFailsTheStepWithItsErrorAndTheNextStepIsRight() {
        List<ModelHarness.Input> inputs = List.of(new ModelHarness.Input(new int[] {1, 40, 41, 42, 43}, null),
                new ModelHarness.Input(new int[] {1, 50, 51}, "upper"));
        Map<String, java.nio.file.Path> adapters = Map.of("upper", Fixtures.adapter("upper"));
        float[][] whole;
        try (ModelHarness h = new ModelHarness(Fixtures.model(), adapters, "cpu")) {
            whole = h.lastLogits(inputs);
        }
        try (ModelHarness h = new ModelHarness(Fixtures.model(), adapters, "cpu-faulty-rank", 4)) {
            FaultyRankBackend.ARMED.set(true);
            assertTimeoutPreemptively(Duration.ofSeconds(60), () ->
                    assertThatThrownBy(() -> h.lastLogits(inputs)).hasMessage(FaultyRankBackend.MESSAGE));
            FaultyRankBackend.ARMED.set(false);
            float[][] after = assertTimeoutPreemptively(Duration.ofSeconds(60), () -> h.lastLogits(inputs));
            for (int i = 0; i < inputs.size(); i++) {
                TensorParallelLogitsTest.assertClose(after[i], whole[i], "input " + i + " after the failed step");
            }
            assertThat(after[0]).isNotEqualTo(after[1]);
        }
    }
}
