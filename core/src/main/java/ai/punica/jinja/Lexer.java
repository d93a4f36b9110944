package ai.punica.jinja;

import java.util.ArrayList;
import java.util.List;

/**
 * Splits a Jinja2 template into text and tag tokens with HF's whitespace rules: {@code trim_blocks}
 * (the newline after a block or comment tag is dropped), {@code lstrip_blocks} (spaces and tabs
 * before a block or comment tag at the start of a line are dropped), {@code -} on a tag strips all
 * whitespace on that side, {@code +} disables lstrip/trim for that tag, and one trailing newline
 * of the template is dropped ({@code keep_trailing_newline=False}).
 */
final class Lexer {

    enum Kind { TEXT, VAR_BEGIN, VAR_END, BLOCK_BEGIN, BLOCK_END, NAME, STRING, INT, FLOAT, OP, EOF }

    record Token(Kind kind, String text, int pos) {
        boolean is(Kind k, String t) {
            return kind == k && text.equals(t);
        }

        boolean isName(String t) {
            return kind == Kind.NAME && text.equals(t);
        }

        boolean isOp(String t) {
            return kind == Kind.OP && text.equals(t);
        }
    }

    private static final String[] OPERATORS = {
        "//", "**", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "~", "|", ".", ",", ":", "(", ")",
        "[", "]", "{", "}", "=",
    };

    private final String src;
    private final List<Token> tokens = new ArrayList<>();

    private Lexer(String source) {
        // Jinja reads "\r\n" and "\r" as "\n" (its newline_sequence) everywhere, string literals included.
        String normalized = source.replace("\r\n", "\n").replace('\r', '\n');
        this.src = normalized.endsWith("\n") ? normalized.substring(0, normalized.length() - 1) : normalized;
    }

    static List<Token> tokenize(String source) {
        Lexer lexer = new Lexer(source);
        lexer.run();
        return lexer.tokens;
    }

    private TemplateException error(String message, int pos) {
        return TemplateException.at(message, src, pos);
    }

    private void run() {
        int pos = 0;
        int n = src.length();
        while (pos < n) {
            int tag = nextTag(pos);
            String text = src.substring(pos, tag);
            if (tag < n) {
                char kind = src.charAt(tag + 1);
                char sign = tag + 2 < n ? src.charAt(tag + 2) : ' ';
                if (sign == '-') {
                    text = stripTrailing(text);
                } else if (sign != '+' && kind != '{') {
                    int lineStart = text.lastIndexOf('\n') + 1;
                    boolean lineStarting = pos == 0 || src.charAt(pos - 1) == '\n';
                    if ((lineStart > 0 || lineStarting) && isBlank(text, lineStart)) {
                        text = text.substring(0, lineStart);
                    }
                }
            }
            if (!text.isEmpty()) {
                tokens.add(new Token(Kind.TEXT, text, pos));
            }
            if (tag >= n) {
                break;
            }
            char kind = src.charAt(tag + 1);
            int inner = tag + 2;
            if (inner < n && (src.charAt(inner) == '-' || src.charAt(inner) == '+')) {
                inner++;
            }
            if (kind == '#') {
                int end = src.indexOf("#}", inner);
                if (end < 0) {
                    throw error("unclosed comment: missing '#}'", tag);
                }
                pos = afterTagEnd(end, end + 2, true);
                continue;
            }
            if (kind == '%' && isRawStart(inner)) {
                pos = lexRaw(tag, inner);
                continue;
            }
            tokens.add(new Token(kind == '{' ? Kind.VAR_BEGIN : Kind.BLOCK_BEGIN, src.substring(tag, inner), tag));
            pos = lexInside(inner, kind == '{' ? "}}" : "%}");
        }
        tokens.add(new Token(Kind.EOF, "", n));
    }

    /** Position after a tag ending at {@code endStart..endStop}, applying '-' and trim_blocks. */
    private int afterTagEnd(int endStart, int endStop, boolean block) {
        char sign = endStart > 0 ? src.charAt(endStart - 1) : ' ';
        int pos = endStop;
        if (sign == '-') {
            while (pos < src.length() && Character.isWhitespace(src.charAt(pos))) {
                pos++;
            }
        } else if (block && sign != '+' && pos < src.length() && src.charAt(pos) == '\n') {
            pos++;
        }
        return pos;
    }

