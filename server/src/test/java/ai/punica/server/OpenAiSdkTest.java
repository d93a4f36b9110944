package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.engine.EngineBuilder;
import ai.punica.server.TestServers.EvalCase;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.http.StreamResponse;
import com.openai.errors.NotFoundException;
import com.openai.errors.UnauthorizedException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionChoice;
import com.openai.models.completions.CompletionCreateParams;
import com.openai.models.models.Model;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The official OpenAI Java SDK against the server: what a client team would actually run. */
class OpenAiSdkTest {
    private static final String KEY = "sk-test-0123456789";
    private static final int SAMPLE = 10;

    private static EngineBuilder.Runtime runtime;
    private static PunicaServer server;
    private static OpenAIClient client;

    @BeforeAll
    static void start() {
        runtime = TestServers.engine();
        server = TestServers.start(runtime, b -> b.apiKey(KEY));
        client = OpenAIOkHttpClient.builder().baseUrl(server.baseUrl() + "/v1").apiKey(KEY).maxRetries(0)
                .timeout(Duration.ofSeconds(60)).build();
    }

    @AfterAll
    static void stop() {
        client.close();
        server.stop(Duration.ofSeconds(5));
        runtime.close();
    }

    private static CompletionCreateParams completion(String skill, String prompt) {
        return CompletionCreateParams.builder().model(TestServers.modelFor(skill)).prompt(prompt).maxTokens(32)
                .temperature(0.0).build();
    }

    private static ChatCompletionCreateParams chat(String skill, String user) {
        return ChatCompletionCreateParams.builder().model(TestServers.modelFor(skill)).addUserMessage(user)
                .maxCompletionTokens(32).temperature(0.0).build();
    }

    @ParameterizedTest
    @ValueSource(strings = {"copy", "upper", "reverse", "translate", "sort"})
    void completionsAnswerEachSkillOnItsHeldOutSet(String skill) {
        List<String> wrong = new ArrayList<>();
        for (EvalCase c : TestServers.eval(skill, SAMPLE)) {
            Completion r = client.completions().create(completion(skill, c.prompt()));
            String text = r.choices().getFirst().text();
            if (!text.trim().equals(c.expected())) {
                wrong.add(c.prompt() + " -> " + text + " (expected " + c.expected() + ")");
            }
            assertThat(r.choices().getFirst().finishReason()).isEqualTo(CompletionChoice.FinishReason.STOP);
            assertThat(r.id()).startsWith("cmpl-");
            assertThat(r.model()).isEqualTo(TestServers.modelFor(skill));
            var usage = r.usage().orElseThrow();
            assertThat(usage.promptTokens()).isPositive();
            assertThat(usage.completionTokens()).isPositive();
            assertThat(usage.totalTokens()).isEqualTo(usage.promptTokens() + usage.completionTokens());
        }
        assertThat(wrong).as("wrong answers of %s", skill).isEmpty();
    }

    @ParameterizedTest
    @ValueSource(strings = {"copy", "upper", "reverse", "translate", "sort"})
    void chatAnswersEachSkillOnItsHeldOutSet(String skill) {
        List<String> wrong = new ArrayList<>();
        for (EvalCase c : TestServers.eval(skill, SAMPLE)) {
            ChatCompletion r = client.chat().completions().create(chat(skill, c.user()));
            var message = r.choices().getFirst().message();
            String text = message.content().orElse("");
            if (!text.trim().equals(c.expected())) {
                wrong.add(c.user() + " -> " + text + " (expected " + c.expected() + ")");
            }
            assertThat(r.id()).startsWith("chatcmpl-");
            assertThat(r.choices().getFirst().finishReason()).isEqualTo(ChatCompletion.Choice.FinishReason.STOP);
        }
        assertThat(wrong).as("wrong chat answers of %s", skill).isEmpty();
    }

    @ParameterizedTest
    @ValueSource(strings = {"copy", "upper", "reverse", "translate", "sort"})
    void streamedCompletionEqualsTheWholeOne(String skill) {
        EvalCase c = TestServers.eval(skill, 1).getFirst();
        String whole = client.completions().create(completion(skill, c.prompt())).choices().getFirst().text();
        StringBuilder streamed = new StringBuilder();
        List<Optional<CompletionChoice.FinishReason>> reasons = new ArrayList<>();
        try (StreamResponse<Completion> stream = client.completions().createStreaming(completion(skill, c.prompt()))) {
            stream.stream().forEach(chunk -> chunk.choices().forEach(choice -> {
                streamed.append(choice.text());
                reasons.add(choice._finishReason().asKnown());
            }));
        }
        assertThat(streamed.toString()).isEqualTo(whole);
        assertThat(whole.trim()).isEqualTo(c.expected());
        assertThat(reasons.getLast()).contains(CompletionChoice.FinishReason.STOP);
    }

