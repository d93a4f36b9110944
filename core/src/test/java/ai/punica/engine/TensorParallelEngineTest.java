package ai.punica.engine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.Fixtures;
import ai.punica.backend.TensorData;
import ai.punica.model.Checkpoint;
import ai.punica.model.ModelConfig;
import ai.punica.model.ModelFormatException;
import ai.punica.model.WeightSource;
import ai.punica.parallel.TensorParallel;
import ai.punica.parallel.TensorParallelGroup;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/**
 * An engine over 2 tensor-parallel CPU ranks (EngineBuilder.tensorParallel) serving several adapters through 2
 * adapter slots, so adapters are evicted and copied again mid-run on every rank: greedy tokens equal the whole
 * model's engine, and closing it releases every tensor on every rank's backend; so does a load that fails.
 */
class TensorParallelEngineTest {

    private static final String[] ADAPTERS = {null, "upper", "reverse", "sort", "translate", "upper", null, "sort"};

    private static List<int[]> generate(EngineBuilder.Runtime runtime) {
        int[] prompt = runtime.tokenizer().encode("input: red apple stone blue\noutput:", true);
        List<CompletableFuture<Completion>> running = new ArrayList<>();
        for (int i = 0; i < ADAPTERS.length; i++) {
            running.add(runtime.engine().generate(new GenerationRequest("r" + i, ADAPTERS[i], prompt,
                    SamplingParams.greedy(10))));
        }
        return running.stream().map(f -> f.join().tokens()).toList();
    }

    private static EngineBuilder builder(String backend) {
        EngineBuilder b = new EngineBuilder().model(Fixtures.model()).backend(backend)
                .config(EngineConfig.builder().loraSlots(2).maxRunning(4).kvCacheBytes(16L << 20).build());
        for (String a : new String[] {"upper", "reverse", "sort", "translate"}) {
            b.adapter(a, Fixtures.adapter(a));
        }
        return b;
    }

    @Test
    void twoRanksGenerateTheWholeEnginesTokensAndReleaseEveryRank() {
        List<int[]> expected;
        try (EngineBuilder.Runtime whole = builder("cpu").build()) {
            expected = generate(whole);
        }
        int before = LeakCheckingBackend.made.size();
        try (EngineBuilder.Runtime split = builder("cpu-leakcheck").tensorParallel(2).build()) {
            assertThat(split.backend().name()).endsWith("×2 (tensor parallel)");
            List<int[]> actual = generate(split);
            for (int i = 0; i < ADAPTERS.length; i++) {
                assertThat(actual.get(i)).as("request %d (%s)", i, ADAPTERS[i]).containsExactly(expected.get(i));
            }
            assertThat(split.adapters().evictionCount()).as("adapters left slots and came back")
                    .isPositive();
        }
        assertThat(LeakCheckingBackend.made).as("one backend per rank").hasSize(before + 2);
        for (int r = 0; r < 2; r++) {
            LeakCheckingBackend.Counts counts = LeakCheckingBackend.made.get(before + r);
            assertThat(counts.closed).as("rank backend %d closed", r).isTrue();
            assertThat(counts.liveAtClose).as("tensors still live on rank backend %d at close", r).isZero();
        }
    }

    @Test
    void aWeightMissingOnOneRankClosesEveryRankWithNothingLeftOnIt() {
        ModelConfig config = ModelConfig.load(Fixtures.model().resolve("config.json"));
        String missing = "model.layers." + (config.numLayers() - 1) + ".mlp.down_proj.weight";
        int before = LeakCheckingBackend.made.size();
        try (Checkpoint checkpoint = Checkpoint.open(Fixtures.model())) {
            WeightSource withoutOne = new WeightSource() {
                @Override
                public TensorData get(String name) {
                    if (name.equals(missing)) {
                        throw new ModelFormatException("no tensor " + name);
                    }
                    return checkpoint.get(name);
                }

                @Override
                public boolean contains(String name) {
                    return !name.equals(missing) && checkpoint.contains(name);
                }
            };
            assertThatThrownBy(() -> TensorParallel.load(config, withoutOne, "cpu-leakcheck", 0, 4,
                    new TensorParallelGroup.Sizes(64, 8, 2, 16)))
                    .isInstanceOf(ModelFormatException.class).hasMessageContaining(missing);
        }
        assertThat(LeakCheckingBackend.made).as("one backend per rank").hasSize(before + 4);
        for (int r = 0; r < 4; r++) {
            LeakCheckingBackend.Counts counts = LeakCheckingBackend.made.get(before + r);
            assertThat(counts.closed).as("rank backend %d closed", r).isTrue();
            assertThat(counts.liveAtClose).as("tensors still live on rank backend %d at close", r).isZero();
        }
    }
}
