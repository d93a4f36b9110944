#!/usr/bin/env python3
"""Renders the chat-template conformance references with transformers (issue 19).

    python3 tools/templates/render_references.py IN_DIR OUT_DIR

IN_DIR is a corpus built by make_corpus.py (fixtures/templates/corpus). For every case it calls
transformers' apply_chat_template with tokenize=False and tokenize=True on a tokenizer loaded by
AutoTokenizer from the corpus files only (no hub), and encodes corpus/strings.json with every
tokenizer (AutoTokenizer, and PreTrainedTokenizerFast on the bare tokenizer.json for comparison).
An exception from transformers is recorded as the expected error. Writes OUT_DIR/references.json
(everything the Java conformance test needs besides the corpus itself). Needs transformers,
tokenizers and jinja2; no network and no GPU.
"""
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jinja2  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402

transformers.logging.set_verbosity_error()


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def error_of(e):
    return {"type": type(e).__name__, "message": str(e)[:2000]}


def ids_of(result):
    """apply_chat_template(tokenize=True) gives a list of ids, or a BatchEncoding/dict in newer versions."""
    if isinstance(result, dict) or hasattr(result, "keys"):
        result = result["input_ids"]
    if hasattr(result, "tolist"):
        result = result.tolist()
    if result and isinstance(result[0], list):
        assert len(result) == 1, "batched output for one conversation"
        result = result[0]
    return [int(i) for i in result]


