package ai.punica.bench.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** A user's mistake on the command line is one line naming the option and the value, never a stack trace. */
class ServeBenchUsageErrorsTest {
    @TempDir
    Path dir;

    private record Outcome(int exitCode, String stderr) {
    }

    private static Outcome run(String... args) {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream oldErr = System.err;
        try {
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            // Built after System.err is replaced: picocli takes its error stream when it is constructed.
            return new Outcome(new CommandLine(new BenchCommand()).execute(args), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setErr(oldErr);
        }
    }

    @Test
    void badOptionsAreNamed() throws IOException {
        assertThat(run("serve", "--rates", "5", "--concurrency", "4")).satisfies(o -> {
            assertThat(o.exitCode()).isEqualTo(2);
            assertThat(o.stderr()).contains("give one of --rates, --schedule, --concurrency").doesNotContain("\tat ");
        });
        assertThat(run("serve", "--schedule", "30s@fast").stderr()).contains("'30s@fast'").doesNotContain("\tat ");
        assertThat(run("serve", "--endpoint", "embeddings", "--rates", "1").stderr())
                .contains("--endpoint embeddings: completions or chat");
        assertThat(run("serve", "--dataset", dir.resolve("none.jsonl").toString()).stderr())
                .contains("--dataset " + dir.resolve("none.jsonl") + ": no such file");
        Outcome down = run("serve", "--base-url", "http://127.0.0.1:9/v1", "--rates", "1");
        assertThat(down.exitCode()).isEqualTo(1);
        assertThat(down.stderr()).contains("cannot list the models of http://127.0.0.1:9/v1")
                .contains("is the server up?").doesNotContain("\tat ");
        Files.createDirectories(dir.resolve("out"));
        assertThat(run("checkpoint", "--shape", "gpt-5", "--out", dir.resolve("out").toString()).stderr())
                .contains("unknown model shape 'gpt-5'").doesNotContain("\tat ");
        assertThat(run("checkpoint", "--targets", "q_proj,embed", "--out", dir.toString(), "--no-model",
                "--adapters", "1").stderr()).contains("target module 'embed'");
        assertThat(Files.list(dir.resolve("out")).toList()).isEqualTo(List.of());
    }
}
