// The playground: one prompt, several models (the base and any adapters), answers streamed side by side.
import { BASE_COLOR, colorOf, errorOf, fmtMillis, fmtRate, h, headers, readSse, tooltip } from "./common.js";

const DEFAULT_PROMPT = "input: red apple stone\noutput:";
const TOP_ALTERNATIVES = 5;

/** Background for a token of probability p: red when unlikely, through amber, to a pale green when sure. */
function shade(p) {
  const hue = 140 * Math.max(0, Math.min(1, p));
  return `hsl(${hue} ${85 - 30 * p}% ${80 + 6 * p}%)`;
}

/** Makes whitespace visible in the alternatives list. */
function showToken(t) {
  return t.replace(/\n/g, "↵").replace(/ /g, "·") || "∅";
}

export class Playground {
  constructor() {
    this.base = null;
    this.adapters = [];
    this.selected = null; // null until the first model list: then everything is selected
    this.mode = "raw";
    this.view = "text";
    this.running = [];
    this.chips = document.getElementById("model-chips");
    this.columns = document.getElementById("columns");
    this.prompt = document.getElementById("prompt");
    this.prompt.value = DEFAULT_PROMPT;
    this.generateButton = document.getElementById("generate");
    this.stopButton = document.getElementById("stop");

    for (const id of ["temperature", "top_p", "top_k"]) {
      const input = document.getElementById(id);
      const out = input.parentElement.querySelector("output");
      const show = () => (out.textContent = id === "top_k" && input.value === "0" ? "off" : input.value);
      input.addEventListener("input", show);
      show();
    }
    for (const b of document.querySelectorAll("[data-mode]")) b.addEventListener("click", () => this.setMode(b.dataset.mode));
    for (const b of document.querySelectorAll("[data-view]")) b.addEventListener("click", () => this.setView(b.dataset.view));
    document.getElementById("select-all").addEventListener("click", () => {
      const all = this.allModels();
      this.selected = new Set(this.selected.size === all.length ? [] : all);
      this.renderChips();
    });
    this.generateButton.addEventListener("click", () => this.generate());
    this.stopButton.addEventListener("click", () => this.stop());
    this.prompt.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); this.generate(); }
    });
  }

  allModels() {
    return this.base ? [this.base, ...this.adapters] : [...this.adapters];
  }

  setModels(base, adapters) {
    this.base = base;
    this.adapters = adapters;
    const all = this.allModels();
    this.selected = this.selected == null ? new Set(all) : new Set([...this.selected].filter((m) => all.includes(m)));
    this.renderChips();
  }

  renderChips() {
    this.chips.replaceChildren(...this.allModels().map((m) => {
      const color = m === this.base ? BASE_COLOR : colorOf(m);
      return h("button.chip", {
        type: "button", "data-model": m, "aria-pressed": String(this.selected.has(m)), "--c": color,
        title: m === this.base ? "the base model, no adapter" : "adapter " + m,
        onclick: () => {
          if (this.selected.has(m)) this.selected.delete(m); else this.selected.add(m);
          this.renderChips();
        },
      }, h("i"), m);
    }));
  }

  setMode(mode) {
    this.mode = mode;
    for (const b of document.querySelectorAll("[data-mode]")) b.setAttribute("aria-checked", String(b.dataset.mode === mode));
    document.getElementById("mode-hint").innerHTML = mode === "raw"
      ? "Sent as is to <code>/v1/completions</code>."
      : "Sent as the user's message to <code>/v1/chat/completions</code>, through the model's chat template.";
  }

  setView(view) {
    this.view = view;
    for (const b of document.querySelectorAll("[data-view]")) b.setAttribute("aria-checked", String(b.dataset.view === view));
    document.getElementById("lp-legend").hidden = view !== "logprobs";
    for (const col of this.columns.querySelectorAll(".column")) col.run && col.run.render();
  }

  params() {
    const num = (id) => Number(document.getElementById(id).value);
    const p = {
      temperature: num("temperature"), top_p: num("top_p"), max_tokens: num("max_tokens"),
      stream: true, stream_options: { include_usage: true },
    };
    if (num("top_k") > 0) p.top_k = num("top_k");
    const seed = document.getElementById("seed").value.trim();
    if (seed !== "") p.seed = Number(seed);
    return p;
  }

  generate() {
    const models = this.allModels().filter((m) => this.selected.has(m));
    if (models.length === 0 || this.running.length > 0) return;
    const body = this.params();
    const text = this.prompt.value;
    this.columns.replaceChildren();
    this.running = models.map((m) => new Run(this, m, m === this.base, this.mode, text, body));
    this.generateButton.disabled = true;
    this.stopButton.disabled = false;
    // All requests leave together, so the engine batches them into the same steps.
    Promise.allSettled(this.running.map((r) => r.start())).then(() => {
      this.running = [];
      this.generateButton.disabled = false;
      this.stopButton.disabled = true;
    });
  }

  stop() {
    for (const r of this.running) r.abort.abort();
  }
}

