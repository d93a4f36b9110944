package ai.punica.jinja;

/**
 * A chat template that cannot be parsed or rendered, including a {@code raise_exception(...)} call
 * made by the template itself. {@link #line()} and {@link #column()} point into the template
 * source (1-based); both are 0 when no position is known.
 */
public final class TemplateException extends RuntimeException {
    private final int line;
    private final int column;

    TemplateException(String message, int line, int column) {
        super(line > 0 ? message + " (template line " + line + ", column " + column + ")" : message);
        this.line = line;
        this.column = column;
    }

    public int line() {
        return line;
    }

    public int column() {
        return column;
    }
}
