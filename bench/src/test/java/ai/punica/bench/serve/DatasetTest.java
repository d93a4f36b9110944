package ai.punica.bench.serve;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.Fixtures;
import ai.punica.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class DatasetTest {
    @TempDir
    Path dir;

    private Path file(String... lines) throws IOException {
        Path f = dir.resolve("data.jsonl");
        Files.write(f, List.of(lines));
        return f;
    }

    @Test
    void readsPromptLinesShareGptAndMessages() throws IOException {
        TokenCounter.Local counter = new TokenCounter.Local(Tokenizer.load(Fixtures.model()));
        Path f = file("{\"prompt\": \"input: red apple\\noutput:\", \"max_tokens\": 7}",
                "",
                "{\"prompt\": \"input: stone\\noutput:\"}",
                "{\"conversations\": [{\"from\": \"system\", \"value\": \"be brief\"}, {\"from\": \"human\", "
                        + "\"value\": \"sort red apple\"}, {\"from\": \"gpt\", \"value\": \"apple red stone river\"}]}",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"upper stone\"}]}");
        List<PromptSample> samples = Dataset.load(f, counter::count, 64);
        assertThat(samples).extracting(PromptSample::prompt).containsExactly("input: red apple\noutput:",
                "input: stone\noutput:", "sort red apple", "upper stone");
        assertThat(samples).extracting(PromptSample::maxTokens).containsExactly(7, 64,
                counter.count("apple red stone river"), 64);
        assertThat(samples.get(2).promptTokens()).isEqualTo(counter.count("sort red apple"));
    }

    @Test
    void aBadLineIsAnErrorNamingTheFileAndLine() throws IOException {
        String good = "{\"prompt\": \"hello\", \"max_tokens\": 4}";
        assertError(file(good, good, "{\"prompt\": \"hi\", \"max_tokens\": -3}"),
                "data.jsonl line 3: \"max_tokens\" must be a positive integer, got -3");
        assertError(file(good, "{\"prompt\": \"unterminated"), "data.jsonl line 2: not JSON");
        assertError(file("{\"text\": \"hello\"}"), "data.jsonl line 1: has none of \"prompt\", \"conversations\" "
                + "(ShareGPT) or \"messages\"; fields: text");
        assertError(file(good, "", "[1, 2]"), "data.jsonl line 3: expected a JSON object");
        assertError(file("{\"prompt\": 42}"), "data.jsonl line 1: \"prompt\" must be a non-empty string, got 42");
        assertError(file("{\"conversations\": [{\"from\": \"gpt\", \"value\": \"hi\"}]}"),
                "data.jsonl line 1: \"conversations\" has no non-empty turn from \"human\" or \"user\"");
        assertError(file("{\"conversations\": [{\"speaker\": \"human\"}]}"),
                "data.jsonl line 1: \"conversations\"[0] needs \"from\" and \"value\"");
        assertError(file("", " "), "no requests");
        assertThatThrownBy(() -> Dataset.load(file("{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, "
                + "{\"from\": \"gpt\", \"value\": \"b\"}]}"), null, 8))
                .hasMessageContaining("line 1: a conversation's output length").hasMessageContaining("--tokenizer");
    }

    private static void assertError(Path f, String message) {
        assertThatThrownBy(() -> Dataset.load(f, String::length, 16)).isInstanceOf(DatasetException.class)
                .hasMessageContaining(message).hasMessageStartingWith(f.toString());
    }

    @Test
    void syntheticPromptsHaveExactlyTheAskedTokenCount() {
        TokenCounter.Local counter = new TokenCounter.Local(Tokenizer.load(Fixtures.model()));
        PromptMaker maker = new PromptMaker(counter);
        SplittableRandom random = new SplittableRandom(4);
        for (int tokens : new int[] {2, 7, 33, 128, 300}) {
            PromptSample s = maker.make(tokens, 5, random);
            assertThat(counter.count(s.prompt())).as("prompt of %d tokens: '%s'", tokens, s.prompt()).isEqualTo(tokens);
            assertThat(s.promptTokens()).isEqualTo(tokens);
        }
        // The search that needs only counts (what a server's /tokenize gives) finds them too.
        PromptMaker bySearch = new PromptMaker(counter, false);
        for (int tokens : new int[] {3, 50, 200}) {
            PromptSample s = bySearch.make(tokens, 5, random);
            assertThat(counter.count(s.prompt())).isEqualTo(tokens);
        }
    }
}
