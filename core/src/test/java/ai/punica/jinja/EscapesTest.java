package ai.punica.jinja;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The three escapings a chat template can ask for, through templates: {@code tojson} (JSON, non-ASCII kept unless
 * ensure_ascii), Python's repr of a string inside a list, and {@code escape} (HTML markup).
 */
class EscapesTest {
    private static final String TEXT = "a\"b\\c\nd\re\tf\bg\fh\u0001i\u007fj'k<l>m&né";

    private static String render(String template) {
        return Template.compile(template).render(Map.of("s", TEXT, "list", List.of("it's", "say \"hi\"\n")));
    }

    @Test
    void tojsonEscapesQuotesBackslashesAndControlCharactersAndNonAsciiWhenAsked() {
        assertThat(render("{{ s | tojson }}"))
                .isEqualTo("\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\u007fj'k<l>m&né\"");
        assertThat(render("{{ s | tojson(ensure_ascii=true) }}")).endsWith("m&n\\u00e9\"");
    }

    @Test
    void reprPicksTheQuoteAndEscapesItAndControlCharacters() {
        assertThat(render("{{ list }}")).isEqualTo("[\"it's\", 'say \"hi\"\\n']");
        assertThat(render("{{ [s] }}")).isEqualTo("['a\"b\\\\c\\nd\\re\\tf\\x08g\\x0ch\\x01i\\x7fj\\'k<l>m&né']");
    }

    @Test
    void escapeWritesMarkupEntities() {
        assertThat(render("{{ s | escape }}")).endsWith("j&#39;k&lt;l&gt;m&amp;né");
        assertThat(render("{{ '\"' | escape }}")).isEqualTo("&#34;");
    }
}
