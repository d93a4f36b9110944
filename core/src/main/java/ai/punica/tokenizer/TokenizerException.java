package ai.punica.tokenizer;

/**
 * A tokenizer.json or tokenizer_config.json that cannot be used: the message names the file, the
 * field (as a JSON path such as {@code model.merges[17]}) and what was found there.
 */
public final class TokenizerException extends RuntimeException {
    public TokenizerException(String message) {
        super(message);
    }

    public TokenizerException(String message, Throwable cause) {
        super(message, cause);
    }
}
