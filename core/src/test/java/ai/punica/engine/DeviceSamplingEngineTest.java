package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.HfReference.Run;
import ai.punica.HfReference;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.assertj.core.data.Offset;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The engine with sampling on the backend ({@code Backend.sample}; here {@link SamplingCpuBackend}, the
 * CPU backend that has it) against HF's greedy continuations, and against the engine that samples on the
 * host from downloaded logits (the plain CPU backend) for seeded sampling with every filter, penalty and
 * log-probabilities.
 */
class DeviceSamplingEngineTest {
    private static EngineBuilder.Runtime onBackend;
    private static EngineBuilder.Runtime onHost;

    @BeforeAll
    static void start() {
        EngineConfig config = EngineConfig.builder().maxBatchTokens(256).maxRunning(32).loraSlots(4)
                .kvCacheBytes(16L << 20).build();
        onBackend = EngineFixtureTest.builder().backend("cpu-sampling").config(config).build();
        onHost = EngineFixtureTest.builder().backend("cpu").config(config).build();
        assertThat(onBackend.backend().supportsSampling()).isTrue();
        assertThat(onHost.backend().supportsSampling()).isFalse();
    }

    @AfterAll
    static void stop() {
        onBackend.close();
        onHost.close();
    }

    @Test
    void greedyContinuationsSampledOnTheBackendEqualHf() {
        HfReference ref = HfReference.load();
        List<CompletableFuture<Completion>> futures = new ArrayList<>();
        for (Run run : ref.single()) { // all at once: they share steps
            futures.add(onBackend.engine().generate(EngineFixtureTest.request(run.adapter(), run.promptIds(),
                    SamplingParams.greedy(ref.maxNewTokens()))));
        }
        for (int i = 0; i < futures.size(); i++) {
            Run run = ref.single().get(i);
            Completion c = futures.get(i).join();
            assertThat(c.tokens()).as("%s / %s", run.promptName(), run.adapter()).containsExactly(run.greedyIds());
            assertThat(c.text()).isEqualTo(run.greedyText());
            assertThat(c.finishReason()).isEqualTo(run.stoppedOnEos() ? FinishReason.STOP : FinishReason.LENGTH);
        }
        EngineFixtureTest.assertNoLeak(onBackend.engine());
    }

    @Test
    void seededSamplingOnTheBackendEqualsSamplingOnTheHost() {
        int[] prompt = onHost.tokenizer().encode("input: red apple stone\noutput:", true);
        SamplingParams base = SamplingParams.builder().temperature(1.2f).seed(77L).maxTokens(24).ignoreEos(true)
                .logprobs(5).build();
        List<SamplingParams> variants = List.of(
                base,
                base.toBuilder().topK(20).topP(0.9f).build(),
                base.toBuilder().minP(0.05f).temperature(0.8f).build(),
                base.toBuilder().repetitionPenalty(1.3f).presencePenalty(0.5f).frequencyPenalty(0.4f).build(),
                base.toBuilder().temperature(0).repetitionPenalty(1.5f).logprobs(0).build(),
                base.toBuilder().topK(1).logprobs(-1).build());
        List<CompletableFuture<Completion>> device = new ArrayList<>();
        List<CompletableFuture<Completion>> host = new ArrayList<>();
        for (SamplingParams p : variants) {
            for (String adapter : new String[] {null, "sort"}) {
                device.add(onBackend.engine().generate(EngineFixtureTest.request(adapter, prompt, p)));
                host.add(onHost.engine().generate(EngineFixtureTest.request(adapter, prompt, p)));
            }
        }
        for (int i = 0; i < device.size(); i++) {
            Completion d = device.get(i).join();
            Completion h = host.get(i).join();
            SamplingParams p = variants.get(i / 2);
            assertThat(d.tokens()).as("%s", p).containsExactly(h.tokens());
            assertThat(d.completionTokens()).isEqualTo(24);
            assertThat(d.logprobs()).hasSameSizeAs(h.logprobs()).hasSize(p.logprobs() >= 0 ? 24 : 0);
            for (int t = 0; t < d.logprobs().size(); t++) {
                TokenLogprob a = d.logprobs().get(t);
                TokenLogprob b = h.logprobs().get(t);
                assertThat(a.token()).isEqualTo(b.token());
                assertThat(a.logprob()).isCloseTo(b.logprob(), Offset.offset(1e-5f));
                assertThat(a.top()).hasSize(p.logprobs());
                for (int k = 0; k < a.top().size(); k++) {
                    assertThat(a.top().get(k).token()).isEqualTo(b.top().get(k).token());
                    assertThat(a.top().get(k).logprob()).isCloseTo(b.top().get(k).logprob(), Offset.offset(1e-5f));
                }
            }
        }
        EngineFixtureTest.assertNoLeak(onBackend.engine());
        EngineFixtureTest.assertNoLeak(onHost.engine());
    }
}
