package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ai.punica.jinja.TemplateException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.LocalDateTime;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ChatTemplateTest {

    private static Map<String, Object> message(String role, String content) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("role", role);
        m.put("content", content);
        return m;
    }

    private static final List<Map<String, Object>> CONVERSATION = List.of(
            message("system", "You are helpful."),
            message("user", "Hi there!"),
            message("assistant", "  Hello! How can I help?  "),
            message("user", "What is 2+2?"));

    private static String render(String template, Map<String, Object> variables) {
        return ChatTemplate.compile(template, "<s>", "</s>").render(CONVERSATION, false, variables);
    }

    private static String render(String template) {
        Map<String, Object> variables = new LinkedHashMap<>();
        variables.put("msgs", List.of(message("system", "S"), Map.of("role", "user", "content", "U1", "extra", 1),
                message("assistant", "A1"), message("user", "U2")));
        variables.put("now", LocalDateTime.of(2024, 7, 26, 14, 5, 9));
        return render(template, variables);
    }

    private static String resource(String name) {
        try (InputStream in = ChatTemplateTest.class.getResourceAsStream("/chat_templates/" + name)) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    // ---- real templates ----

    @Test
    void fixtureTemplateRendersRolesAndGenerationPrompt() {
        ChatTemplate template = ReferenceTokenizers.fixture().chatTemplate().orElseThrow();
        String prompt = template.render(List.of(message("system", "Be brief."), message("user", "hi"),
                message("assistant", "hello"), message("user", "bye")), true, Map.of());
        assertThat(prompt).isEqualTo("<s><|system|>\nBe brief.\n<|user|>\nhi\n<|assistant|>\nhello</s>\n"
                + "<|user|>\nbye\n<|assistant|>\n");
        assertThat(template.render(List.of(message("developer", "Be brief."), message("user", "hi"),
                message("tool", "42")), false, Map.of()))
                .isEqualTo("<s><|system|>\nBe brief.\n<|user|>\nhi\n<|user|>\ntool result: 42\n");
        assertThatThrownBy(() -> template.render(List.of(message("wizard", "x")), false, Map.of()))
                .isInstanceOf(TemplateException.class).hasMessageStartingWith("Unknown role: wizard");
    }

    @Test
    void llama3TemplateFollowsTheDocumentedPromptFormat() {
        // <|begin_of_text|> then per message: <|start_header_id|>role<|end_header_id|>\n\n content.strip() <|eot_id|>,
        // then the assistant header (this template always adds it).
        ChatTemplate template = ReferenceTokenizers.llama3().chatTemplate().orElseThrow();
        String prompt = template.render(List.of(message("system", "You are a helpful assistant."),
                message("user", "  What is the capital of France?\n")), true, Map.of());
        assertThat(prompt).isEqualTo("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                + "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
                + "What is the capital of France?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
        int[] ids = ReferenceTokenizers.llama3().encode(prompt, false);
        assertThat(ids[0]).isEqualTo(128000);
        assertThat(ids[1]).isEqualTo(128006);
    }

    @Test
    void llama31TemplatePutsKnowledgeDateAndTodayInTheSystemHeader() {
        ChatTemplate template = ChatTemplate.compile(resource("llama3_1.jinja"), "<|begin_of_text|>", "<|eot_id|>");
        String prompt = template.render(CONVERSATION, true, Map.of());
        assertThat(prompt).isEqualTo("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                + "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
                + "You are helpful.<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nHi there!<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                + "<|start_header_id|>assistant<|end_header_id|>\n\n");
    }

    @Test
    void llama31TemplateListsToolsAsIndentedJsonInTheSystemMessage() {
        ChatTemplate template = ChatTemplate.compile(resource("llama3_1.jinja"), "<s>", "</s>");
        Map<String, Object> tool = orderedMap("type", "function", "function", orderedMap(
                "name", "get_weather", "parameters", orderedMap("type", "object", "required", List.of("city"))));
        String prompt = template.render(CONVERSATION, false,
                Map.of("tools", List.of(tool), "tools_in_user_message", false, "date_string", "01 Jan 2025"));
        assertThat(prompt).startsWith("<s><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
                + "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n"
                + "You have access to the following functions.");
        assertThat(prompt).contains("\"function\": {\n        \"name\": \"get_weather\",\n        \"parameters\": {\n"
                + "            \"type\": \"object\",\n            \"required\": [\n                \"city\"\n"
                + "            ]\n        }\n    }\n}\n\nYou are helpful.<|eot_id|>");
    }

    private static Map<String, Object> orderedMap(Object... keyValues) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < keyValues.length; i += 2) {
            m.put((String) keyValues[i], keyValues[i + 1]);
        }
        return m;
    }

    @Test
    void qwen3TemplateRendersToolCallsToolResponsesAndDropsOldReasoning() {
        ChatTemplate template = ChatTemplate.compile(resource("qwen3.jinja"), null, "<|im_end|>");
        List<Map<String, Object>> messages = List.of(
                message("user", "Weather in Paris?"),
                orderedMap("role", "assistant", "content", "", "tool_calls", List.of(orderedMap("type", "function",
                        "function", orderedMap("name", "get_weather", "arguments", orderedMap("city", "Paris", "days", 2))))),
                message("tool", "{\"temp\": 21}"),
                message("assistant", "<think>\nhmm\n</think>\n\nIt is 21°C."),
                message("user", "Thanks"));
        assertThat(template.render(messages, true, Map.of())).isEqualTo(
                "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n"
                + "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call><|im_end|>\n"
                + "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n"
                + "<|im_start|>assistant\nIt is 21°C.<|im_end|>\n<|im_start|>user\nThanks<|im_end|>\n"
                + "<|im_start|>assistant\n");
        assertThat(template.render(List.of(message("user", "hi")), true, Map.of("enable_thinking", false)))
                .isEqualTo("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    }

    private static final String QWEN2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
            + "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
            + "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
            + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    @Test
    void qwen2TemplateAddsADefaultSystemPrompt() {
        String prompt = ChatTemplate.compile(QWEN2, null, "<|im_end|>").render(List.of(message("user", "hi")), true, null);
        assertThat(prompt).isEqualTo("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                + "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    private static final String LLAMA2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
            + "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
            + "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
            + "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
            + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
            + "{% if loop.index0 == 0 and system_message != false %}"
            + "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
            + "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
            + "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
            + "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

    @Test
    void llama2TemplateFoldsTheSystemPromptIntoTheFirstInstruction() {
        String prompt = ChatTemplate.compile(LLAMA2, "<s>", "</s>").render(CONVERSATION, true, Map.of());
        assertThat(prompt).isEqualTo("<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi there! [/INST]"
                + " Hello! How can I help? </s><s>[INST] What is 2+2? [/INST]");
    }

    private static final String MISTRAL = "{{ bos_token }}{% for message in messages %}"
            + "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
            + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
            + "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
            + "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
            + "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    @Test
    void mistralTemplateRaisesForRolesThatDoNotAlternate() {
        ChatTemplate template = ChatTemplate.compile(MISTRAL, "<s>", "</s>");
        assertThat(template.render(List.of(message("user", "a"), message("assistant", "b"), message("user", "c")),
                false, Map.of())).isEqualTo("<s>[INST] a [/INST]b</s>[INST] c [/INST]");
        assertThatThrownBy(() -> template.render(List.of(message("user", "a"), message("user", "b")), false, Map.of()))
                .isInstanceOf(TemplateException.class)
                .hasMessageStartingWith("Conversation roles must alternate user/assistant/user/assistant/...")
                .satisfies(e -> assertThat(((TemplateException) e).column()).isEqualTo(125));
        assertThatThrownBy(() -> template.render(CONVERSATION, false, Map.of()))
                .hasMessageStartingWith("Conversation roles must alternate");
    }

    // ---- language features (expected outputs checked against Jinja2 3.1) ----

    @Test
    void literalsPrintAsPythonWould() {
        assertThat(render("{{ [1,2] }} {{ {'a': 1, 'b': [True, None, 1.5]} }} {{ none }} {{ true }} {{ (1, 2) }} {{ (1, ) }}"))
                .isEqualTo("[1, 2] {'a': 1, 'b': [True, None, 1.5]} None True (1, 2) (1,)");
        assertThat(render("{{ 3.0 }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-7 }}"))
                .isEqualTo("3.0 1000.0 0.30000000000000004 1e+20 1.5e-07");
        assertThat(render("{{ \"it's\" }} {{ 'say \"hi\"' }} {{ ['it\\'s'] }} {{ [\"a\\\"b\"] }} {{ 'tab\\there' }} {{ 'uni\\u00e9' }}"))
                .isEqualTo("it's say \"hi\" [\"it's\"] ['a\"b'] tab\there unié");
    }

    @Test
    void arithmeticFollowsPythonIncludingFloorDivisionOfNegatives() {
        assertThat(render("{{ 1/2 }} {{ 4/2 }} {{ 7//2 }} {{ -7//2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }}"))
                .isEqualTo("0.5 2.0 3 -4 2 1024 7");
        assertThat(render("{{ 'abc' ~ 5 }}{{ [1] + [2] }}{{ 'a' + 'b' }}{{ 3 - 1.5 }}{{ 7 % 2 }}{{ 2 * 3.0 }} {{ 'x' * 3 }}"))
                .isEqualTo("abc5[1, 2]ab1.516.0 xxx");
        assertThat(render("{{ '%d-%s' % (1, 'x') }} {{ '%5s|%-5s|%.2f|%d%%' % ('a', 'b', 3.14159, 5) }}"))
                .isEqualTo("1-x     a|b    |3.14|5%");
    }

    @Test
    void comparisonsChainAndLogicReturnOperands() {
        assertThat(render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ not true or true }} {{ not (true and false) }} "
                + "{{ 1 and 2 }} {{ 0 or 'x' }} {{ none or [] }} {{ 1 == 1.0 }} {{ [1] == [1] }} {{ 'b' > 'a' }}"))
                .isEqualTo("True False True True 2 x [] True True True");
        assertThat(render("{{ 'A' in 'ABC' }} {{ 1 not in [1] }} {{ 'x' is in 'xyz' }}")).isEqualTo("True False True");
    }

    @Test
    void subscriptsAndSlicesWorkOnListsAndStrings() {
        assertThat(render("{{ 'abc'[1:] }} {{ [1,2,3][-1] }} {{ [1,2,3,4][::-1] }} {{ [1,2,3,4][1:3] }} {{ 'hello'[::2] }}"))
                .isEqualTo("bc 3 [4, 3, 2, 1] [2, 3] hlo");
        assertThat(render("{{ msgs[-1].content }} {{ msgs[1:] | length }} {{ 'abc'[10] is defined }} {{ [][0] is defined }}"))
                .isEqualTo("U2 3 False False");
        assertThat(render("{{ {'a': {'b': 'c'}}['a']['b'] }}{{ {'a': {'b': 'c'}}.a.b }}{{ ({'a': 1}).get('z', 9) }}"))
                .isEqualTo("cc9");
    }

    @Test
    void undefinedValuesPrintEmptyAreFalsyAndFailWhenDereferenced() {
        assertThat(render("[{{ missing }}]{{ missing is defined }}|{{ messages[0].nope is defined }}|{{ missing is undefined }}"
                + "|{{ missing | length }}|{{ missing | default('d') }}|{{ '' | default('d', true) }}"))
                .isEqualTo("[]False|False|True|0|d|d");
        // Jinja2 raises UndefinedError for an attribute or item of an undefined value, even under 'is defined'.
        assertThatThrownBy(() -> render("{{ missing.attr is defined }}")).isInstanceOf(TemplateException.class)
                .hasMessageContaining("'missing' is undefined");
        assertThat(render("{% if missing %}yes{% else %}no{% endif %}{% for x in missing %}x{% endfor %}")).isEqualTo("no");
    }

    @Test
    void forLoopsExposeLoopVariablesUnpackTuplesAndRunElseWhenEmpty() {
        assertThat(render("{% for a, b in [[1,2],[3,4]] %}{{ a }}{{ b }}{{ loop.index }}{{ loop.last }}{{ loop.first }}"
                + "{{ loop.length }}{{ loop.revindex }}{% else %}none{% endfor %}{% for x in [] %}x{% else %}empty{% endfor %}"))
                .isEqualTo("121FalseTrue22342TrueFalse21empty");
        assertThat(render("{% set d = {'x': 1, 'y': [1, 2]} %}{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}"
                + "{% for k in d %}{{ k }}{% endfor %}")).isEqualTo("x=1;y=[1, 2];xy");
        assertThat(render("{% for m in msgs if m.role != 'system' %}{{ loop.index }}:{{ m.role }} {% endfor %}"))
                .isEqualTo("1:user 2:assistant 3:user ");
        assertThat(render("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}"
                + "{% endif %}{{ i }}{% endfor %}")).isEqualTo("0134");
    }

    @Test
    void assignmentsInsideLoopsDoNotLeakButNamespacesDo() {
        assertThat(render("{% set x = 0 %}{% for i in range(3) %}{{ x }}{% set x = i %}{% endfor %}{{ x }}")).isEqualTo("0000");
        assertThat(render("{% set ns = namespace(x=1) %}{% for i in range(3) %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}"))
                .isEqualTo("4");
        assertThat(render("{% if msgs[0].role == 'system' %}{% set sys = msgs[0].content %}{% endif %}[{{ sys }}]"))
                .isEqualTo("[S]");
        assertThat(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t %}block {{ a }}{% endset %}[{{ t }}]"))
                .isEqualTo("12[block 1]");
    }

    @Test
    void inlineIfAndMacrosWork() {
        assertThat(render("{{ 'a' if false }}|{{ 'a' if true else 'b' }}|{{ 1 if none else 2 if true else 3 }}"))
                .isEqualTo("|a|2");
        assertThat(render("{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}"
                + "{{ greet('Bob') }} {{ greet('Al', punct='?') }}")).isEqualTo("Hello Bob! Hello Al?");
    }

    @Test
    void stringFiltersAndMethodsBehaveLikeJinjaAndPython() {
        assertThat(render("{{ '  x  '|trim }}|{{ 'ab'|upper }}|{{ 'AB'|lower }}|{{ 'a-b-c'|replace('-', '+') }}"
                + "|{{ 'aaa'.replace('a','b',2) }}|{{ 'hELLO' | capitalize }}|{{ \"they're\"|title }}|{{ \"they're\".title() }}"))
                .isEqualTo("x|AB|ab|a+b+c|bba|Hello|They're|They'Re");
        assertThat(render("{{ 'a,b,,c'.split(',') }} {{ 'a b  c'.split(' ') }} {{ 'a b c'.split(none, 1) }} "
                + "{{ 'xxhixx'.strip('x') }} {{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('x','c')) }} "
                + "{{ '{} and {}'.format(1, 'b') }} {{ 'Hello World'.split() }}"))
                .isEqualTo("['a', 'b', '', 'c'] ['a', 'b', '', 'c'] ['a', 'b c'] hi True True 1 and b ['Hello', 'World']");
        assertThat(render("{{ 'x\\ny' | indent(2) }}|{{ 'x\\ny' | indent(2, true) }}|{{ 'x\\n\\ny' | indent(4, blank=true) }}"))
                .isEqualTo("x\n  y|  x\n  y|x\n    \n    y");
        assertThat(render("{{ 'héllo'|length }} {{ '12' | int + 1 }} {{ 1.5|int }} {{ 5 | string }}")).isEqualTo("5 13 1 5");
    }

    @Test
    void sequenceFiltersSelectMapJoinAndSort() {
        assertThat(render("{{ msgs | selectattr('role', 'equalto', 'user') | list | length }} "
                + "{{ msgs | rejectattr('role', 'equalto', 'user') | map(attribute='content') | join('|') }} "
                + "{{ msgs | map(attribute='role') | join(', ') }}"))
                .isEqualTo("2 S|A1 system, user, assistant, user");
        assertThat(render("{{ [1,2,3] | select('odd') | list }} {{ [1,2,3] | reject('odd') | list }} "
                + "{{ ['a','b'] | map('upper') | join }} {{ [3,1,2] | sort }} {{ [1,1,2]|unique|list }} {{ [1,2,3]|first }}"
                + "{{ [1,2,3]|last }} {{ {'b':1,'a':2} | items | list }}"))
                .isEqualTo("[1, 3] [2] AB [1, 2, 3] [1, 2] 13 [('b', 1), ('a', 2)]");
        assertThat(render("{{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }}"))
                .isEqualTo("[0, 1, 2] [1, 4, 7] [5, 3, 1]");
    }

    @Test
    void testsClassifyValues() {
        assertThat(render("{{ 3 is odd }} {{ 'a' is string }} {{ none is none }} {{ 4 is even }} {{ {} is mapping }} "
                + "{{ [] is iterable }} {{ 1 is number }} {{ 6 is divisibleby 3 }} {{ none is not none }} {{ true is true }}"
                + " {{ 0 is false }}")).isEqualTo("True True True True True True True True False True False");
    }

    @Test
    void tojsonUsesPythonJsonDumpsSpacingAndKeepsNonAscii() {
        assertThat(render("{{ 'a\\nb' | tojson }} {{ {'a':[1,2],'b':'é'} | tojson }} {{ none | tojson }} {{ 1.0|tojson }}"))
                .isEqualTo("\"a\\nb\" {\"a\": [1, 2], \"b\": \"é\"} null 1.0");
        assertThat(render("{{ {'a':1, 'b': {'c': []}} | tojson(indent=2) }}"))
                .isEqualTo("{\n  \"a\": 1,\n  \"b\": {\n    \"c\": []\n  }\n}");
        assertThat(render("{{ 'a\"b\\\\c\\u0001' | tojson }} {{ 'é😀' | tojson }}")).isEqualTo("\"a\\\"b\\\\c\\u0001\" \"é😀\"");
    }

    @Test
    void trimBlocksAndLstripBlocksRemoveTheWhitespaceAroundTags() {
        assertThat(render("  {% if true %}\n  yes\n  {% endif %}\n  {{ 1 }}\n")).isEqualTo("  yes\n  1");
        assertThat(render("{% if true %}\n    {{ 'in' }}\n{% endif %}\nout\n  {%+ if true %}plus{% endif %}\n"
                + "{% if true +%}\nkept{% endif %}")).isEqualTo("    in\nout\n  plus\nkept");
    }

    @Test
    void minusSignsStripWhitespaceAndCommentsVanish() {
        assertThat(render("{%- if true -%}\n  x  \n{%- endif -%}\n  y")).isEqualTo("xy");
        assertThat(render("{{- '  a  ' -}}  {{ 'b' }}  {{- 'c' }}")).isEqualTo("  a  bc");
        assertThat(render("{#- comment -#}\n  a  \n{#- c2 #}\nb{# c3 #}\n  {# c4 #}\nc")).isEqualTo("abc");
        assertThat(render("{% raw %}{{ not rendered }}{% endraw %} after")).isEqualTo("{{ not rendered }} after");
    }

    @Test
    void strftimeNowUsesTheClockGivenAsNow() {
        assertThat(render("{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S %A %B') }}"))
                .isEqualTo("26 Jul 2024 2024-07-26 14:05:09 Friday July");
        assertThat(render("{{ strftime_now('%d %b %Y') }}", Map.of("now", "2025-01-02"))).isEqualTo("02 Jan 2025");
    }

    @Test
    void extraVariablesAndTokensAreVisible() {
        assertThat(render("{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ messages | length }}|{{ tools[0] }}",
                Map.of("tools", List.of("t")))).isEqualTo("<s>|</s>|False|4|t");
    }

    // ---- errors ----

    @Test
    void syntaxErrorReportsLineAndColumn() {
        assertThatThrownBy(() -> ChatTemplate.compile("line one\n{% if x %}never closed", "", ""))
                .isInstanceOf(TemplateException.class)
                .hasMessageContaining("{% endif %}")
                .satisfies(e -> assertThat(((TemplateException) e).line()).isEqualTo(2));
        assertThatThrownBy(() -> ChatTemplate.compile("{{ 1 + }}", "", ""))
                .isInstanceOf(TemplateException.class)
                .hasMessageContaining("unexpected '}}'")
                .hasMessageContaining("line 1, column 8");
        assertThatThrownBy(() -> ChatTemplate.compile("{% endfor %}", "", ""))
                .hasMessageContaining("no open block");
        assertThatThrownBy(() -> ChatTemplate.compile("{{ 'unterminated }}", "", ""))
                .hasMessageContaining("unterminated string");
    }

    @Test
    void unknownFilterOrTestIsASyntaxErrorNamingIt() {
        assertThatThrownBy(() -> ChatTemplate.compile("ab\n  {{ x | frobnicate }}", "", ""))
                .isInstanceOf(TemplateException.class)
                .hasMessageContaining("no filter named 'frobnicate'")
                .hasMessageContaining("line 2, column 10");
        assertThatThrownBy(() -> ChatTemplate.compile("{{ x is shiny }}", "", ""))
                .hasMessageContaining("no test named 'shiny'");
    }

    @Test
    void runtimeErrorsNameTheProblemAndPosition() {
        assertThatThrownBy(() -> render("{{ 1 + 'a' }}"))
                .isInstanceOf(TemplateException.class)
                .hasMessageContaining("unsupported operand type(s) for +: 'int' and 'str'");
        assertThatThrownBy(() -> render("\n{{ messages[0].content + nothing }}"))
                .hasMessageContaining("'nothing' is undefined")
                .satisfies(e -> assertThat(((TemplateException) e).line()).isEqualTo(2));
        assertThatThrownBy(() -> render("{{ nothing() }}")).hasMessageContaining("'nothing' is undefined and cannot be called");
        assertThatThrownBy(() -> render("{% set l = [] %}{{ l.append(1) }}")).hasMessageContaining("namespace()");
        assertThatThrownBy(() -> render("{{ raise_exception('custom message') }}"))
                .isInstanceOf(TemplateException.class)
                .hasMessage("custom message (template line 1, column 19)");
    }
}