/** One model's answer: its column, its request, its timings. */
class Run {
  constructor(playground, model, isBase, mode, prompt, params) {
    this.playground = playground;
    this.model = model;
    this.chat = mode === "chat";
    this.body = this.chat
      ? { ...params, model, messages: [{ role: "user", content: prompt }], logprobs: true, top_logprobs: TOP_ALTERNATIVES }
      : { ...params, model, prompt, logprobs: TOP_ALTERNATIVES };
    this.abort = new AbortController();
    this.tokens = []; // {text, logprob, top: [[token, logprob]...], silent}
    this.out = ""; // the answer's text as the server streams it
    this.error = null;
    this.finish = null;
    this.usage = null;
    this.color = isBase ? BASE_COLOR : colorOf(model);
    this.answer = h("div.answer", { "data-role": "answer" });
    this.state = h("span.state", {}, "waiting");
    this.ttft = h("b", {}, "–");
    this.rate = h("b", {}, "–");
    this.count = h("b", {}, "0");
    this.column = h("div.column", { "data-model": model, "data-state": "waiting", "--c": this.color },
      h("div.column-head", {}, h("span.dot", { "--c": this.color }), h("span.name", {}, model),
        isBase ? h("span.kind", {}, "base") : null, this.state),
      this.answer,
      h("div.metrics", {},
        h("div.metric", {}, this.ttft, h("span", {}, "TTFT")),
        h("div.metric", {}, this.rate, h("span", {}, "tok/s")),
        h("div.metric", {}, this.count, h("span", {}, "tokens"))));
    this.column.run = this;
    playground.columns.append(this.column);
  }

  async start() {
    this.sent = performance.now();
    this.setState("streaming", "streaming");
    try {
      const r = await fetch(this.chat ? "/v1/chat/completions" : "/v1/completions", {
        method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(this.body), signal: this.abort.signal,
      });
      if (!r.ok) {
        const e = await errorOf(r);
        if (e.status === 401) document.dispatchEvent(new CustomEvent("punica:unauthorized", { detail: e.message }));
        throw e;
      }
      await readSse(r, (data) => data !== "[DONE]" && this.chunk(JSON.parse(data)));
      this.setState("done", this.finish || "done");
    } catch (e) {
      if (e.name === "AbortError") { this.setState("done", "stopped"); } else { this.error = e.message; this.setState("error", "error"); }
    }
    this.render();
  }

  chunk(c) {
    if (c.error) { this.error = c.error.message; return; }
    if (c.usage) this.usage = c.usage;
    const choice = c.choices && c.choices[0];
    if (!choice) return;
    if (choice.finish_reason) this.finish = choice.finish_reason;
    const text = this.chat ? (choice.delta && choice.delta.content) || "" : choice.text || "";
    const fresh = this.chat ? this.chatTokens(choice.logprobs) : this.textTokens(choice.logprobs);
    if (fresh.length > 0 || text) {
      if (this.first == null) this.first = performance.now();
      this.last = performance.now();
    }
    this.out += text;
    // Tokens that add no text (the end-of-sequence token, a stop token) are shown apart in the log-prob view. They
    // end a frame, alone or after the tokens whose text it carries (tokens that arrive together share a frame).
    for (let i = fresh.length - 1; i >= 0 && !(fresh[i].text && text.endsWith(fresh[i].text)); i--) {
      fresh[i].silent = true;
    }
    this.tokens.push(...fresh);
    this.render();
  }

  textTokens(lp) {
    if (!lp || !lp.tokens) return [];
    return lp.tokens.map((t, i) => ({
      text: t, logprob: lp.token_logprobs[i],
      top: Object.entries((lp.top_logprobs && lp.top_logprobs[i]) || {}),
    }));
  }

  chatTokens(lp) {
    if (!lp || !lp.content) return [];
    return lp.content.map((t) => ({ text: t.token, logprob: t.logprob, top: (t.top_logprobs || []).map((a) => [a.token, a.logprob]) }));
  }

  setState(state, label) {
    this.column.dataset.state = state;
    this.state.textContent = label;
  }

  render() {
    const n = this.usage ? this.usage.completion_tokens : this.tokens.length;
    this.count.textContent = String(n);
    if (this.first != null) {
      this.ttft.textContent = fmtMillis(this.first - this.sent);
      // Decode speed: tokens after the first over the time they took (too short a span says nothing).
      const span = (this.last - this.first) / 1000;
      this.rate.textContent = n > 1 && span > 0.005 ? fmtRate((n - 1) / span) : "–";
    }
    if (this.error) {
      this.answer.replaceChildren(h("span.error", {}, this.error));
      this.shown = "error";
      return;
    }
    if (this.playground.view !== "logprobs") {
      this.answer.textContent = this.out;
      this.shown = "text";
      return;
    }
    // Token spans are appended as tokens arrive, not rebuilt: a long answer stays cheap to stream.
    if (this.shown !== "logprobs") {
      this.answer.replaceChildren();
      this.tokensShown = 0;
      this.shown = "logprobs";
    }
    for (; this.tokensShown < this.tokens.length; this.tokensShown++) this.answer.append(this.tokenSpan(this.tokens[this.tokensShown]));
  }

  tokenSpan(t) {
    const p = Math.exp(t.logprob);
    return h("span.tok" + (t.silent ? ".silent" : ""), {
      style: { background: shade(p) },
      onmousemove: (e) => tooltip(e, this.alternatives(t, p)),
      onmouseleave: (e) => tooltip(e, null),
    }, t.text);
  }

  alternatives(t, p) {
    const rows = (t.top.length ? t.top : [[t.text, t.logprob]]).slice().sort((a, b) => b[1] - a[1]);
    return h("div", {},
      h("div.tt-head", {}, h("span.mono", {}, JSON.stringify(t.text)), h("span", {}, (100 * p).toFixed(1) + "%")),
      rows.map(([tok, lp]) => {
        const q = Math.exp(lp);
        return h("div.alt" + (tok === t.text ? ".chosen" : ""), {},
          h("span", {}, showToken(tok)),
          h("span.pct", {}, (100 * q).toFixed(1) + "%"),
          h("div.bar", { style: { width: Math.max(2, 100 * q) + "%", gridColumn: "1 / -1" } }));
      }));
  }
}
