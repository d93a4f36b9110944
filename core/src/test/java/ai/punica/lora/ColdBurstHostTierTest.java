package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.model.ModelConfig;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A burst of requests, each for its own cold adapter, larger than the host tier: every adapter is read from
 * disk once. (Before the scheduler kept its loads and prefetches under {@link AdapterManager#hostRoom}, the
 * reads for the waiting requests evicted each other from the host tier before a slot took them, and the
 * same adapters were read again and again: on an H200 with 1,000 adapters this cut the output rate 15x.)
 */
class ColdBurstHostTierTest {
    private static final int ADAPTERS = 40;
    private static final int SLOTS = 4;

    @Test
    void aBurstOfColdAdaptersLargerThanTheHostTierReadsEachAdapterOnce(@TempDir Path tmp) throws Exception {
        List<Path> dirs = new ArrayList<>();
        for (int i = 0; i < ADAPTERS; i++) {
            dirs.add(RandomFixtureAdapters.write(tmp.resolve("c%02d".formatted(i)), 500 + i));
        }
        long adapterBytes;
        try (LoraAdapter one = LoraAdapter.load("probe", dirs.getFirst(),
                ModelConfig.load(Fixtures.model().resolve("config.json")))) {
            adapterBytes = one.sizeBytes();
        }
        // Room for the slots' copies (the CPU backend reads them in place) and two more.
        long hostBudget = (SLOTS + 2) * adapterBytes;
        EngineConfig config = EngineConfig.builder().maxRunning(32).kvCacheBytes(32L << 20).loraSlots(SLOTS)
                .maxLoraRank(8).hostAdapterBytes(hostBudget).build();
        try (var runtime = new EngineBuilder().model(Fixtures.model()).backend("cpu").config(config).build()) {
            var engine = runtime.engine();
            AdapterManager adapters = runtime.adapters();
            for (int i = 0; i < ADAPTERS; i++) {
                adapters.register("c%02d".formatted(i), dirs.get(i));
            }
            int[] prompt = runtime.tokenizer().encode("input: red apple stone\noutput:", true);
            List<CompletableFuture<Completion>> burst = new ArrayList<>();
            for (int i = 0; i < ADAPTERS; i++) {
                burst.add(engine.generate(new GenerationRequest("b" + i, "c%02d".formatted(i), prompt,
                        SamplingParams.greedy(3))));
            }
            for (CompletableFuture<Completion> f : burst) {
                assertThat(f.join().tokens()).hasSize(3);
            }
            System.out.printf("%d cold adapters, host tier of %d: %d host reads, %d slot loads%n", ADAPTERS,
                    SLOTS + 2, adapters.hostLoadCount(), adapters.loadCount());
            assertThat(adapters.hostLoadCount()).as("reads from disk").isEqualTo(ADAPTERS);
            assertThat(adapters.loadCount()).as("copies into slots").isEqualTo(ADAPTERS);
            assertThat(adapters.hostBytes()).isLessThanOrEqualTo(hostBudget);
        }
    }
}
