package ai.punica.jinja;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** The text filters of Jinja2 whose rules take more than a line: title, indent, truncate, wordwrap, striptags, urlencode, filesizeformat. */
final class TextFilters {
    private static final Pattern TAG = Pattern.compile("<!--.*?-->|<.*?>", Pattern.DOTALL);
    private static final Pattern ENTITY = Pattern.compile("&(#[0-9]+|#[xX][0-9a-fA-F]+|[a-zA-Z]+);");
    private static final Pattern WORD = Pattern.compile("\\w+", Pattern.UNICODE_CHARACTER_CLASS);

    private TextFilters() {
    }

    /** Markup's escape: {@code & < > " '} as entities. */
    static String escapeHtml(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 16);
        Escapes.append(sb, s, c -> switch (c) {
            case '&' -> "&amp;";
            case '<' -> "&lt;";
            case '>' -> "&gt;";
            case '"' -> "&#34;";
            case '\'' -> "&#39;";
            default -> null;
        });
        return sb.toString();
    }

    static String capitalize(String s) {
        if (s.isEmpty()) {
            return s;
        }
        int first = s.codePointAt(0);
        int n = Character.charCount(first);
        return new String(Character.toChars(Character.toTitleCase(first))) + s.substring(n).toLowerCase(Locale.ROOT);
    }

    /** Jinja's title filter: words start after whitespace or one of - ( { [ <. */
    static String jinjaTitle(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        boolean wordStart = true;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            boolean separator = PyValues.isPySpace(cp) || "-({[<".indexOf(cp) >= 0;
            if (separator) {
                sb.appendCodePoint(cp);
                wordStart = true;
            } else {
                sb.appendCodePoint(wordStart ? Character.toTitleCase(cp) : Character.toLowerCase(cp));
                wordStart = false;
            }
            i += Character.charCount(cp);
        }
        return sb.toString();
    }

    /** Python's str.title(): every letter after a non-letter starts a word. */
    static String pythonTitle(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        boolean previousCased = false;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            if (Character.isLetter(cp)) {
                sb.appendCodePoint(previousCased ? Character.toLowerCase(cp) : Character.toTitleCase(cp));
                previousCased = true;
            } else {
                sb.appendCodePoint(cp);
                previousCased = false;
            }
            i += Character.charCount(cp);
        }
        return sb.toString();
    }

    static String indent(String s, Object width, boolean first, boolean blank) {
        String indentation = PyValues.text(width) != null ? PyValues.text(width)
                : " ".repeat((int) Operators.toLong(width, "indent"));
        List<String> lines = PyValues.splitLines(s + "\n");
        StringBuilder sb = new StringBuilder();
        if (blank) {
            sb.append(String.join("\n" + indentation, lines));
        } else {
            sb.append(lines.getFirst());
            for (int i = 1; i < lines.size(); i++) {
                sb.append('\n');
                if (!lines.get(i).isEmpty()) {
                    sb.append(indentation);
                }
                sb.append(lines.get(i));
            }
        }
        return first ? indentation + sb : sb.toString();
    }

    /** Jinja's truncate: {@code leeway} (5) extra characters are tolerated before cutting. */
    static String truncate(String s, int length, boolean killWords, String end, int leeway) {
        int n = s.codePointCount(0, s.length());
        if (n <= length + leeway) {
            return s;
        }
        int keep = Math.max(0, length - end.length());
        String head = s.substring(0, s.offsetByCodePoints(0, Math.min(keep, n)));
        if (killWords) {
            return head + end;
        }
        int space = head.lastIndexOf(' ');
        return (space >= 0 ? head.substring(0, space) : head) + end;
    }

    static long wordCount(String s) {
        Matcher m = WORD.matcher(s);
        long n = 0;
        while (m.find()) {
            n++;
        }
        return n;
    }

    /** Markup.striptags: comments and tags removed, whitespace collapsed, entities decoded. */
    static String stripTags(String s) {
        String text = String.join(" ", Methods.split(TAG.matcher(s).replaceAll(""), null, -1L, false)
                .stream().map(String::valueOf).toList());
        Matcher m = ENTITY.matcher(text);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            String e = m.group(1);
            String replacement = switch (e) {
                case "amp" -> "&";
                case "lt" -> "<";
                case "gt" -> ">";
                case "quot" -> "\"";
                case "apos" -> "'";
                case "nbsp" -> "\u00a0";
                default -> e.startsWith("#x") || e.startsWith("#X")
                        ? new String(Character.toChars(Integer.parseInt(e.substring(2), 16)))
                        : e.startsWith("#") ? new String(Character.toChars(Integer.parseInt(e.substring(1))))
                        : m.group();
            };
            m.appendReplacement(sb, Matcher.quoteReplacement(replacement));
        }
        m.appendTail(sb);
        return sb.toString();
    }

    /** Python's urllib quote: UTF-8 bytes, unreserved characters and {@code safe} kept, the rest %XX. */
    static String urlQuote(String s, String safe, boolean forQuery) {
        StringBuilder sb = new StringBuilder();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xFF;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || "_.-~".indexOf(c) >= 0
                    || (c < 0x80 && safe.indexOf(c) >= 0)) {
                sb.append((char) c);
            } else if (forQuery && c == ' ') {
                sb.append('+');
            } else {
                sb.append('%').append(String.format("%02X", c));
            }
        }
        return sb.toString();
    }

    static String fileSizeFormat(Object value, boolean binary) {
        double bytes = ((Number) Filters.toFloat(value, 0.0)).doubleValue();
        int base = binary ? 1024 : 1000;
        String[] prefixes = binary ? new String[] {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"}
                : new String[] {"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
        if (bytes == 1) {
            return "1 Byte";
        }
        if (bytes < base) {
            return (long) bytes + " Bytes";
        }
        double unit = base;
        String prefix = prefixes[0];
        for (int i = 0; i < prefixes.length; i++) {
            unit = Math.pow(base, i + 2);
            prefix = prefixes[i];
            if (bytes < unit) {
                break;
            }
        }
        return PyFormat.fixed(base * bytes / unit, 1) + " " + prefix;
    }

    /** Jinja's wordwrap (Python's textwrap without hyphen splitting): each line of the text wrapped on its own. */
    static String wordWrap(String s, int width, boolean breakLongWords, String wrapString) {
        List<String> out = new ArrayList<>();
        for (String paragraph : PyValues.splitLines(s)) {
            out.addAll(wrapLine(paragraph, width, breakLongWords));
        }
        return String.join(wrapString, out);
    }

    private static List<String> wrapLine(String text, int width, boolean breakLongWords) {
        List<String> chunks = new ArrayList<>();
        Matcher m = Pattern.compile("\\s+|\\S+").matcher(text);
        while (m.find()) {
            chunks.add(m.group());
        }
        List<String> lines = new ArrayList<>();
        StringBuilder line = new StringBuilder();
        int i = 0;
        while (i < chunks.size()) {
            if (line.isEmpty() && chunks.get(i).isBlank() && !lines.isEmpty()) {
                i++;
                continue;
            }
            String chunk = chunks.get(i);
            if (line.length() + chunk.length() <= width) {
                line.append(chunk);
                i++;
            } else if (line.isEmpty() || (chunk.length() > width && breakLongWords)) {
                if (breakLongWords && !chunk.isBlank()) {
                    int room = Math.max(1, width - line.length());
                    line.append(chunk, 0, Math.min(room, chunk.length()));
                    chunks.set(i, chunk.substring(Math.min(room, chunk.length())));
                    if (chunks.get(i).isEmpty()) {
                        i++;
                    }
                } else {
                    line.append(chunk);
                    i++;
                }
                lines.add(line.toString().stripTrailing());
                line.setLength(0);
            } else {
                lines.add(line.toString().stripTrailing());
                line.setLength(0);
            }
        }
        if (!line.toString().isBlank()) {
            lines.add(line.toString().stripTrailing());
        }
        return lines;
    }
}
