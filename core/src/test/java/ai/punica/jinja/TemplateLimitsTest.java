package ai.punica.jinja;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Runaway templates end in a TemplateException that says which limit they hit (issue 19, item 4). */
class TemplateLimitsTest {

    @Test
    void macroThatCallsItselfForeverStopsAtTheDepthLimit() {
        Template t = Template.compile("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        assertThatThrownBy(() -> t.render(Map.of())).isInstanceOf(TemplateException.class)
                .hasMessageContaining("template recursion deeper than 200 levels");
        assertThatThrownBy(() -> t.render(Map.of(), new Limits(5, 1000))).isInstanceOf(TemplateException.class)
                .hasMessageContaining("deeper than 5 levels");
    }

    @Test
    void recursionWithinTheLimitRenders() {
        Template t = Template.compile("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
                + "{{ f(150) | length }}");
        assertThat(t.render(Map.of())).isEqualTo("342");
    }

    @Test
    void recursiveLoopWithoutEndStopsAtTheDepthLimit() {
        Map<String, Object> node = new HashMap<>();
        node.put("name", "n");
        node.put("children", List.of(node));
        Template t = Template.compile("{% for x in [node] recursive %}{{ x.name }}{{ loop(x.children) }}{% endfor %}");
        assertThatThrownBy(() -> t.render(Map.of("node", node))).isInstanceOf(TemplateException.class)
                .hasMessageContaining("recursion deeper than");
    }

    @Test
    void outputBeyondTheLimitIsAnError() {
        Template t = Template.compile("{% for i in range(100000) %}{% for j in range(100000) %}0123456789"
                + "{% endfor %}{% endfor %}");
        assertThatThrownBy(() -> t.render(Map.of(), new Limits(200, 1_000_000))).isInstanceOf(TemplateException.class)
                .hasMessageContaining("template output exceeds 1000000 characters");
    }

    @Test
    void stringDoublingIsBoundedToo() {
        Template t = Template.compile("{% set ns = namespace(s='x') %}{% for i in range(100) %}"
                + "{% set ns.s = ns.s * 2 %}{% endfor %}{{ ns.s | length }}");
        assertThatThrownBy(() -> t.render(Map.of())).isInstanceOf(TemplateException.class)
                .hasMessageContaining("chat templates are limited to");
    }

    @Test
    void hugePowersAreRefusedNotComputed() {
        assertThatThrownBy(() -> Template.compile("{{ 2 ** 100000000 }}").render(Map.of()))
                .isInstanceOf(TemplateException.class).hasMessageContaining("bits");
        assertThat(Template.compile("{{ 2 ** 100 }}").render(Map.of())).isEqualTo("1267650600228229401496703205376");
    }

    @Test
    void deeplyNestedExpressionsAreASyntaxErrorNotAStackOverflow() {
        String deep = "(".repeat(50_000) + "1" + ")".repeat(50_000);
        assertThatThrownBy(() -> Template.compile("{{ " + deep + " }}")).isInstanceOf(TemplateException.class)
                .hasMessageContaining("nest too deeply");
    }
}