    @ParameterizedTest
    @ValueSource(strings = {"copy", "upper", "reverse", "translate", "sort"})
    void streamedChatStartsWithTheRoleAndEndsWithUsage(String skill) {
        EvalCase c = TestServers.eval(skill, 1).getFirst();
        var params = chat(skill, c.user()).toBuilder()
                .streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true).build()).build();
        List<ChatCompletionChunk> chunks = new ArrayList<>();
        try (StreamResponse<ChatCompletionChunk> stream = client.chat().completions().createStreaming(params)) {
            stream.stream().forEach(chunks::add);
        }
        assertThat(chunks.getFirst().choices().getFirst().delta().role())
                .contains(ChatCompletionChunk.Choice.Delta.Role.ASSISTANT);
        StringBuilder text = new StringBuilder();
        for (ChatCompletionChunk chunk : chunks) {
            chunk.choices().forEach(choice -> choice.delta().content().ifPresent(text::append));
        }
        assertThat(text.toString().trim()).isEqualTo(c.expected());
        ChatCompletionChunk last = chunks.getLast();
        assertThat(last.choices()).isEmpty();
        var usage = last.usage().orElseThrow();
        assertThat(usage.totalTokens()).isEqualTo(usage.promptTokens() + usage.completionTokens());
        ChatCompletionChunk finishing = chunks.get(chunks.size() - 2);
        assertThat(finishing.choices().getFirst().finishReason())
                .contains(ChatCompletionChunk.Choice.FinishReason.STOP);
    }

    @Test
    void chatLogprobsComeInOpenAiShape() {
        EvalCase c = TestServers.eval("upper", 1).getFirst();
        var params = chat("upper", c.user()).toBuilder().logprobs(true).topLogprobs(3).build();
        ChatCompletion r = client.chat().completions().create(params);
        var content = r.choices().getFirst().logprobs().orElseThrow().content().orElseThrow();
        assertThat(content).hasSize((int) r.usage().orElseThrow().completionTokens());
        for (var token : content) {
            assertThat(token.logprob()).isLessThanOrEqualTo(0.0);
            assertThat(token.topLogprobs()).hasSize(3);
            // Greedy: the chosen token is the most likely one.
            assertThat(token.logprob()).isGreaterThanOrEqualTo(token.topLogprobs().getFirst().logprob() - 1e-5);
        }
    }

    @Test
    void nChoicesWithASeedAreNumberedAndReproducible() {
        EvalCase c = TestServers.eval("reverse", 1).getFirst();
        var params = CompletionCreateParams.builder().model("reverse").prompt(c.prompt()).maxTokens(8).n(4)
                .temperature(1.0).seed(7).build();
        Completion r = client.completions().create(params);
        assertThat(r.choices()).extracting(CompletionChoice::index).containsExactly(0L, 1L, 2L, 3L);
        Completion again = client.completions().create(params);
        assertThat(again.choices()).extracting(CompletionChoice::text)
                .containsExactlyElementsOf(r.choices().stream().map(CompletionChoice::text).toList());
    }

    @Test
    void modelsListTheBaseAndEveryAdapter() {
        List<Model> models = client.models().list().data();
        assertThat(models).extracting(Model::id).containsExactly(TestServers.BASE, "reverse", "sort", "translate",
                "upper");
        assertThat(models).allSatisfy(m -> assertThat(m.ownedBy()).isEqualTo("punica"));
    }

    @Test
    void retrieveGivesOneModelAndNotFoundForAnUnknownId() {
        Model adapter = client.models().retrieve("sort");
        assertThat(adapter.id()).isEqualTo("sort");
        assertThat(adapter.ownedBy()).isEqualTo("punica");
        assertThat(adapter._additionalProperties().get("parent").asString()).contains(TestServers.BASE);
        assertThat(client.models().retrieve(TestServers.BASE).id()).isEqualTo(TestServers.BASE);
        assertThatThrownBy(() -> client.models().retrieve("no-such-adapter"))
                .isInstanceOf(NotFoundException.class)
                .hasMessageContaining("The model `no-such-adapter` does not exist.");
    }

    @Test
    void unknownModelIsNotFoundAndAWrongKeyIsUnauthorized() {
        assertThatThrownBy(() -> client.completions().create(completion("copy", "input: red").toBuilder()
                .model("no-such-adapter").build()))
                .isInstanceOf(NotFoundException.class)
                .hasMessageContaining("The model `no-such-adapter` does not exist.");
        OpenAIClient wrongKey = OpenAIOkHttpClient.builder().baseUrl(server.baseUrl() + "/v1").apiKey("sk-wrong")
                .maxRetries(0).build();
        try {
            assertThatThrownBy(() -> wrongKey.models().list()).isInstanceOf(UnauthorizedException.class);
        } finally {
            wrongKey.close();
        }
    }
}
