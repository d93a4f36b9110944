package ai.punica.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** The decode and end-to-end benches read their sweep the same way, and refuse a bad one before making weights. */
class WorkloadSweepTest {

    @Test
    void defaultsAreTheFiveWorkloadsTheGivenBatchesAndNoOutput() {
        WorkloadSweep sweep = WorkloadSweep.read(BenchArgs.parse(new String[] {"--shape", "tiny"}), "2,8,4");

        assertThat(sweep.workloads()).containsExactly("none", "identical", "uniform", "skewed", "distinct");
        assertThat(sweep.batches()).containsExactly(2, 8, 4);
        assertThat(sweep.maxBatch()).isEqualTo(8);
        assertThat(sweep.backend()).isEqualTo("cuda");
        assertThat(sweep.model().numLayers()).as("the tiny shape").isEqualTo(2);
        assertThat(sweep.seed()).isEqualTo(1);
        assertThat(sweep.out()).isNull();
        // distinct at batch 8: one adapter per row, the most of any case
        assertThat(sweep.maxAdapters()).isEqualTo(8);
    }

    @Test
    void givenOptionsAreApplied() {
        WorkloadSweep sweep = WorkloadSweep.read(BenchArgs.parse(new String[] {"--backend", "cpu", "--shape", "small",
                "--workloads", "none, uniform", "--batches", "9", "--seed", "7", "--out", "x.csv"}), "1");

        assertThat(sweep.backend()).isEqualTo("cpu");
        assertThat(sweep.shape()).isEqualTo("small");
        assertThat(sweep.model().hiddenSize()).isEqualTo(1024);
        assertThat(sweep.workloads()).containsExactly("none", "uniform");
        assertThat(sweep.batches()).containsExactly(9);
        assertThat(sweep.seed()).isEqualTo(7);
        assertThat(sweep.out()).isEqualTo(Path.of("x.csv"));
        assertThat(sweep.maxAdapters()).as("uniform at 9: ⌈√9⌉ adapters").isEqualTo(3);
    }

    @Test
    void anUnknownWorkloadOrABadBatchSizeIsRefusedByName() {
        assertThatThrownBy(() -> WorkloadSweep.read(BenchArgs.parse(new String[] {"--workloads", "none,zipf"}), "1"))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("'zipf'")
                .hasMessageContaining("known: none, identical, uniform, skewed, distinct");
        assertThatThrownBy(() -> WorkloadSweep.read(BenchArgs.parse(new String[] {"--batches", "4,0"}), "1"))
                .isInstanceOf(IllegalArgumentException.class).hasMessage("--batches: 0 is not a batch size (at least 1)");
        assertThatThrownBy(() -> WorkloadSweep.read(BenchArgs.parse(new String[] {"--shape", "huge"}), "1"))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("unknown shape 'huge'");
    }
}
