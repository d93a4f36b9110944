package ai.punica.engine;

/** A request value out of range; the message says which, with what value, and the allowed range. */
public final class InvalidRequestException extends EngineException {
    public InvalidRequestException(String param, String message) {
        super(Kind.INVALID_REQUEST, param, message);
    }
}
