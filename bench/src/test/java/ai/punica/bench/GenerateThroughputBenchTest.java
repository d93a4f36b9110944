package ai.punica.bench;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The end-to-end throughput bench at toy size on the CPU: every workload runs and generates every token. */
class GenerateThroughputBenchTest {

    @Test
    void everyWorkloadGeneratesEveryRequestedTokenOnTinyModel(@TempDir Path dir) throws Exception {
        Path csv = dir.resolve("generate.csv");
        GenerateThroughputBench.main(new String[] {"--backend", "cpu", "--shape", "tiny", "--batches", "2,4",
                "--prompt-len", "12", "--gen-len", "5", "--warmup-gen-len", "2", "--adapters",
                dir.resolve("adapters").toString(), "--write-adapters", "4", "--out", csv.toString()});

        List<String> lines = Files.readAllLines(csv);
        assertThat(lines.getFirst()).isEqualTo(GenerateThroughputBench.Result.CSV_HEADER);
        assertThat(lines).hasSize(1 + 5 * 2);
        for (String line : lines.subList(1, lines.size())) {
            String[] f = line.split(",");
            int batch = Integer.parseInt(f[1]);
            int adapters = Integer.parseInt(f[2]);
            assertThat(Long.parseLong(f[6])).as(line).isEqualTo(batch * 5L);
            assertThat(Double.parseDouble(f[7])).as(line).isPositive();
            // Every prompt in the first step (the step budget is batch × prompt), then one step per token.
            assertThat(Long.parseLong(f[11])).as("steps: " + line).isEqualTo(5);
            assertThat(Long.parseLong(f[13])).as("adapter loads after warm-up: " + line).isZero();
            assertThat(Long.parseLong(f[14])).as("preemptions: " + line).isZero();
            int expectedAdapters = switch (f[0]) {
                case "none" -> 0;
                case "identical" -> 1;
                case "distinct" -> batch;
                default -> adapters;
            };
            assertThat(adapters).as(line).isEqualTo(expectedAdapters);
        }
    }
}
