package ai.punica.server;

import ai.punica.engine.EngineException;

/**
 * A request the server answers with an HTTP error status and an OpenAI-shaped error body
 * ({@code {"error":{"message","type","param","code"}}}). Thrown anywhere below a handler; the
 * handler wrapper in {@link PunicaServer} turns it into the response.
 *
 * <p>Types and codes follow OpenAI's API where it has one (clients switch on {@code code}, and the
 * official SDKs pick their exception class from the status).
 */
final class ApiException extends RuntimeException {
    private final int status;
    private final String type;
    private final String param;
    private final String code;

    ApiException(int status, String type, String param, String code, String message) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
    }

    static ApiException badRequest(String param, String message) {
        return new ApiException(400, "invalid_request_error", param, null, message);
    }

    static ApiException contextLengthExceeded(String param, String message) {
        return new ApiException(400, "invalid_request_error", param, "context_length_exceeded", message);
    }

    static ApiException unauthorized(String message) {
        return new ApiException(401, "invalid_request_error", null, "invalid_api_key", message);
    }

    static ApiException modelNotFound(String model) {
        return new ApiException(404, "invalid_request_error", "model", "model_not_found",
                "The model `" + model + "` does not exist.");
    }

    static ApiException notFound(String param, String code, String message) {
        return new ApiException(404, "invalid_request_error", param, code, message);
    }

    static ApiException methodNotAllowed(String message) {
        return new ApiException(405, "invalid_request_error", null, "method_not_allowed", message);
    }

    /** The body could not be read (broken chunked framing, say): the connection cannot carry another request. */
    static ApiException unreadableBody(String reason) {
        return new ApiException(400, "invalid_request_error", null, UNREADABLE_BODY,
                "Could not read the request body: " + reason);
    }

    private static final String UNREADABLE_BODY = "unreadable_body";

    static ApiException bodyTooLarge(long limit) {
        return new ApiException(413, "invalid_request_error", null, "request_too_large",
                "The request body exceeds this server's limit of " + limit + " bytes. Send a shorter prompt, "
                        + "or start the server with a larger --max-body-bytes.");
    }

    static ApiException overloaded(String message) {
        return new ApiException(429, "rate_limit_error", null, "rate_limit_exceeded", message);
    }

    static ApiException unavailable(String message) {
        return new ApiException(503, "server_error", null, "service_unavailable", message);
    }

    static ApiException internal(String message) {
        return new ApiException(500, "server_error", null, null, message);
    }

    /** The status and type that each engine refusal maps to (see {@link EngineException.Kind}). */
    static ApiException from(EngineException e) {
        return switch (e.kind()) {
            case INVALID_REQUEST -> badRequest(e.param(), e.getMessage());
            case NOT_FOUND -> new ApiException(404, "invalid_request_error", e.param(), "model_not_found",
                    e.getMessage());
            case PROMPT_TOO_LONG -> contextLengthExceeded(e.param(), e.getMessage());
            case OVERLOADED -> overloaded(e.getMessage());
            case UNAVAILABLE -> unavailable(e.getMessage());
            case INTERNAL -> internal(e.getMessage());
        };
    }

    int status() {
        return status;
    }

    /** The response body: {@code {"error":{"message","type","param","code"}}}. */
    OpenAiJson.ErrorBody body() {
        return new OpenAiJson.ErrorBody(new OpenAiJson.ErrorDetail(getMessage(), type, param, code));
    }

    /** Whether the rest of the request is unread, so the connection must close after the answer. */
    boolean closesConnection() {
        return status == 413 || UNREADABLE_BODY.equals(code);
    }

    /** Whether a client may retry the same request later (429, 503): answered with Retry-After. */
    boolean retryable() {
        return status == 429 || status == 503;
    }
}