def pipeline_json(tok):
    """The backend tokenizer's normalizer / pre_tokenizer / post_processor / decoder as transformers set them."""
    try:
        backend = tok.backend_tokenizer
        data = json.loads(backend.to_str())
        return {k: data.get(k) for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder")}
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        return {"error": error_of(e)}


class Tokenizers:
    def __init__(self, corpus, work):
        self.corpus = corpus
        self.work = work
        self.auto = {}
        self.fast = {}
        self.info = {}

    def dir_of(self, name):
        target = os.path.join(self.work, name)
        if not os.path.isdir(target):
            src = os.path.join(self.corpus, "tokenizers", name)
            os.makedirs(target)
            with gzip.open(os.path.join(src, "tokenizer.json.gz"), "rb") as f, \
                    open(os.path.join(target, "tokenizer.json"), "wb") as g:
                shutil.copyfileobj(f, g)
            shutil.copy(os.path.join(src, "tokenizer_config.json"), target)
        return target

    def get(self, name):
        if name not in self.auto:
            d = self.dir_of(name)
            start = time.time()
            info = {}
            try:
                tok = AutoTokenizer.from_pretrained(d, local_files_only=True)
            except Exception as e:  # noqa: BLE001
                tok = None
                info["load_error"] = error_of(e)
                info["traceback"] = traceback.format_exc()[-3000:]
            if tok is not None:
                info["class"] = type(tok).__name__
                info["pipeline"] = pipeline_json(tok)
                for attr in ("legacy", "add_prefix_space", "special_tokens_map"):
                    try:
                        info[attr] = json.loads(json.dumps(getattr(tok, attr, "n/a"), default=str))
                    except Exception as e:  # noqa: BLE001
                        info[attr] = {"error": error_of(e)}
                try:
                    info["len"] = len(tok)
                except Exception as e:  # noqa: BLE001
                    info["len"] = {"error": error_of(e)}
            info["load_seconds"] = round(time.time() - start, 2)
            self.auto[name] = tok
            try:
                fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
                info["fast_pipeline"] = pipeline_json(fast)
            except Exception as e:  # noqa: BLE001
                fast = None
                info["fast_load_error"] = error_of(e)
            self.fast[name] = fast
            self.info[name] = info
        return self.auto[name]


def render(tok, template, conv, add_generation_prompt, extra):
    kwargs = dict(extra)
    if "tools" in conv:
        kwargs["tools"] = conv["tools"]
    if "documents" in conv:
        kwargs["documents"] = conv["documents"]
    out = {}
    try:
        out["text"] = tok.apply_chat_template(conv["messages"], chat_template=template, tokenize=False,
                                              add_generation_prompt=add_generation_prompt, **kwargs)
    except Exception as e:  # noqa: BLE001 - the error is the reference
        out["error"] = error_of(e)
        return out
    try:
        out["ids"] = ids_of(tok.apply_chat_template(conv["messages"], chat_template=template, tokenize=True,
                                                    add_generation_prompt=add_generation_prompt,
                                                    return_dict=False, **kwargs))
    except Exception as e:  # noqa: BLE001
        out["ids_error"] = error_of(e)
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: render_references.py IN_DIR OUT_DIR")
    corpus, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    cases = read_json(os.path.join(corpus, "cases.json"))
    convs = read_json(os.path.join(corpus, "conversations.json"))
    features = read_json(os.path.join(corpus, "features.json"))
    strings = read_json(os.path.join(corpus, "strings.json"))
    work = tempfile.mkdtemp(prefix="punica-templates-")
    toks = Tokenizers(corpus, work)
    results = []
    try:
        for case in cases["templates"]:
            with open(os.path.join(corpus, "templates", case["template"] + ".jinja"), encoding="utf-8") as f:
                template = f.read()
            extra = {}
            for name in case["extra"]:
                extra.update(convs["extra"][name])
            for tok_name in case["tokenizers"]:
                tok = toks.get(tok_name)
                if tok is None:
                    continue
                for conv_name, conv in convs["conversations"].items():
                    for agp in (False, True):
                        r = {"template": case["template"], "tokenizer": tok_name, "conversation": conv_name,
                             "add_generation_prompt": agp, "variables": extra}
                        r.update(render(tok, template, conv, agp, extra))
                        results.append(r)
        fcfg = cases["features"]
        for feat in features:
            toks_for = cases["tokenizers"] if feat["name"] in fcfg["all_tokenizers"] else [fcfg["tokenizer"]]
            for tok_name in toks_for:
                tok = toks.get(tok_name)
                if tok is None:
                    continue
                r = {"feature": feat["name"], "tokenizer": tok_name, "conversation": fcfg["conversation"],
                     "add_generation_prompt": False}
                r.update(render(tok, feat["template"], convs["conversations"][fcfg["conversation"]], False,
                                feat["variables"]))
                results.append(r)
        encodings = []
        for tok_name in cases["tokenizers"]:
            tok = toks.get(tok_name)
            fast = toks.fast[tok_name]
            for text in strings:
                e = {"tokenizer": tok_name, "text": text}
                for label, t in (("auto", tok), ("fast", fast)):
                    if t is None:
                        continue
                    for special in (False, True):
                        key = label + ("_with_special" if special else "")
                        try:
                            e[key] = t(text, add_special_tokens=special)["input_ids"]
                        except Exception as ex:  # noqa: BLE001
                            e[key + "_error"] = error_of(ex)
                    if label == "auto":
                        try:
                            e["auto_tokens"] = t.convert_ids_to_tokens(e["auto"])
                        except Exception as ex:  # noqa: BLE001
                            e["auto_tokens_error"] = error_of(ex)
                encodings.append(e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {
        "generator": "tools/templates/render_references.py",
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "jinja2": jinja2.__version__, "python": platform.python_version()},
        "tokenizers": toks.info,
        "renders": results,
        "encodings": encodings,
        "seconds": round(time.time() - started, 1),
    }
    path = os.path.join(out_dir, "references.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0, sort_keys=True)
        f.write("\n")
    n_err = sum(1 for r in results if "error" in r)
    print("wrote %s: %d renders (%d expected errors), %d encodings, %.1f s"
          % (path, len(results), n_err, len(encodings), time.time() - started))
    for name, info in toks.info.items():
        if "load_error" in info:
            print("tokenizer %s failed to load: %s" % (name, info["load_error"]))


if __name__ == "__main__":
    main()