    private int nextTag(int from) {
        for (int i = from; i + 1 < src.length(); i++) {
            if (src.charAt(i) == '{') {
                char c = src.charAt(i + 1);
                if (c == '{' || c == '%' || c == '#') {
                    return i;
                }
            }
        }
        return src.length();
    }

    private static String stripTrailing(String text) {
        int end = text.length();
        while (end > 0 && Character.isWhitespace(text.charAt(end - 1))) {
            end--;
        }
        return text.substring(0, end);
    }

    private static boolean isBlank(String text, int from) {
        for (int i = from; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != 0x0B) {
                return false;
            }
        }
        return true;
    }

    private boolean isRawStart(int inner) {
        int i = skipSpaces(inner);
        if (!src.startsWith("raw", i)) {
            return false;
        }
        i = skipSpaces(i + 3);
        return src.startsWith("%}", i) || src.startsWith("-%}", i) || src.startsWith("+%}", i);
    }

    /** {% raw %}...{% endraw %}: the content is text, untouched. */
    private int lexRaw(int tag, int inner) {
        int open = src.indexOf("%}", inner);
        int contentStart = afterTagEnd(open, open + 2, true);
        int search = contentStart;
        while (true) {
            int candidate = src.indexOf("{%", search);
            if (candidate < 0) {
                throw error("unclosed {% raw %}: missing {% endraw %}", tag);
            }
            int i = candidate + 2;
            if (i < src.length() && (src.charAt(i) == '-' || src.charAt(i) == '+')) {
                i++;
            }
            i = skipSpaces(i);
            if (src.startsWith("endraw", i)) {
                int close = src.indexOf("%}", i);
                if (close < 0) {
                    throw error("unclosed tag: missing '%}'", candidate);
                }
                String content = src.substring(contentStart, candidate);
                if (src.charAt(candidate + 2) == '-') {
                    content = stripTrailing(content);
                }
                if (!content.isEmpty()) {
                    tokens.add(new Token(Kind.TEXT, content, contentStart));
                }
                return afterTagEnd(close, close + 2, true);
            }
            search = candidate + 2;
        }
    }

    private int skipSpaces(int i) {
        while (i < src.length() && Character.isWhitespace(src.charAt(i))) {
            i++;
        }
        return i;
    }

    /** Lexes expression tokens up to the closing {@code end} ("}}" or "%}") at bracket depth 0. */
    private int lexInside(int pos, String end) {
        int depth = 0;
        int n = src.length();
        int start = pos;
        while (true) {
            pos = skipSpaces(pos);
            if (pos >= n) {
                throw error("unclosed tag: missing '" + end + "'", start - 2);
            }
            char c = src.charAt(pos);
            if (depth == 0) {
                int stop = -1;
                if (src.startsWith(end, pos)) {
                    stop = pos;
                } else if ((c == '-' || c == '+') && src.startsWith(end, pos + 1)) {
                    stop = pos + 1;
                }
                if (stop >= 0) {
                    boolean block = end.equals("%}");
                    tokens.add(new Token(block ? Kind.BLOCK_END : Kind.VAR_END, end, stop));
                    return afterTagEnd(stop, stop + 2, block);
                }
            }
            if (Character.isLetter(c) || c == '_') {
                int s = pos;
                while (pos < n && (Character.isLetterOrDigit(src.charAt(pos)) || src.charAt(pos) == '_')) {
                    pos++;
                }
                tokens.add(new Token(Kind.NAME, src.substring(s, pos), s));
            } else if (Character.isDigit(c)) {
                pos = lexNumber(pos);
            } else if (c == '\'' || c == '"') {
                pos = lexString(pos);
            } else {
                String op = null;
                for (String candidate : OPERATORS) {
                    if (src.startsWith(candidate, pos)) {
                        op = candidate;
                        break;
                    }
                }
                if (op == null) {
                    throw error("unexpected character '" + c + "'", pos);
                }
                if (op.equals("(") || op.equals("[") || op.equals("{")) {
                    depth++;
                } else if (op.equals(")") || op.equals("]") || op.equals("}")) {
                    depth--;
                }
                tokens.add(new Token(Kind.OP, op, pos));
                pos += op.length();
            }
        }
    }

    private int lexNumber(int pos) {
        int s = pos;
        int n = src.length();
        if (src.charAt(pos) == '0' && pos + 1 < n && "xXoObB".indexOf(src.charAt(pos + 1)) >= 0) {
            pos += 2;
            while (pos < n && (Character.isLetterOrDigit(src.charAt(pos)) || src.charAt(pos) == '_')) {
                pos++;
            }
            tokens.add(new Token(Kind.INT, src.substring(s, pos).replace("_", ""), s));
            return pos;
        }
        while (pos < n && (Character.isDigit(src.charAt(pos)) || src.charAt(pos) == '_')) {
            pos++;
        }
        boolean isFloat = false;
        if (pos + 1 < n && src.charAt(pos) == '.' && Character.isDigit(src.charAt(pos + 1))) {
            isFloat = true;
            pos++;
            while (pos < n && (Character.isDigit(src.charAt(pos)) || src.charAt(pos) == '_')) {
                pos++;
            }
        }
        if (pos < n && (src.charAt(pos) == 'e' || src.charAt(pos) == 'E')) {
            int e = pos + 1;
            if (e < n && (src.charAt(e) == '+' || src.charAt(e) == '-')) {
                e++;
            }
            if (e < n && Character.isDigit(src.charAt(e))) {
                isFloat = true;
                pos = e;
                while (pos < n && Character.isDigit(src.charAt(pos))) {
                    pos++;
                }
            }
        }
        tokens.add(new Token(isFloat ? Kind.FLOAT : Kind.INT, src.substring(s, pos).replace("_", ""), s));
        return pos;
    }

    /** A Python string literal with backslash escapes. */
    private int lexString(int pos) {
        char quote = src.charAt(pos);
        int s = pos++;
        StringBuilder sb = new StringBuilder();
        while (true) {
            if (pos >= src.length()) {
                throw error("unterminated string literal", s);
            }
            char c = src.charAt(pos++);
            if (c == quote) {
                break;
            }
            if (c != '\\' || pos >= src.length()) {
                sb.append(c);
                continue;
            }
            char e = src.charAt(pos++);
            switch (e) {
                case 'n' -> sb.append('\n');
                case 't' -> sb.append('\t');
                case 'r' -> sb.append('\r');
                case 'b' -> sb.append('\b');
                case 'f' -> sb.append('\f');
                case 'v' -> sb.append((char) 0x0B);
                case 'a' -> sb.append((char) 0x07);
                case '0', '1', '2', '3', '4', '5', '6', '7' -> {
                    int end = pos - 1;
                    while (end < src.length() && end < pos + 2 && src.charAt(end) >= '0' && src.charAt(end) <= '7') {
                        end++;
                    }
                    sb.appendCodePoint(Integer.parseInt(src.substring(pos - 1, end), 8));
                    pos = end;
                }
                case 'N' -> {
                    int close = src.indexOf('}', pos);
                    if (pos >= src.length() || src.charAt(pos) != '{' || close < 0) {
                        throw error("malformed \\N character escape", pos - 2);
                    }
                    try {
                        sb.appendCodePoint(Character.codePointOf(src.substring(pos + 1, close)));
                    } catch (IllegalArgumentException ex) {
                        throw error("unknown Unicode character name '" + src.substring(pos + 1, close) + "'", pos - 2);
                    }
                    pos = close + 1;
                }
                case '\\', '\'', '"' -> sb.append(e);
                case '\n' -> { }
                case 'x', 'u', 'U' -> {
                    int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (pos + len > src.length()) {
                        throw error("truncated \\" + e + " escape", pos - 2);
                    }
                    try {
                        sb.appendCodePoint(Integer.parseInt(src.substring(pos, pos + len), 16));
                    } catch (IllegalArgumentException ex) {
                        throw error("invalid \\" + e + " escape", pos - 2);
                    }
                    pos += len;
                }
                default -> sb.append('\\').append(e);
            }
        }
        tokens.add(new Token(Kind.STRING, sb.toString(), s));
        return pos;
    }
}
