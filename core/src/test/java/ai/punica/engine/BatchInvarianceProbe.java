package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * Issue 14 item 5's check on the fixture model, for any backend ({@code BatchInvarianceTest} on the CPU ones,
 * {@code CudaBatchInvarianceTest} on a GPU): a probe request's tokens and log-probs, alone and sharing its steps
 * with other tenants' requests (other adapters, the base model, other prompt lengths, seeded sampling).
 */
public final class BatchInvarianceProbe {
    private static final String[] PROMPTS = {
        "input: red apple stone\noutput:", "input: one two\noutput:", "input: zebra yak xylophone walrus\noutput:",
        "input: b\noutput:", "input: the quick brown fox jumps\noutput:"};
    private static final String[] ADAPTERS = {"upper", "reverse", "sort", "translate", null};

    private BatchInvarianceProbe() {
    }

    /**
     * Runs the probe alone, together with seven others and staggered among later arrivals (their prefill chunks
     * beside its decode rows), on {@code backend} with or without {@code batchInvariant}; lists every difference in
     * bits of its tokens and log-probs (empty: invariant).
     */
    public static List<String> differences(String backend, boolean invariant) throws Exception {
        EngineConfig config = EngineConfig.builder().maxRunning(16).kvCacheBytes(32L << 20).loraSlots(4)
                .maxLoraRank(64).batchInvariant(invariant).build();
        List<String> differences = new ArrayList<>();
        var builder = new EngineBuilder().model(Fixtures.model()).backend(backend).config(config);
        for (String a : ADAPTERS) {
            if (a != null) {
                builder.adapter(a, Fixtures.adapter(a));
            }
        }
        try (var runtime = builder.build()) {
            Engine engine = runtime.engine();
            int[] probePrompt = runtime.tokenizer().encode(PROMPTS[0], true);
            SamplingParams probeParams = SamplingParams.builder().maxTokens(8).ignoreEos(true).logprobs(5).build();
            Completion alone = engine.generate(new GenerationRequest("alone", "upper", probePrompt, probeParams)).join();

            // Together: queued with seven other requests between two steps (from the engine thread, so they are
            // all admitted before the next step is planned: the probe's prefill shares its step, whatever the timing).
            List<CompletableFuture<Completion>> others = new ArrayList<>();
            CompletableFuture<Completion> together = engine.callOnEngineThread(() -> {
                CompletableFuture<Completion> probe = engine.generate(
                        new GenerationRequest("together", "upper", probePrompt, probeParams));
                others.addAll(submitOthers(engine, runtime.tokenizer(), "t", 7));
                return probe;
            });
            compareBits(alone, together.join(), "together", differences);

            // Staggered: others arrive while the probe decodes, so their prefill chunks share its steps.
            CompletableFuture<Completion> staggered = engine.generate(
                    new GenerationRequest("staggered", "upper", probePrompt, probeParams));
            for (int wave = 0; wave < 3; wave++) {
                Thread.sleep(5);
                others.addAll(submitOthers(engine, runtime.tokenizer(), "s" + wave, 3));
            }
            compareBits(alone, staggered.join(), "staggered", differences);
            for (CompletableFuture<Completion> f : others) {
                assertThat(f.join().tokens()).isNotEmpty();
            }
        }
        return differences;
    }

    private static List<CompletableFuture<Completion>> submitOthers(Engine engine, ai.punica.tokenizer.Tokenizer tokenizer,
                                                                    String tag, int n) {
        List<CompletableFuture<Completion>> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] prompt = tokenizer.encode(PROMPTS[1 + i % (PROMPTS.length - 1)], true);
            SamplingParams params = i % 2 == 0
                    ? SamplingParams.builder().maxTokens(4 + i).ignoreEos(true).logprobs(2).build()
                    : SamplingParams.builder().maxTokens(6).temperature(0.8f).seed(31L + i).ignoreEos(true).build();
            out.add(engine.generate(new GenerationRequest(tag + i, ADAPTERS[(i + 1) % ADAPTERS.length], prompt, params)));
        }
        return out;
    }

    private static void compareBits(Completion expected, Completion actual, String what, List<String> differences) {
        if (!Arrays.equals(actual.tokens(), expected.tokens())) {
            differences.add(what + " tokens " + Arrays.toString(actual.tokens()) + " vs "
                    + Arrays.toString(expected.tokens()));
            return;
        }
        assertThat(actual.logprobs()).as("%s log-prob entries", what).hasSameSizeAs(expected.logprobs());
        for (int t = 0; t < expected.logprobs().size(); t++) {
            TokenLogprob e = expected.logprobs().get(t);
            TokenLogprob a = actual.logprobs().get(t);
            if (Float.floatToRawIntBits(a.logprob()) != Float.floatToRawIntBits(e.logprob())) {
                differences.add(what + " token " + t + " log-prob " + a.logprob() + " vs " + e.logprob());
            }
            assertThat(a.top()).as("%s token %d alternatives", what, t).hasSameSizeAs(e.top());
            for (int k = 0; k < e.top().size(); k++) {
                TokenLogprob.Alternative ea = e.top().get(k);
                TokenLogprob.Alternative aa = a.top().get(k);
                if (aa.token() != ea.token()
                        || Float.floatToRawIntBits(aa.logprob()) != Float.floatToRawIntBits(ea.logprob())) {
                    differences.add(what + " token " + t + " alternative " + k + ": " + aa.token() + " "
                            + aa.logprob() + " vs " + ea.token() + " " + ea.logprob());
                }
            }
        }
    }
}
