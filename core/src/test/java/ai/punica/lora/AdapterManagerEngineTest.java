package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.engine.Completion;
import ai.punica.engine.EngineBuilder;
import ai.punica.engine.EngineConfig;
import ai.punica.engine.GenerationRequest;
import ai.punica.engine.SamplingParams;
import ai.punica.model.ModelFormatException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Bad adapters are refused at registration, naming what is wrong, while the engine keeps serving. */
class AdapterManagerEngineTest {

    @Test
    void wrongShapedAdapterIsRefusedByNameWhileRequestsGoOn(@TempDir Path tmp) throws Exception {
        // An adapter made for a base of hidden size 64, offered to the fixture model (hidden 256).
        Path wrong = PeftAdapterFiles.write(tmp.resolve("tiny"), PeftAdapterFiles.config(c -> { }),
                PeftAdapterFiles.tensors(8, PeftAdapterFiles.Q_V, 0, 1, 2, 3, 4, 5), DType.F32, 11);
        // A copy of a real adapter whose weights file is cut short.
        Path truncated = Files.createDirectories(tmp.resolve("truncated"));
        Files.copy(Fixtures.adapter("upper").resolve("adapter_config.json"), truncated.resolve("adapter_config.json"));
        byte[] weights = Files.readAllBytes(Fixtures.adapter("upper").resolve("adapter_model.safetensors"));
        Files.write(truncated.resolve("adapter_model.safetensors"), java.util.Arrays.copyOf(weights, weights.length / 2));

        try (var runtime = new EngineBuilder().model(Fixtures.model()).backend("cpu")
                .adapter("reverse", Fixtures.adapter("reverse")).config(EngineConfig.builder().loraSlots(2).build()).build()) {
            var engine = runtime.engine();
            int[] prompt = runtime.tokenizer().encode("input: red apple stone\noutput:", true);
            CompletableFuture<Completion> running = engine.generate(new GenerationRequest("r1", "reverse", prompt,
                    SamplingParams.greedy(16)));

            assertThatThrownBy(() -> runtime.adapters().register("tiny", wrong))
                    .isInstanceOf(ModelFormatException.class)
                    .hasMessageContaining("layers.0.self_attn.q_proj.lora_A")
                    .hasMessageContaining("256");
            assertThatThrownBy(() -> runtime.adapters().register("truncated", truncated))
                    .isInstanceOf(ModelFormatException.class)
                    .hasMessageContaining("adapter_model.safetensors");
            assertThatThrownBy(() -> runtime.adapters().register("reverse", Fixtures.adapter("upper")))
                    .hasMessageContaining("already registered");
            assertThat(runtime.adapters().registered()).containsExactly("reverse");

            assertThat(running.join().text().strip()).isEqualTo("stone apple red");
            assertThat(engine.callOnEngineThread(() -> engine.stats().kvPagesUsed())).isZero();
        }
    }

    @Test
    void hostCacheStaysWithinItsByteBudgetAndSlotsAreReusedLeastRecentlyUsedFirst() {
        // A host budget smaller than any adapter: only what the slots use may stay.
        EngineConfig config = EngineConfig.builder().maxWaiting(64).kvCacheBytes(64L << 20).loraSlots(2)
                .hostAdapterBytes(1).build();
        EngineBuilder builder = new EngineBuilder().model(Fixtures.model()).backend("cpu").config(config);
        for (String a : new String[] {"upper", "reverse", "translate", "sort"}) {
            builder.adapter(a, Fixtures.adapter(a));
        }
        try (var runtime = builder.build()) {
            var engine = runtime.engine();
            AdapterManager adapters = runtime.adapters();
            int[] prompt = runtime.tokenizer().encode("input: red apple stone\noutput:", true);
            String[] order = {"upper", "reverse", "translate", "upper", "sort", "reverse"};
            for (int i = 0; i < order.length; i++) {
                engine.generate(new GenerationRequest("h" + i, order[i], prompt, SamplingParams.greedy(4))).join();
                var resident = engine.callOnEngineThread(adapters::residentAdapters);
                assertThat(resident).as("after %s", order[i]).containsKey(order[i]).hasSizeLessThanOrEqualTo(2);
                // Host memory keeps what the slots use (the CPU backend reads it in place) and nothing
                // more once over budget.
                assertThat(adapters.hostCached()).as("host cache after %s", order[i])
                        .containsExactlyInAnyOrderElementsOf(resident.keySet());
            }
            // two slots, six uses of four adapters: reverse, translate, sort each pushed out an older one
            assertThat(adapters.evictionCount()).isGreaterThanOrEqualTo(3);
            assertThat(adapters.loadCount()).isEqualTo(adapters.evictionCount() + 2);
        }
    }
}
