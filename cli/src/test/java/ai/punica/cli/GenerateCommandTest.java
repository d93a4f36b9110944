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
        all[2] = "--adapter-dir=" + fixtures.resolve("adapters");
        all[3] = "--backend=cpu";
        all[4] = "--max-tokens=24";
        all[5] = "--temperature=0";
        System.arraycopy(args, 0, all, 6, args.length);
        PrintStream saved = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
            int code = new CommandLine(new Main()).execute(all);
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
    void chatTemplateWrapsThePrompt() {
        assertThat(generate("--adapter=upper", "--chat", "--prompt=input: blue river")).isEqualTo("BLUE RIVER");
    }
}
