package ai.punica.server;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** Binding request bodies to records: unknown fields reported by path, wrong values named. */
class RequestBodiesTest {

    private static <T> RequestBodies.Bound<T> read(String json, Class<T> type) {
        return RequestBodies.read(json.getBytes(StandardCharsets.UTF_8), type);
    }

    @Test
    void unknownFieldsAreCollectedWithTheirPaths() {
        var bound = read("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"mood\":\"happy\"}],\"store\":true,"
                + "\"metadata\":{\"k\":\"v\"},\"stream_options\":{\"include_usage\":true,\"chunk_size\":3},"
                + "\"service_tier\":\"auto\",\"user\":\"u-1\"}", OpenAiRequests.ChatBody.class);
        assertThat(bound.ignoredFields()).containsExactlyInAnyOrder("messages[0].mood", "store", "metadata",
                "stream_options.chunk_size", "service_tier");
        assertThat(bound.body().messages().getFirst().role()).isEqualTo("user");
        assertThat(bound.body().streamOptions().includeUsage()).isTrue();
        assertThat(bound.body().user()).isEqualTo("u-1");
    }

    @Test
    void integralFloatsAreIntegersButFractionsAndStringsAreNot() {
        assertThat(read("{\"max_tokens\":16.0}", OpenAiRequests.CompletionBody.class).body().maxTokens()).isEqualTo(16);
        assertThatThrownBy(() -> read("{\"max_tokens\":2.5}", OpenAiRequests.CompletionBody.class))
                .isInstanceOf(ApiException.class).hasMessage("`max_tokens` must be an integer, got a number 2.5.");
        assertThatThrownBy(() -> read("{\"n\":\"2\"}", OpenAiRequests.CompletionBody.class))
                .isInstanceOf(ApiException.class).hasMessage("`n` must be an integer, got a string \"2\".");
        assertThatThrownBy(() -> read("{\"stream\":1}", OpenAiRequests.CompletionBody.class))
                .isInstanceOf(ApiException.class).hasMessage("`stream` must be a boolean (true or false), got an "
                        + "integer 1.");
    }
}
