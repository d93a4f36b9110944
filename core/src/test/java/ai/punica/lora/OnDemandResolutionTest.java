package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowableOfType;

import ai.punica.Fixtures;
import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.EngineException;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Requests name adapters that nobody registered; the engine finds them under its adapter root: one lookup
 * and one load however many requests arrive at once, a clear answer for missing and broken ones, and no
 * lookup per request for a name already known to be missing.
 */
class OnDemandResolutionTest {
    private static final String PROMPT = "input: red apple stone\noutput:";

    @TempDir
    Path root;
    private EngineBuilder.Runtime runtime;
    private int[] prompt;

    @BeforeEach
    void start() throws IOException {
        copy(Fixtures.adapter("upper"), root.resolve("acme/shout"));
        copy(Fixtures.adapter("reverse"), root.resolve("backwards"));
        // A real adapter whose weights file was cut short on disk.
        copy(Fixtures.adapter("sort"), root.resolve("cut"));
        byte[] weights = Files.readAllBytes(root.resolve("cut").resolve(LoraAdapter.WEIGHTS_FILE));
        Files.write(root.resolve("cut").resolve(LoraAdapter.WEIGHTS_FILE), Arrays.copyOf(weights, weights.length / 3));
        AdapterOptions options = AdapterOptions.defaults().withSources(List.of(new DirectoryAdapterSource(root)))
                .withMisses(Duration.ofMillis(300), 64);
        runtime = new EngineBuilder().model(Fixtures.model()).backend("cpu").adapter("upper", Fixtures.adapter("upper"))
                .config(EngineConfig.builder().loraSlots(2).build()).adapterOptions(options).build();
        prompt = runtime.tokenizer().encode(PROMPT, true);
    }

    @AfterEach
    void stop() {
        runtime.close();
    }

    private static void copy(Path from, Path to) throws IOException {
        Files.createDirectories(to);
        for (String f : new String[] {LoraAdapter.CONFIG_FILE, LoraAdapter.WEIGHTS_FILE}) {
            Files.copy(from.resolve(f), to.resolve(f));
        }
    }

    private CompletableFuture<Completion> generate(String id, String adapter) {
        return runtime.engine().generate(new GenerationRequest(id, adapter, prompt, SamplingParams.greedy(16)));
    }

    @Test
    void concurrentRequestsForOneColdAdapterShareOneLookupAndOneLoad() throws Exception {
        int n = 16;
        AdapterManager adapters = runtime.adapters();
        CountDownLatch go = new CountDownLatch(1);
        List<Future<Completion>> answers = new ArrayList<>();
        try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < n; i++) {
                String id = "c" + i;
                answers.add(clients.submit(() -> {
                    go.await();
                    return generate(id, "acme/shout").join();
                }));
            }
            go.countDown();
            for (Future<Completion> a : answers) {
                assertThat(a.get().text().strip()).isEqualTo("RED APPLE STONE");
            }
        }
        assertThat(adapters.sourceLookupCount()).isEqualTo(1);
        assertThat(adapters.resolutionCount()).isEqualTo(1);
        assertThat(adapters.hostLoadCount()).as("read from disk once").isEqualTo(1);
        assertThat(adapters.isRegistered("acme/shout")).isTrue();
        assertThat(adapters.directoryOf("acme/shout")).contains(root.resolve("acme/shout").toRealPath());
        // Registered now: later requests need no lookup.
        assertThat(generate("again", "acme/shout").join().text().strip()).isEqualTo("RED APPLE STONE");
        assertThat(adapters.sourceLookupCount()).isEqualTo(1);
    }

    @Test
    void aMissingNameIsNotFoundAndLookedUpOncePerMissTime() throws Exception {
        AdapterManager adapters = runtime.adapters();
        for (int i = 0; i < 50; i++) {
            int k = i;
            EngineException e = catchThrowableOfType(EngineException.class, () -> generate("m" + k, "nobody"));
            assertThat(e.kind()).isEqualTo(EngineException.Kind.NOT_FOUND);
            assertThat(e.getMessage()).isEqualTo("The model `nobody` does not exist.");
        }
        assertThat(adapters.sourceLookupCount()).isEqualTo(1);
        assertThat(adapters.rememberedMissCount()).isEqualTo(49);

        // Once the miss has expired the name is looked up again, and found if it has appeared meanwhile.
        copy(Fixtures.adapter("upper"), root.resolve("nobody"));
        Thread.sleep(350);
        assertThat(generate("late", "nobody").join().text().strip()).isEqualTo("RED APPLE STONE");
        assertThat(adapters.sourceLookupCount()).isEqualTo(2);
    }

    @Test
    void aBrokenAdapterFailsEveryRequestWaitingOnItWhileOthersAreServed() throws Exception {
        AdapterManager adapters = runtime.adapters();
        CompletableFuture<Completion> other = generate("o", "upper");
        CountDownLatch go = new CountDownLatch(1);
        List<Future<EngineException>> failures = new ArrayList<>();
        try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < 8; i++) {
                String id = "b" + i;
                failures.add(clients.submit(() -> {
                    go.await();
                    return catchThrowableOfType(EngineException.class, () -> generate(id, "cut"));
                }));
            }
            go.countDown();
            for (Future<EngineException> f : failures) {
                EngineException e = f.get();
                assertThat(e.kind()).isEqualTo(EngineException.Kind.INVALID_REQUEST);
                assertThat(e.param()).isEqualTo("model");
                assertThat(e.getMessage()).startsWith("The adapter `cut` was found in directory ")
                        .contains("could not be loaded").contains(LoraAdapter.WEIGHTS_FILE).contains("truncated");
            }
        }
        assertThat(adapters.sourceLookupCount()).isEqualTo(1);
        assertThat(adapters.isRegistered("cut")).isFalse();
        assertThat(other.join().text().strip()).isEqualTo("RED APPLE STONE");
        assertThat(generate("r", "backwards").join().text().strip()).isEqualTo("stone apple red");
        assertThat(runtime.engine().callOnEngineThread(() -> runtime.engine().stats().kvPagesUsed())).isZero();
    }

    @Test
    void withoutSourcesAnUnregisteredNameIsNotFoundAtOnce() {
        try (var plain = new EngineBuilder().model(Fixtures.model()).backend("cpu").build()) {
            assertThatThrownBy(() -> plain.engine().generate(new GenerationRequest("x", "backwards", prompt,
                    SamplingParams.greedy(4)))).isInstanceOf(EngineException.class)
                    .hasMessage("The model `backwards` does not exist.");
            assertThat(plain.adapters().sourceLookupCount()).isZero();
        }
    }
}
