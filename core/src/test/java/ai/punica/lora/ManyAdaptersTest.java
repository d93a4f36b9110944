package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * 10,000 registered adapters, traffic over 1,000 of them with Zipf popularity, through 8 slots and a host
 * cache of 24 adapters: every answer is the one that adapter gives when it is served alone, and host memory
 * never passes its budget.
 */
class ManyAdaptersTest {
    private static final int REGISTERED = 10_000;
    private static final int USED = 1_000;
    private static final int REQUESTS = 120;
    private static final int SLOTS = 8;

    @Test
    void zipfTrafficOverTenThousandAdaptersMatchesEachAdapterAloneWithinTheHostBudget(@TempDir Path tmp)
            throws Exception {
        List<Path> dirs = new ArrayList<>(REGISTERED);
        long writeStart = System.nanoTime();
        for (int i = 0; i < REGISTERED; i++) {
            dirs.add(RandomFixtureAdapters.write(tmp.resolve("a%05d".formatted(i)), 1000 + i));
        }
        System.out.printf("wrote %d adapters in %d ms%n", REGISTERED, (System.nanoTime() - writeStart) / 1_000_000);

        long adapterBytes;
        try (LoraAdapter one = LoraAdapter.load("probe", dirs.getFirst(), ai.punica.model.ModelConfig.load(Fixtures.model().resolve("config.json")))) {
            adapterBytes = one.sizeBytes();
        }
        long hostBudget = 24 * adapterBytes;
        EngineConfig config = new EngineConfig(256, 32, 1024, 16, 32L << 20, 0, SLOTS, 8, hostBudget);
        try (var runtime = new EngineBuilder().model(Fixtures.model()).backend("cpu").config(config).build()) {
            var engine = runtime.engine();
            AdapterManager adapters = runtime.adapters();

            long heapBefore = usedHeapAfterGc();
            long registerStart = System.nanoTime();
            for (int i = 0; i < REGISTERED; i++) {
                adapters.register("a%05d".formatted(i), dirs.get(i));
            }
            long registerNanos = System.nanoTime() - registerStart;
            long perAdapter = (usedHeapAfterGc() - heapBefore) / REGISTERED;
            System.out.printf("registered %d adapters in %d ms; registry heap: about %d bytes per adapter%n",
                    REGISTERED, registerNanos / 1_000_000, perAdapter);
            assertThat(adapters.registered()).hasSize(REGISTERED);
            assertThat(adapters.hostBytes()).as("registration reads no weights").isZero();

            // Zipf(1.0) over the first USED adapters, seeded.
            SplittableRandom random = new SplittableRandom(13);
            double[] cdf = zipfCdf(USED, 1.0);
            int[] prompt = runtime.tokenizer().encode("input: red apple stone\noutput:", true);
            AtomicBoolean sampling = new AtomicBoolean(true);
            AtomicLong maxHostBytes = new AtomicLong();
            Thread watcher = Thread.ofPlatform().start(() -> {
                while (sampling.get()) {
                    maxHostBytes.accumulateAndGet(adapters.hostBytes(), Math::max);
                    Thread.onSpinWait();
                }
            });
            Map<String, String> requestAdapter = new LinkedHashMap<>();
            List<CompletableFuture<Completion>> batch = new ArrayList<>();
            for (int r = 0; r < REQUESTS; r++) {
                String name = "a%05d".formatted(sample(cdf, random.nextDouble()));
                requestAdapter.put("z" + r, name);
                batch.add(engine.generate(new GenerationRequest("z" + r, name, prompt, SamplingParams.greedy(4))));
            }
            Map<String, List<Integer>> served = new LinkedHashMap<>();
            for (CompletableFuture<Completion> f : batch) {
                Completion c = f.join();
                served.put(c.requestId(), java.util.Arrays.stream(c.tokens()).boxed().toList());
            }
            sampling.set(false);
            watcher.join();

            Set<String> distinct = new HashSet<>(requestAdapter.values());
            Map<String, List<Integer>> alone = new LinkedHashMap<>();
            for (String name : distinct) {
                alone.put(name, java.util.Arrays.stream(engine.generate(new GenerationRequest("solo-" + name, name, prompt,
                        SamplingParams.greedy(4))).join().tokens()).boxed().toList());
            }
            for (var e : requestAdapter.entrySet()) {
                assertThat(served.get(e.getKey())).as("request %s on adapter %s", e.getKey(), e.getValue())
                        .isEqualTo(alone.get(e.getValue()));
            }
            System.out.printf("%d requests over %d adapters; %d slot loads, %d host loads, host peak %d of %d bytes%n",
                    REQUESTS, distinct.size(), adapters.loadCount(), adapters.hostLoadCount(), maxHostBytes.get(),
                    hostBudget);
            // The adapters matter (answers differ between them) and the traffic churned slots and host memory.
            assertThat(new HashSet<>(alone.values())).hasSizeGreaterThan(distinct.size() / 4);
            assertThat(distinct.size()).isGreaterThan(3 * SLOTS);
            assertThat(adapters.evictionCount()).isGreaterThan(0);
            assertThat(maxHostBytes.get()).isPositive().isLessThanOrEqualTo(hostBudget);
            assertThat(adapters.hostBytes()).isLessThanOrEqualTo(hostBudget);
            assertThat(engine.callOnEngineThread(() -> engine.stats().kvPagesUsed())).isZero();
        }
    }

    private static double[] zipfCdf(int n, double s) {
        double[] cdf = new double[n];
        double sum = 0;
        for (int k = 0; k < n; k++) {
            sum += 1 / Math.pow(k + 1, s);
            cdf[k] = sum;
        }
        for (int k = 0; k < n; k++) {
            cdf[k] /= sum;
        }
        return cdf;
    }

    private static int sample(double[] cdf, double u) {
        int i = java.util.Arrays.binarySearch(cdf, u);
        return Math.min(i >= 0 ? i : -i - 1, cdf.length - 1);
    }

    /** Heap in use after full collections, once two in a row agree within 64 KiB. */
    private static long usedHeapAfterGc() throws InterruptedException {
        var memory = ManagementFactory.getMemoryMXBean();
        long last = Long.MAX_VALUE;
        for (int i = 0; i < 10; i++) {
            System.gc();
            Thread.sleep(50);
            long used = memory.getHeapMemoryUsage().getUsed();
            if (Math.abs(used - last) < 64 << 10) {
                return used;
            }
            last = used;
        }
        return last;
    }
}
