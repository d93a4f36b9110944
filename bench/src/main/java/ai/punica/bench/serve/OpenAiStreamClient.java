package ai.punica.bench.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.stream.Stream;

/**
 * Sends one request to an OpenAI-compatible server ({@code POST /v1/completions} or {@code /v1/chat/completions}
 * with {@code "stream": true} and {@code stream_options.include_usage}) and times its Server-Sent Events as they
 * arrive. Only standard OpenAI routes and fields are used, plus vLLM's {@code ignore_eos} when asked for (so the
 * output has exactly max_tokens tokens, as benchmarks need; vLLM and Punica-J accept it).
 */
public final class OpenAiStreamClient {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * @param chat         use /v1/chat/completions with the prompt as one user message
     * @param ignoreEos    send vLLM's ignore_eos: true
     * @param temperature  sampling temperature (0: greedy)
     */
    public record Options(URI baseUrl, String apiKey, boolean chat, boolean ignoreEos, double temperature,
                          Duration timeout) {
    }

    private final HttpClient http;
    private final Options options;
    private final URI endpoint;

    public OpenAiStreamClient(HttpClient http, Options options) {
        this.http = http;
        this.options = options;
        String base = options.baseUrl().toString().replaceAll("/+$", "");
        this.endpoint = URI.create(base + (options.chat() ? "/chat/completions" : "/completions"));
    }

    /**
     * An HTTP/1.1 client (SSE over HTTP/1.1 is what every OpenAI-compatible server speaks). A POST sent on a
     * pooled keep-alive connection that the server closed meanwhile fails with "header parser received no
     * bytes" before the server saw it; the JDK retries that only for idempotent methods unless
     * {@code jdk.httpclient.enableAllMethodRetry} is set (read once, when the client first sends), so it is set
     * here: such a failure is the client's pool, not the server under test.
     */
    public static HttpClient newHttpClient() {
        System.setProperty("jdk.httpclient.enableAllMethodRetry", "true");
        return HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10))
                .build();
    }

    /** The request body for {@code spec}. */
    String body(RequestSpec spec) {
        ObjectNode body = JSON.createObjectNode().put("model", spec.model());
        if (options.chat()) {
            body.putArray("messages").addObject().put("role", "user").put("content", spec.sample().prompt());
        } else {
            body.put("prompt", spec.sample().prompt());
        }
        body.put("max_tokens", spec.sample().maxTokens()).put("temperature", options.temperature())
                .put("stream", true);
        body.putObject("stream_options").put("include_usage", true);
        if (options.ignoreEos()) {
            body.put("ignore_eos", true);
        }
        return body.toString();
    }

    /** Sends {@code spec} now and returns when its stream ends; times are seconds since {@code originNanos}. */
    public RequestRecord send(RequestSpec spec, long originNanos) {
        HttpRequest.Builder b = HttpRequest.newBuilder(endpoint).timeout(options.timeout())
                .header("Content-Type", "application/json").header("Accept", "text/event-stream")
                .POST(HttpRequest.BodyPublishers.ofString(body(spec)));
        if (options.apiKey() != null) {
            b.header("Authorization", "Bearer " + options.apiKey());
        }
        List<Double> chunks = new ArrayList<>();
        int promptTokens = -1;
        int outputTokens = -1;
        double sent = seconds(originNanos);
        String errorKind = null;
        String errorMessage = null;
        try {
            HttpResponse<Stream<String>> response = http.send(b.build(), HttpResponse.BodyHandlers.ofLines());
            try (Stream<String> lines = response.body()) {
                if (response.statusCode() != 200) {
                    errorKind = "http_" + response.statusCode();
                    errorMessage = errorMessage(String.join("\n", lines.toList()));
                } else {
                    boolean done = false;
                    Iterator<String> it = lines.iterator();
                    while (it.hasNext()) {
                        String line = it.next();
                        double now = seconds(originNanos);
                        if (!line.startsWith("data:")) {
                            continue; // blank separators, ": keep-alive" comments, event: names
                        }
                        String data = line.substring(5).trim();
                        if (data.equals("[DONE]")) {
                            done = true;
                            break;
                        }
                        JsonNode event = JSON.readTree(data);
                        if (event.has("error")) {
                            errorKind = "stream_error";
                            errorMessage = errorMessage(data);
                            break;
                        }
                        if (hasText(event)) {
                            chunks.add(now);
                        } else if (chunks.isEmpty() && finished(event)) {
                            // Every token decoded to no text (special tokens): the finish is the first output.
                            chunks.add(now);
                        }
                        JsonNode usage = event.get("usage");
                        if (usage != null && usage.isObject()) {
                            promptTokens = usage.path("prompt_tokens").asInt(promptTokens);
                            outputTokens = usage.path("completion_tokens").asInt(outputTokens);
                        }
                    }
                    if (!done && errorKind == null) {
                        errorKind = "incomplete";
                        errorMessage = "the stream ended without data: [DONE]";
                    }
                }
            }
        } catch (HttpConnectTimeoutException | ConnectException e) {
            errorKind = "connect";
            errorMessage = String.valueOf(e.getMessage());
        } catch (HttpTimeoutException e) {
            errorKind = "timeout";
            errorMessage = String.valueOf(e.getMessage());
        } catch (JsonProcessingException e) {
            errorKind = "stream_error";
            errorMessage = "a data: line is not JSON: " + e.getOriginalMessage();
        } catch (IOException | UncheckedIOException e) {
            errorKind = "io";
            errorMessage = e.getClass().getSimpleName() + ": " + e.getMessage();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            errorKind = "interrupted";
            errorMessage = "the run was stopped";
        } catch (RuntimeException e) {
            // Whatever else goes wrong with one request is that request's failure, not the run's.
            errorKind = "client";
            errorMessage = e.toString();
        }
        double end = seconds(originNanos);
        double[] chunkSeconds = chunks.stream().mapToDouble(Double::doubleValue).toArray();
        return new RequestRecord(spec.index(), spec.model(), spec.arrivalSeconds(), sent, chunkSeconds, end,
                promptTokens, outputTokens >= 0 ? outputTokens : chunkSeconds.length, errorKind, errorMessage);
    }

    private static boolean hasText(JsonNode event) {
        JsonNode choices = event.get("choices");
        if (choices == null || !choices.isArray()) {
            return false;
        }
        for (JsonNode c : choices) {
            String text = c.has("delta") ? c.path("delta").path("content").asText("") : c.path("text").asText("");
            if (!text.isEmpty()) {
                return true;
            }
        }
        return false;
    }

    private static boolean finished(JsonNode event) {
        for (JsonNode c : event.path("choices")) {
            if (c.hasNonNull("finish_reason")) {
                return true;
            }
        }
        return false;
    }

    /** error.message of an OpenAI error body, else the body itself (abbreviated). */
    private static String errorMessage(String body) {
        try {
            JsonNode n = JSON.readTree(body);
            if (n != null && n.path("error").path("message").isTextual()) {
                return n.path("error").path("message").asText();
            }
        } catch (JsonProcessingException e) {
            // not JSON: the body is the message
        }
        return body.length() <= 200 ? body : body.substring(0, 197) + "...";
    }

    private static double seconds(long originNanos) {
        return (System.nanoTime() - originNanos) / 1e9;
    }
}
