package ai.punica.cluster;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.engine.Completion;
import ai.punica.engine.Continuation;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationListener;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.InvalidRequestException;
import ai.punica.engine.SamplingParams;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The continuation contract on one engine: resuming from any point gives the rest of the uninterrupted run. */
class ContinuationTest {
    private static EngineBuilder.Runtime runtime;

    @BeforeAll
    static void start() {
        runtime = EngineClusterTest.builder().config(EngineConfig.builder().maxBatchTokens(64).maxRunning(8).loraSlots(4).build())
                .build();
    }

    @AfterAll
    static void stop() {
        runtime.close();
    }

    private static int[] prompt() {
        return runtime.tokenizer().encode("input: red apple stone blue\noutput:", true);
    }

    /** Resumes {@code whole} after its first {@code cut} tokens and returns the resumed tokens and streamed text. */
    private static Completion resumeAfter(Completion whole, SamplingParams p, long seed, int cut, StringBuilder text) {
        int[] head = Arrays.copyOf(whole.tokens(), cut);
        long draws = p.isGreedy() ? 0 : cut;
        var c = new Continuation("r-" + cut + "-" + seed, "sort", prompt(), head, p, seed, draws,
                whole.logprobs().isEmpty() ? List.of() : whole.logprobs().subList(0, cut));
        CompletableFuture<Completion> done = new CompletableFuture<>();
        runtime.engine().resume(c, GenerationListener.completing(done, delta -> text.append(delta.text())));
        return done.join();
    }

    @Test
    void resumingAtAnyTokenGivesTheRestOfTheRun() {
        for (SamplingParams p : List.of(SamplingParams.greedy(20).toBuilder().ignoreEos(true).build(),
                SamplingParams.builder().temperature(1.2f).topK(40).seed(77L).maxTokens(20).ignoreEos(true)
                        .frequencyPenalty(0.5f).logprobs(2).stop(List.of("zz")).build())) {
            Completion whole = runtime.engine().generate(new GenerationRequest("whole-" + p.isGreedy(), "sort",
                    prompt(), p)).join();
            assertThat(whole.completionTokens()).isEqualTo(20);
            for (int cut : new int[] {1, 5, 19}) {
                StringBuilder text = new StringBuilder();
                Completion resumed = resumeAfter(whole, p, 77L, cut, text);
                assertThat(resumed.tokens()).as("cut at %d", cut).containsExactly(whole.tokens());
                assertThat(resumed.text()).isEqualTo(whole.text());
                assertThat(whole.text()).as("streamed after the cut ends the text").endsWith(text.toString());
                assertThat(resumed.logprobs()).hasSize(whole.logprobs().size());
                assertThat(resumed.finishReason()).isEqualTo(whole.finishReason());
            }
        }
    }

    @Test
    void badContinuationsAreRefusedWithTheFieldAtFault() {
        SamplingParams p = SamplingParams.greedy(8);
        GenerationListener ignore = GenerationListener.completing(new CompletableFuture<>(), delta -> { });
        var engine = runtime.engine();
        assertThatThrownBy(() -> engine.resume(new Continuation("b1", null, prompt(), new int[] {5, 4096}, p, 1, 0,
                List.of()), ignore)).isInstanceOf(InvalidRequestException.class)
                .hasMessage("token id 4096 at position 1 is outside the vocabulary [0, 1024)");
        assertThatThrownBy(() -> engine.resume(new Continuation("b2", "missing", prompt(), new int[] {5}, p, 1, 0,
                List.of()), ignore)).hasMessage("The model `missing` does not exist.");
        assertThatThrownBy(() -> engine.resume(new Continuation("b3", null, prompt(), new int[8], p, 1, 0,
                List.of()), ignore)).hasMessageContaining("nothing is left to generate");
        assertThatThrownBy(() -> engine.resume(new Continuation("b4", null, prompt(), new int[] {5, 6}, p, 1, 3,
                List.of()), ignore)).hasMessageContaining("random_draws 3 must be between 0 and");
        assertThatThrownBy(() -> engine.resume(new Continuation("b5", null, prompt(), new int[] {-1}, p, 1, 0,
                List.of()), ignore)).hasMessageContaining("token id -1 at position 0");
        assertThat(engine.liveRequestIds()).isEmpty();
        assertThat(engine.stats().kvPagesUsed()).isZero();
    }
}
