package ai.punica.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** {@code punica generate} on the bundled demo model, the way a newcomer runs it. */
class GenerateCommandTest {

    private static String generate(String... args) {
        Path fixtures = Path.of(System.getProperty("punica.repo.root", ".."), "fixtures");
        String[] all = new String[args.length + 6];
        all[0] = "generate";
        all[1] = "--model=" + fixtures.resolve("model");
        boolean ownDir = java.util.Arrays.stream(args).anyMatch(a -> a.startsWith("--adapter-dir="));
        all[2] = ownDir ? "--top-p=1" : "--adapter-dir=" + fixtures.resolve("adapters");
        all[3] = "--backend=cpu";
        all[4] = "--max-tokens=24";
        all[5] = "--temperature=0";
        System.arraycopy(args, 0, all, 6, args.length);
        PrintStream saved = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
            int code = Main.commandLine().execute(all);
            assertThat(code).isZero();
        } finally {
            System.setOut(saved);
        }
        return captured.toString(StandardCharsets.UTF_8).strip();
    }

    @Test
    void eachAdapterShowsItsSkillOnTheSamePrompt() {
        String prompt = "--prompt=input: red apple stone\noutput:";
        assertThat(generate(prompt)).isEqualTo("red apple stone");
        assertThat(generate("--adapter=upper", prompt)).isEqualTo("RED APPLE STONE");
        assertThat(generate("--adapter=reverse", prompt)).isEqualTo("stone apple red");
        assertThat(generate("--adapter=sort", prompt)).isEqualTo("apple red stone");
    }

    @Test
    void batchInvariantGeneratesOnTheCpuBackend() {
        String prompt = "--prompt=input: red apple stone\noutput:";
        assertThat(generate("--batch-invariant", "--adapter=upper", prompt)).isEqualTo("RED APPLE STONE");
    }

    /** Runs a command line, returning its exit code and what it printed on stderr. */
    private static Object[] run(String... args) {
        java.io.PrintStream saved = System.err;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        int code;
        try {
            System.setErr(new PrintStream(captured, true, StandardCharsets.UTF_8));
            code = Main.commandLine().execute(args);
        } finally {
            System.setErr(saved);
        }
        return new Object[] {code, captured.toString(StandardCharsets.UTF_8)};
    }

    @Test
    void aBadModelIsOneLineNotAStackTrace(@org.junit.jupiter.api.io.TempDir Path empty) {
        Object[] r = run("generate", "--model=" + empty, "--backend=cpu", "--prompt=hi");
        assertThat(r[0]).isEqualTo(1);
        assertThat((String) r[1]).startsWith("punica generate: cannot start the engine: ").doesNotContain("\tat ");
        assertThat(((String) r[1]).strip().lines().count()).isEqualTo(1);
    }

    @Test
    void anUnknownAdapterIsOneLineNamingTheAvailableOnes() {
        Path fixtures = Path.of(System.getProperty("punica.repo.root", ".."), "fixtures");
        Object[] r = run("generate", "--model=" + fixtures.resolve("model"), "--backend=cpu", "--adapter=shout",
                "--adapter-dir=" + fixtures.resolve("adapters"), "--prompt=hi");
        assertThat(r[0]).isEqualTo(1);
        assertThat((String) r[1]).startsWith("punica generate: no adapter 'shout' under ")
                .contains("reverse, sort, translate, upper");
    }

    @Test
    void aBrokenAdapterInTheDirectoryDoesNotStopAnother(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Path fixtures = Path.of(System.getProperty("punica.repo.root", ".."), "fixtures");
        Path upper = java.nio.file.Files.createDirectories(dir.resolve("upper"));
        try (var files = java.nio.file.Files.list(fixtures.resolve("adapters/upper"))) {
            for (Path f : files.toList()) {
                java.nio.file.Files.copy(f, upper.resolve(f.getFileName()));
            }
        }
        java.nio.file.Files.createDirectories(dir.resolve("broken"));
        java.nio.file.Files.writeString(dir.resolve("broken/adapter_config.json"), "{\"r\": 512}");
        assertThat(generate("--adapter-dir=" + dir, "--adapter=upper", "--prompt=input: red apple stone\noutput:"))
                .isEqualTo("RED APPLE STONE");
    }

    @Test
    void chatTemplateWrapsThePrompt() {
        assertThat(generate("--adapter=upper", "--chat", "--prompt=input: blue river")).isEqualTo("BLUE RIVER");
    }
}
