package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.HfReference;
import ai.punica.HfReference.Run;
import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.PromptLogprob;
import ai.punica.engine.SamplingParams;
import ai.punica.model.ModelHarness;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

/**
 * {@code prompt_logprobs}, {@code logit_bias} and {@code min_tokens} through the engine on the CUDA backend
 * (sampling on the device; prompt logit rows downloaded and log-softmaxed on the host), against the CPU
 * backend's float32 forward of every prompt prefix. Small steps and few logit rows, so that the prompt rows
 * are chunked and capped. The GPU keeps activations in bf16: per-position log-probabilities are compared
 * within {@link #LOGPROB_TOLERANCE}, their mean error within {@link #MEAN_TOLERANCE}.
 */
@Tag("gpu")
class CudaSamplingOptionsEngineTest {
    static final double LOGPROB_TOLERANCE = 0.25;
    static final double MEAN_TOLERANCE = 0.05;

    @BeforeAll
    static void needsGpu() {
        GpuChecks.requireDevice();
    }

    private static EngineBuilder.Runtime gpuEngine() {
        return new EngineBuilder().model(Fixtures.model()).backend("cuda")
                .config(EngineConfig.builder().maxBatchTokens(16).maxRunning(4).loraSlots(4).build())
                .adapters(CudaFixtureTest.adapters()).build();
    }

    @Test
    void promptLogprobsOnTheGpuMatchTheFloat32ForwardOfEveryPrefix() {
        HfReference ref = HfReference.load();
        List<Run> runs = ref.single().stream().limit(4).toList();
        int top = 4;
        List<Completion> done = new ArrayList<>();
        try (EngineBuilder.Runtime rt = gpuEngine()) {
            List<CompletableFuture<Completion>> futures = new ArrayList<>();
            for (Run run : runs) {
                futures.add(rt.engine().generate(new GenerationRequest("p" + futures.size(), run.adapter(),
                        run.promptIds(), SamplingParams.greedy(3).toBuilder().promptLogprobs(top).build())));
            }
            futures.forEach(f -> done.add(f.join()));
            assertThat(rt.engine().callOnEngineThread(() -> rt.engine().stats().kvPagesUsed())).isZero();
        }
        double worst = 0;
        double sum = 0;
        int count = 0;
        int topCompared = 0;
        try (ModelHarness cpu = new ModelHarness(Fixtures.model(), CudaFixtureTest.adapters(), "cpu")) {
            for (int i = 0; i < runs.size(); i++) {
                Run run = runs.get(i);
                int[] prompt = run.promptIds();
                List<PromptLogprob> got = done.get(i).promptLogprobs();
                assertThat(got).hasSize(prompt.length);
                assertThat(got.getFirst()).isNull();
                List<ModelHarness.Input> prefixes = new ArrayList<>();
                for (int p = 0; p + 1 < prompt.length; p++) {
                    prefixes.add(new ModelHarness.Input(Arrays.copyOf(prompt, p + 1), run.adapter()));
                }
                float[][] logits = cpu.lastLogits(prefixes);
                for (int p = 0; p + 1 < prompt.length; p++) {
                    float[] l = logits[p];
                    PromptLogprob lp = got.get(p + 1);
                    assertThat(lp.token()).isEqualTo(prompt[p + 1]);
                    assertThat(lp.top()).hasSize(top);
                    double want = l[prompt[p + 1]] - logSumExp(l);
                    double error = Math.abs(lp.logprob() - want);
                    worst = Math.max(worst, error);
                    sum += error;
                    count++;
                    int[] order = topTwo(l);
                    if (l[order[0]] - l[order[1]] > 0.5f) {
                        assertThat(lp.top().getFirst().token()).as("%s/%s position %d", run.promptName(),
                                run.adapter(), p + 1).isEqualTo(order[0]);
                        topCompared++;
                    }
                }
            }
        }
        System.out.printf("CHECK gpu prompt_logprobs vs float32 prefixes: %d positions, max |error| %.3e (tol %.2f), "
                + "mean %.3e (tol %.2f), %d top-1 tokens compared%n", count, worst, LOGPROB_TOLERANCE, sum / count,
                MEAN_TOLERANCE, topCompared);
        assertThat(worst).isLessThanOrEqualTo(LOGPROB_TOLERANCE);
        assertThat(sum / count).isLessThanOrEqualTo(MEAN_TOLERANCE);
        assertThat(topCompared).isPositive();
    }

    @Test
    void logitBiasAndMinTokensSteerTheGpuSampler() {
        HfReference ref = HfReference.load();
        Run eosRun = ref.single().stream().filter(r -> r.stoppedOnEos() && r.minMargin() >= CudaFixtureTest.NEAR_TIE)
                .findFirst().orElseThrow();
        int[] greedy = eosRun.greedyIds();
        int eos = greedy[greedy.length - 1];
        int favoured = greedy[0] == 40 ? 41 : 40;
        try (EngineBuilder.Runtime rt = gpuEngine()) {
            Completion steered = rt.engine().generate(new GenerationRequest("b1", eosRun.adapter(), eosRun.promptIds(),
                    SamplingParams.greedy(4).toBuilder().ignoreEos(true).logitBias(Map.of(favoured, 100f)).build()))
                    .join();
            assertThat(steered.tokens()).containsOnly(favoured);
            Completion sampledSteered = rt.engine().generate(new GenerationRequest("b2", eosRun.adapter(),
                    eosRun.promptIds(), SamplingParams.builder().temperature(1f).seed(5L).maxTokens(4).ignoreEos(true)
                            .logitBias(Map.of(favoured, 100f)).build())).join();
            assertThat(sampledSteered.tokens()).containsOnly(favoured);
            int min = greedy.length + 2;
            Completion longer = rt.engine().generate(new GenerationRequest("m1", eosRun.adapter(), eosRun.promptIds(),
                    SamplingParams.greedy(min + 10).toBuilder().minTokens(min).build())).join();
            assertThat(longer.tokens().length).isGreaterThanOrEqualTo(min);
            for (int i = 0; i < min; i++) {
                assertThat(longer.tokens()[i]).as("token %d", i).isNotEqualTo(eos);
            }
            System.out.printf("CHECK gpu logit_bias steered %s; min_tokens %d gave %d tokens%n",
                    Arrays.toString(steered.tokens()), min, longer.tokens().length);
        }
    }

    private static int[] topTwo(float[] l) {
        int first = 0;
        for (int i = 1; i < l.length; i++) {
            first = l[i] > l[first] ? i : first;
        }
        int second = first == 0 ? 1 : 0;
        for (int i = 0; i < l.length; i++) {
            if (i != first && l[i] > l[second]) {
                second = i;
            }
        }
        return new int[] {first, second};
    }

    private static double logSumExp(float[] l) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : l) {
            max = Math.max(max, v);
        }
        double sum = 0;
        for (float v : l) {
            sum += Math.exp(v - max);
        }
        return max + Math.log(sum);
    }
}
