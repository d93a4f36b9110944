package ai.punica.lora;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import ai.punica.backend.DType;
import ai.punica.backend.TensorData;
import ai.punica.model.ModelConfig;
import ai.punica.model.Projection;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.Set;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The four committed PEFT adapters (fixtures/adapters, table in tools/fixtures/README.md) loaded against the
 * fixture base model. Fails, never skips, when the fixtures are missing.
 */
class FixtureAdapterTest {

    private static final Set<Projection> ATTENTION =
            EnumSet.of(Projection.Q_PROJ, Projection.K_PROJ, Projection.V_PROJ, Projection.O_PROJ);
    private static final Set<Projection> ALL = EnumSet.allOf(Projection.class);

    @ParameterizedTest(name = "{0}: r={1}, alpha={2}, rslora={3}, scale={4}, {5}")
    @CsvSource({
            "upper,     4,  8, false, 2.0, F32,  attention",
            "reverse,   8, 16, false, 2.0, BF16, all",
            "translate, 16, 16, true, 4.0, F16,  all",
            "sort,      32, 64, false, 2.0, F32,  all"})
    void adapterMatchesTheDocumentedTable(String name, int r, double alpha, boolean rslora, float scale, DType dtype,
            String targets) {
        Path dir = Fixtures.adapter(name);
        assertThat(dir.resolve(LoraAdapter.CONFIG_FILE))
                .as(dir + " is missing: generate it with tools/fixtures/make_fixtures.py "
                        + "or point -Dpunica.repo.root at a checkout that has it")
                .isRegularFile();
        ModelConfig base = ModelConfig.load(Fixtures.model().resolve("config.json"));
        Set<Projection> expectedTargets = targets.equals("all") ? ALL : ATTENTION;
        try (LoraAdapter adapter = LoraAdapter.load(name, dir, base)) {
            LoraAdapterConfig config = adapter.config();
            assertThat(config.rank()).isEqualTo(r);
            assertThat(config.alpha()).isEqualTo(alpha);
            assertThat(config.useRslora()).isEqualTo(rslora);
            assertThat(config.targets()).isEqualTo(expectedTargets);
            assertThat(adapter.targets()).isEqualTo(expectedTargets);
            assertThat(adapter.maxRank()).isEqualTo(r);

            long bytes = 0;
            for (int layer = 0; layer < base.numLayers(); layer++) {
                for (Projection p : Projection.values()) {
                    boolean adapted = expectedTargets.contains(p);
                    assertThat(adapter.adapts(layer, p)).as("layer %d %s", layer, p).isEqualTo(adapted);
                    if (!adapted) {
                        assertThat(adapter.loraA(layer, p)).isNull();
                        continue;
                    }
                    TensorData a = adapter.loraA(layer, p);
                    TensorData b = adapter.loraB(layer, p);
                    assertThat(a.shape()).containsExactly(r, p.inFeatures(base));
                    assertThat(b.shape()).containsExactly(p.outFeatures(base), r);
                    assertThat(a.dtype()).isEqualTo(dtype);
                    assertThat(b.dtype()).isEqualTo(dtype);
                    assertThat(adapter.rank(layer, p)).isEqualTo(r);
                    assertThat(adapter.scale(layer, p)).isEqualTo(scale);
                    bytes += (a.elementCount() + b.elementCount()) * dtype.byteSize();
                }
            }
            assertThat(adapter.sizeBytes()).isEqualTo(bytes);
            // Trained: lora_B starts at zero in PEFT, so a non-zero B shows the adapter learned something.
            float[] b = adapter.loraB(0, Projection.Q_PROJ).toFloatArray();
            double sumAbs = 0;
            for (float v : b) {
                sumAbs += Math.abs(v);
            }
            assertThat(sumAbs).isPositive();
        }
    }
}
