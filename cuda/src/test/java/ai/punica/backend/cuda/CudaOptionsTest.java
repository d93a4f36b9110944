package ai.punica.backend.cuda;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashMap;
import java.util.Map;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/** The CUDA backend's switches: defaults, the -Dpunica.cuda.* properties, and what is refused. Runs anywhere. */
class CudaOptionsTest {

    /** Runs {@code read} with {@code properties} set, then puts the previous values back. */
    static <T> T withProperties(Map<String, String> properties, Supplier<T> read) {
        Map<String, String> before = new HashMap<>();
        properties.keySet().forEach(k -> before.put(k, System.getProperty(k)));
        try {
            properties.forEach(System::setProperty);
            return read.get();
        } finally {
            before.forEach((k, v) -> {
                if (v == null) {
                    System.clearProperty(k);
                } else {
                    System.setProperty(k, v);
                }
            });
        }
    }

    @Test
    void defaultsTurnEveryPathOnButProfilingAndNvrtc() {
        CudaOptions o = CudaOptions.defaults();
        assertThat(o.device()).isZero();
        assertThat(o.stepGraphs()).isTrue();
        assertThat(o.fusedLora()).isTrue();
        assertThat(o.loraOverlap()).isTrue();
        assertThat(o.loraApart()).isFalse();
        assertThat(o.decodeAttention()).isTrue();
        assertThat(o.fusedMinTiles()).isEqualTo(CudaOptions.FUSED_MIN_TILES);
        assertThat(o.decodeBlocksPerSm()).isEqualTo(8);
        assertThat(o.decodeMerge()).isFalse();
        assertThat(o.gemmTuning()).isFalse();
        assertThat(o.wideClusters()).isFalse();
        assertThat(o.sgmvTcMinRows()).isEqualTo(CudaOptions.SGMV_TC_MIN_ROWS);
        assertThat(o.tensorCoreAttention()).isTrue();
        assertThat(o.tensorCoreMinRows()).isEqualTo(CudaOptions.TENSOR_CORE_MIN_ROWS);
        assertThat(o.profile()).isFalse();
        assertThat(o.nvrtc()).isFalse();
    }

    @Test
    void systemPropertiesAreReadOnceIntoTheRecord() {
        CudaOptions o = withProperties(Map.ofEntries(Map.entry("punica.cuda.device", "1"),
                Map.entry("punica.cuda.graphs", "false"), Map.entry("punica.cuda.fusedLora", "FALSE"),
                Map.entry("punica.cuda.loraOverlap", "false"), Map.entry("punica.cuda.loraApart", "true"),
                Map.entry("punica.cuda.profile", "true"), Map.entry("punica.cuda.nvrtc", " true "),
                Map.entry("punica.cuda.sgmvTcMinRows", "0"), Map.entry("punica.cuda.tensorCoreAttention", "false"),
                Map.entry("punica.cuda.decodeMerge", "true"), Map.entry("punica.cuda.gemmTuning", "true"),
                Map.entry("punica.cuda.wideClusters", "true")),
                CudaOptions::fromSystemProperties);
        assertThat(o).isEqualTo(CudaOptions.builder().device(1).stepGraphs(false).fusedLora(false).loraOverlap(false)
                .loraApart(true).sgmvTcMinRows(0).profile(true).nvrtc(true).tensorCoreAttention(false).decodeMerge(true)
                .gemmTuning(true).wideClusters(true).build());
    }

    @Test
    void aMalformedPropertyIsRefusedWithItsName() {
        assertThatThrownBy(() -> withProperties(Map.of("punica.cuda.graphs", "off"), CudaOptions::fromSystemProperties))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("-Dpunica.cuda.graphs=off: expected true or false");
        assertThatThrownBy(() -> withProperties(Map.of("punica.cuda.device", "first"), CudaOptions::fromSystemProperties))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("-Dpunica.cuda.device=first");
    }

    @Test
    void valuesOutOfRangeAreRefused() {
        assertThatThrownBy(() -> CudaOptions.builder().device(-1).build()).hasMessageContaining("device");
        assertThatThrownBy(() -> CudaOptions.builder().fusedMinTiles(-1).build()).hasMessageContaining("fusedMinTiles");
        assertThatThrownBy(() -> CudaOptions.builder().decodeBlocksPerSm(0).build()).hasMessageContaining("blocks per SM");
        assertThatThrownBy(() -> CudaOptions.builder().sgmvTcMinRows(-1).build()).hasMessageContaining("sgmvTcMinRows");
        assertThatThrownBy(() -> CudaOptions.builder().tensorCoreMinRows(0).build())
                .hasMessageContaining("tensorCoreMinRows");
    }

    @Test
    void batchInvarianceTurnsOffThePathsThatSplitByTheStepsShapeAndRefusesThemBack() {
        CudaOptions o = CudaOptions.builder().batchInvariant(true).build();
        assertThat(o.batchInvariant()).isTrue();
        assertThat(o.fusedLora()).isFalse();
        assertThat(o.decodeAttention()).isFalse();
        assertThat(o.tensorCoreAttention()).isFalse();
        assertThat(o.sgmvTcMinRows()).isZero();
        assertThat(o.stepGraphs()).isTrue();
        assertThat(o.toBuilder().build()).isEqualTo(o);
        assertThatThrownBy(() -> o.toBuilder().fusedLora(true).build()).isInstanceOf(IllegalArgumentException.class)
                .hasMessageStartingWith("batchInvariant needs fusedLora, decodeAttention, tensorCoreAttention and "
                        + "sgmvTcMinRows off");
        assertThatThrownBy(() -> o.toBuilder().sgmvTcMinRows(16).build()).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> o.toBuilder().gemmTuning(true).build()).isInstanceOf(IllegalArgumentException.class)
                .hasMessageStartingWith("batchInvariant needs gemmTuning off");
        assertThat(CudaOptions.builder().gemmTuning(true).batchInvariant(true).build().gemmTuning()).isFalse();
        assertThat(CudaOptions.defaults().batchInvariant()).isFalse();
    }

    /** The provider answers --batch-invariant with a backend, no longer a refusal (checked without a GPU: options only). */
    @Test
    void theProviderNoLongerRefusesBatchInvariance() {
        CudaBackendProvider provider = new CudaBackendProvider();
        if (!provider.available()) {
            assertThatThrownBy(() -> provider.create(0, true)).isNotInstanceOf(IllegalArgumentException.class);
        }
    }

    @Test
    void toBuilderKeepsEverySwitch() {
        CudaOptions o = CudaOptions.builder().device(2).stepGraphs(false).fusedLora(false).loraOverlap(false)
                .loraApart(true).apartGemmSms(100).fusedMinTiles(3).decodeAttention(false).decodeBlocksPerSm(5).sgmvTcMinRows(7)
                .decodeMerge(true).gemmTuning(true).wideClusters(true).tensorCoreAttention(false)
                .tensorCoreMinRows(7).profile(true).nvrtc(true).build();
        assertThat(o.toBuilder().build()).isEqualTo(o);
        assertThat(o.toBuilder().fusedMinTiles(0).build().fusedMinTiles()).isZero();
    }
}
