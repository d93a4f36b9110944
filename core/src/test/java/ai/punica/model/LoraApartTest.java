package ai.punica.model;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.data.Offset.offset;

import ai.punica.Fixtures;
import ai.punica.HfReference;
import ai.punica.HfReference.Run;
import ai.punica.backend.Backend;
import ai.punica.backend.Backends;
import ai.punica.backend.Tensor;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Projections with their LoRA add-on kept apart for the op that consumes them ({@link Backend#matmulLoraApart},
 * what the CUDA backend does at decode sizes), on the host backends through their default implementations: the
 * mixed-adapter batch of the HF reference (less its long prompt) gives the logits of the add-on added into each
 * projection's output within {@link #SAME}, and HF's logits within {@link ReferenceLogitsTest#TOLERANCE}.
 */
class LoraApartTest {
    /**
     * Not bit for bit: apart, the add-on is rounded to float32 before it meets the projection's output (as PEFT
     * does: {@code base(x) + lora_B(lora_A(x))·scale}); in place, the reference backend adds its double sum and
     * rounds once. Logits of the fixture span tens of units; 1e-4 is a few float32 steps of them.
     */
    private static final float SAME = 1e-4f;

    @ParameterizedTest
    @ValueSource(strings = {"cpu", "reference"})
    void theAddOnApartGivesTheLogitsOfTheAddOnInPlace(String backendName) {
        HfReference ref = HfReference.load();
        // The batch without its long prompt: 89 rows, a decode-sized step (the add-on apart up to 256 rows).
        List<Run> runs = ref.mixedBatch().stream().filter(r -> r.promptIds().length < 100).toList();
        List<ModelHarness.Input> inputs = new ArrayList<>();
        for (Run run : runs) {
            inputs.add(new ModelHarness.Input(run.promptIds(), run.adapter()));
        }
        assertThat(inputs.stream().map(ModelHarness.Input::adapter).distinct().count())
                .as("the base and all four adapters").isEqualTo(5);
        float[][] inPlace;
        try (ModelHarness harness = new ModelHarness(Fixtures.model(), ReferenceLogitsTest.adapters(), backendName)) {
            inPlace = harness.lastLogits(inputs);
        }
        Map<String, AtomicInteger> calls = new ConcurrentHashMap<>();
        float[][] apart;
        try (ModelHarness harness = new ModelHarness(Fixtures.model(), ReferenceLogitsTest.adapters(),
                apartBackend(Backends.create(backendName), calls))) {
            apart = harness.lastLogits(inputs);
        }
        // Six layers, four groups each; every consumer saw an add-on.
        assertThat(calls.get("matmulLoraApart")).as("projections with the add-on apart").hasValue(24);
        assertThat(calls.get("ropeAppendKv")).as("rope + KV append with an add-on").hasValue(6);
        assertThat(calls.get("swiglu")).as("SwiGLU with an add-on").hasValue(6);
        assertThat(calls.get("addRmsNorm")).as("residual adds + norms with an add-on (o, down, final)").hasValue(12);
        for (int i = 0; i < inputs.size(); i++) {
            Run run = runs.get(i);
            assertThat(apart[i]).as("row %d (%s): apart = in place", i, run.adapter())
                    .containsExactly(inPlace[i], offset(SAME));
            ReferenceLogitsTest.assertClose(apart[i], run, "apart, row " + i + " " + run.adapter());
        }
    }

    /**
     * {@code backend} answering {@code loraApart() == true}, everything else its own; counts the calls that
     * carry an add-on (a non-null tensor argument named lora in the API: the consumers' overloads).
     */
    private static Backend apartBackend(Backend backend, Map<String, AtomicInteger> calls) {
        return (Backend) Proxy.newProxyInstance(Backend.class.getClassLoader(), new Class<?>[] {Backend.class},
                (proxy, method, args) -> {
                    if (method.getName().equals("loraApart")) {
                        return true;
                    }
                    if (carriesAddOn(method, args)) {
                        calls.computeIfAbsent(method.getName(), k -> new AtomicInteger()).incrementAndGet();
                    }
                    try {
                        return method.invoke(backend, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                });
    }

    private static boolean carriesAddOn(Method method, Object[] args) {
        return switch (method.getName()) {
            case "matmulLoraApart" -> true;
            case "addRmsNorm" -> args.length == 6 && args[2] instanceof Tensor;
            case "swiglu" -> args.length == 3 && args[1] instanceof Tensor;
            case "ropeAppendKv" -> args.length == 12 && args[1] instanceof Tensor;
            default -> false;
        };
    }
}
