package ai.punica.engine;

/**
 * A request the engine refuses or cannot finish. {@link #kind()} tells the server which HTTP status
 * and OpenAI error type to answer with.
 */
public class EngineException extends RuntimeException {

    public enum Kind {
        /** A value of the request is out of range (HTTP 400). */
        INVALID_REQUEST,
        /** The model or adapter named does not exist (HTTP 404). */
        NOT_FOUND,
        /** The prompt does not fit the context (HTTP 400). */
        PROMPT_TOO_LONG,
        /** The waiting queue is full (HTTP 429). */
        OVERLOADED,
        /** The engine is starting or stopping (HTTP 503). */
        UNAVAILABLE,
        /** A bug or a device failure (HTTP 500). */
        INTERNAL
    }

    private final Kind kind;
    private final String param;

    public EngineException(Kind kind, String param, String message) {
        super(message);
        this.kind = kind;
        this.param = param;
    }

    public EngineException(Kind kind, String message, Throwable cause) {
        super(message, cause);
        this.kind = kind;
        this.param = null;
    }

    public Kind kind() {
        return kind;
    }

    /** The request field at fault, or null. */
    public String param() {
        return param;
    }
}
