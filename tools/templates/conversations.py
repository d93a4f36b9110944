"""Conversations for the chat-template conformance corpus: each a dict of apply_chat_template
arguments (messages, and optionally tools, documents and extra template variables)."""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Oslo"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Searches the web; returns the top results as text.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "max_results": {"type": "integer", "default": 3}},
            "required": ["query"],
        },
    },
}

CONVERSATIONS = {
    "basic": {"messages": [{"role": "user", "content": "Hello!"}]},
    "system_user": {"messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "What is the capital of France?"}]},
    "multi_turn": {"messages": [
        {"role": "user", "content": "Hi there!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road? To get to the other side."},
        {"role": "user", "content": "Another one, please."}]},
    "system_multi_turn": {"messages": [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 is 4."},
        {"role": "user", "content": "And 3+3?"}]},
    "ends_with_assistant": {"messages": [
        {"role": "user", "content": "Write a haiku about autumn."},
        {"role": "assistant", "content": "Leaves drift on cold wind,"}]},
    "whitespace": {"messages": [
        {"role": "system", "content": "  padded system \n"},
        {"role": "user", "content": "\n\n  leading and trailing  \t\n"},
        {"role": "assistant", "content": " one space "},
        {"role": "user", "content": "tabs\tand\nnewlines\r\nand  double  spaces"}]},
    "unicode": {"messages": [
        {"role": "user", "content": "Ünïcödé: 中文, 日本語, 한국어, العربية, עברית, emoji 😀👍🏽👨‍👩‍👧, combining e\u0301, nbsp\u00a0here, zero\u200bwidth"},
        {"role": "assistant", "content": "Привет! Γειά σου! ¿Qué tal? — “quotes” ‘single’ …"},
        {"role": "user", "content": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛 and a lone high plane char 𠀋"}]},
    "jinja_like_text": {"messages": [
        {"role": "system", "content": "Render {{ this }} literally: {% if x %}y{% endif %} {# not a comment #}"},
        {"role": "user", "content": "What does {{ messages[0].content }} print? And {%- raw -%}?"},
        {"role": "assistant", "content": "It prints '{{ ... }}' as text. }} {{ {% %}"},
        {"role": "user", "content": "Special tokens as text: <s> </s> <|eot_id|> <|im_start|> [INST] <start_of_turn> <bos>"}]},
    "tools": {
        "messages": [
            {"role": "system", "content": "You can call tools."},
            {"role": "user", "content": "What's the weather in Oslo?"}],
        "tools": [WEATHER_TOOL, SEARCH_TOOL]},
    "tool_call_and_result": {
        "messages": [
            {"role": "user", "content": "What's the weather in Oslo?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call12345", "type": "function",
                             "function": {"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}}]},
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temperature\": 7, \"sky\": \"cloudy\"}"},
            {"role": "assistant", "content": "It is 7 °C and cloudy in Oslo."},
            {"role": "user", "content": "Thanks. And Rome?"}],
        "tools": [WEATHER_TOOL]},
    "tool_call_string_args": {
        "messages": [
            {"role": "system", "content": "Use tools when needed."},
            {"role": "user", "content": "Search for 'Punica LoRA' and the weather in Rome."},
            {"role": "assistant", "content": None,
             "tool_calls": [
                 {"id": "callAAAAA", "type": "function",
                  "function": {"name": "search", "arguments": "{\"query\": \"Punica LoRA\"}"}},
                 {"id": "callBBBBB", "type": "function",
                  "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "callAAAAA", "content": "Punica: multi-tenant LoRA serving (MLSys 2024)."},
            {"role": "tool", "tool_call_id": "callBBBBB", "content": "22 °C, sunny"}],
        "tools": [WEATHER_TOOL, SEARCH_TOOL]},
    "documents": {
        "messages": [{"role": "user", "content": "Summarize the documents."}],
        "documents": [
            {"title": "Punica", "text": "Punica serves many LoRA adapters on one GPU with the SGMV kernel."},
            {"title": "Paged attention", "text": "KV cache pages avoid fragmentation."}]},
    "content_parts": {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Describe this picture."}, {"type": "image"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cat on a mat."}]},
        {"role": "user", "content": [{"type": "text", "text": "  And the colours?  "}]}]},
    "empty_content": {"messages": [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "?"}]},
    "system_only": {"messages": [{"role": "system", "content": "Only a system prompt."}]},
    "bad_roles": {"messages": [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two in a row"}]},
    "long_text": {"messages": [
        {"role": "user", "content": " ".join("word%d" % i for i in range(300)) + "\n" + "x" * 500}]},
}

# Extra template variables some real templates read; passed as apply_chat_template keyword arguments.
EXTRA = {
    "date_string": {"date_string": "03 Dec 2026"},
    "no_thinking": {"enable_thinking": False},
}
