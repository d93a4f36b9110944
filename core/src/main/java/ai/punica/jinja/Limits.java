package ai.punica.jinja;

/**
 * Bounds on one render, so that a runaway template (a macro that calls itself forever, a loop that
 * doubles a string) ends in a {@link TemplateException} instead of a StackOverflowError or an
 * exhausted heap. Python's Jinja2 has a recursion limit of about 1000 frames and no output limit;
 * chat templates need neither anywhere near these bounds.
 *
 * @param maxDepth       nested macro calls, recursive-loop levels and caller() calls
 * @param maxOutputChars characters of output, counted across captured blocks ({@code set}, {@code filter}, macros)
 */
public record Limits(int maxDepth, long maxOutputChars) {
    /** Longest string or list one operation (repeat, join) may build. */
    static final long MAX_VALUE_LENGTH = 64L << 20;

    /** 200 levels; 16 Mi characters (32 MiB), far beyond a prompt any model accepts. */
    public static final Limits DEFAULT = new Limits(200, 16L << 20);

    public Limits {
        if (maxDepth < 1 || maxOutputChars < 1) {
            throw new IllegalArgumentException("limits must be positive, got depth " + maxDepth + ", output "
                    + maxOutputChars);
        }
    }
}
