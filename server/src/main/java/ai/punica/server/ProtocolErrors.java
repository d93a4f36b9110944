package ai.punica.server;

import io.helidon.http.DirectHandler;
import io.helidon.http.HeaderNames;
import io.helidon.http.ServerResponseHeaders;
import io.helidon.http.Status;
import io.helidon.webserver.http.DirectHandlers;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Answers for requests the HTTP layer refuses before any route sees them (a malformed request line,
 * header or chunk, a missing Host, a body too large): the same OpenAI error body as every other
 * error, instead of an empty one, and one DEBUG line instead of a logged stack trace.
 */
final class ProtocolErrors implements DirectHandler {
    private static final Logger log = LoggerFactory.getLogger(ProtocolErrors.class);

    static DirectHandlers handlers() {
        ProtocolErrors handler = new ProtocolErrors();
        DirectHandlers.Builder b = DirectHandlers.builder();
        for (EventType type : EventType.values()) {
            b.addHandler(type, handler);
        }
        return b.build();
    }

    @Override
    public TransportResponse handle(TransportRequest request, EventType type, Status status,
                                    ServerResponseHeaders headers, Throwable thrown) {
        return handle(request, type, status, headers, thrown == null ? null : thrown.getMessage());
    }

    @Override
    public TransportResponse handle(TransportRequest request, EventType type, Status status,
                                    ServerResponseHeaders headers, Throwable thrown, System.Logger ignored) {
        return handle(request, type, status, headers, thrown);
    }

    @Override
    public TransportResponse handle(TransportRequest request, EventType type, Status status,
                                    ServerResponseHeaders headers, String message) {
        String detail = printable(message);
        log.debug("refused a malformed request ({} {}): {}", status.code(), status.reasonPhrase(), detail);
        String text = switch (type) {
            case PAYLOAD_TOO_LARGE -> "The request is too large";
            case HTTP_VERSION_NOT_SUPPORTED -> "This server speaks HTTP/1.1 and HTTP/1.0";
            case INTERNAL_ERROR -> "Internal server error";
            default -> "Malformed HTTP request";
        } + (detail.isEmpty() ? "." : ": " + detail + ".");
        ApiException error = new ApiException(status.code(), status.code() >= 500 ? "server_error"
                : "invalid_request_error", null, null, text);
        return TransportResponse.builder()
                .status(status)
                .headers(headers)
                .header(HeaderNames.CONTENT_TYPE, "application/json")
                .keepAlive(false)
                .entity(OpenAiJson.bytes(error.body()))
                .build();
    }

    /** Helidon's message may quote the client's bytes: keep it short and printable ASCII. */
    private static String printable(String message) {
        if (message == null) {
            return "";
        }
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < message.length() && out.length() < 200; i++) {
            char c = message.charAt(i);
            out.append(c >= 0x20 && c < 0x7f ? c : '?');
        }
        return out.toString().strip();
    }
}
