package ai.punica.model;

/**
 * An unreadable or inconsistent model or adapter file. The message always starts with the file (or
 * directory) and names the field or tensor that is wrong, the value found, and what was expected, so that
 * the person who points Punica-J at a checkpoint can fix it without a debugger.
 */
public final class ModelFormatException extends RuntimeException {

    public ModelFormatException(String message) {
        super(message);
    }

    public ModelFormatException(String message, Throwable cause) {
        super(message, cause);
    }
}
