package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import ai.punica.Fixtures;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * A 262k-vocabulary tokenizer (Gemma 3) loads in a heap a small multiple of what it keeps (issue 19):
 * it keeps about 52 MiB, needed about 300 MiB to load when tokenizer.json was read as one String and
 * one JSON tree, and now loads in 72 MiB (serial GC) to 80 MiB (G1). The child JVM gets 128 MiB, a
 * margin wide enough not to depend on the collector; figures in docs/benchmarks/tokenizer-load.md.
 */
class TokenizerLoadHeapTest {
    static final int HEAP_MIB = 128;

    /** Child-JVM entry point: loads the tokenizer, encodes a word, prints its vocabulary size. */
    public static void main(String[] args) {
        Tokenizer tokenizer = Tokenizer.load(Path.of(args[0]));
        System.out.println(tokenizer.vocabSize() + " " + tokenizer.encode("Hello", false).length);
    }

    @Test
    void gemma3TokenizerLoadsInA128MiBHeap() throws IOException, InterruptedException {
        Path dir = Fixtures.path("templates", "corpus", "tokenizers", "gemma3");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process process = new ProcessBuilder(List.of(java.toString(), "-Xmx" + HEAP_MIB + "m",
                "-cp", System.getProperty("java.class.path"), TokenizerLoadHeapTest.class.getName(), dir.toString()))
                .redirectErrorStream(true).start();
        boolean finished = process.waitFor(5, TimeUnit.MINUTES);
        String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!finished) {
            process.destroyForcibly();
        }
        assertThat(finished).as("child JVM finished").isTrue();
        assertThat(process.exitValue()).as("exit status; output:%n%s", output).isZero();
        assertThat(output).contains("262145 1");
    }
}
