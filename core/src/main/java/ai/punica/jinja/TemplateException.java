package ai.punica.jinja;

/**
 * A chat template that cannot be parsed or rendered, including a {@code raise_exception(...)} call
 * made by the template itself. {@link #line()} and {@link #column()} point into the template
 * source (1-based); both are 0 when no position is known.
 */
public final class TemplateException extends RuntimeException {
    private final int line;
    private final int column;

    /** A failure of the whole template, at no position in it. */
    TemplateException(String message) {
        this(message, 0, 0);
    }

    private TemplateException(String message, int line, int column) {
        super(line > 0 ? message + " (template line " + line + ", column " + column + ")" : message);
        this.line = line;
        this.column = column;
    }

    /** A failure at offset {@code pos} of {@code source}, named by its line and column. */
    static TemplateException at(String message, String source, int pos) {
        int line = 1;
        int column = 1;
        for (int i = 0; i < Math.min(pos, source.length()); i++) {
            if (source.charAt(i) == '\n') {
                line++;
                column = 1;
            } else {
                column++;
            }
        }
        return new TemplateException(message, line, column);
    }

    public int line() {
        return line;
    }

    public int column() {
        return column;
    }
}
