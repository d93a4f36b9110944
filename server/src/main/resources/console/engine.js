// The live engine view: per engine a lane of its last steps, each step a column of coloured adapter
// segments (prefill rows hatched, decode rows solid); running and waiting requests, KV pages, tokens/s,
// adapter tiers; migrations drawn as arrows between lanes. Fed by GET /stats/stream.
import { colorOf, fmtRate, h, s, tooltip } from "./common.js";

const STEPS_SHOWN = 120;
const MINI_STEPS = 90;
const STEPS_KEPT = 600;

function adapterName(a) {
  return a == null ? "base" : a;
}

/** One engine's state as the stream tells it. */
class Lane {
  constructor(info) {
    this.info = info;
    this.steps = [];
    this.summary = null;
    this.history = [];
    this.el = null;
  }

  push(step) {
    this.steps.push(step);
    if (this.steps.length > STEPS_KEPT) this.steps.splice(0, this.steps.length - STEPS_KEPT);
  }
}

export class EngineView {
  constructor(lanesEl, throughputEl, tiersEl, miniEl) {
    this.lanesEl = lanesEl;
    this.throughputEl = throughputEl;
    this.tiersEl = tiersEl;
    this.miniEl = miniEl;
    this.lanes = new Map();
    this.migrations = [];
    this.showFull = false;
    this.showMini = false;
    this.pending = false;
  }

  visible(full, mini) {
    this.showFull = full;
    this.showMini = mini;
    this.schedule();
  }

  hello(msg) {
    const old = this.lanes;
    this.lanes = new Map();
    for (const info of msg.engines) {
      const lane = old.get(info.engine) || new Lane(info);
      lane.info = info;
      lane.steps = [];
      lane.history = (msg.history[info.engine] || []).map(([t, gen, prompt]) => ({ t, gen, prompt }));
      this.lanes.set(info.engine, lane);
    }
    this.lanesEl.replaceChildren();
    for (const lane of this.lanes.values()) lane.el = null;
    this.schedule();
  }

  step(ev) {
    const lane = this.lanes.get(ev.engine);
    if (!lane) return;
    lane.push(ev);
    for (const seg of ev.segments) colorOf(seg.adapter);
    this.schedule();
  }

  summary(ev) {
    const lane = this.lanes.get(ev.engine);
    if (!lane) return;
    lane.summary = ev;
    const second = Math.floor(ev.t / 1000) - 1; // the sampler's last full second
    const last = lane.history[lane.history.length - 1];
    if (!last || last.t < second) lane.history.push({ t: second, gen: ev.tokens_per_s, prompt: ev.prompt_tokens_per_s });
    if (lane.history.length > 300) lane.history.shift();
    this.schedule();
  }

  migration(ev) {
    this.migrations.push(ev);
    if (this.migrations.length > 50) this.migrations.shift();
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    setTimeout(() => requestAnimationFrame(() => { this.pending = false; this.render(); }), 100);
  }

  render() {
    if (this.showMini) {
      const lane = this.lanes.values().next().value;
      if (lane) strip(this.miniEl, lane, MINI_STEPS, 86, false);
    }
    if (!this.showFull) return;
    for (const lane of this.lanes.values()) this.renderLane(lane);
    this.renderMigrations();
    this.renderThroughput();
    this.renderTiers();
  }

  renderLane(lane) {
    if (!lane.el) {
      lane.stats = h("div.stats");
      lane.strip = h("div.strip", { "data-engine": lane.info.engine });
      lane.detail = h("div.step-detail");
      lane.keyline = h("div.keyline");
      lane.el = h("section.lane", { "data-engine": lane.info.engine },
        h("div.lane-head", {}, h("span.title", {}, "Engine " + lane.info.engine), h("span.muted", {}, lane.info.model + " · " +
          lane.info.kv_pages_total + " KV pages of " + lane.info.kv_page_size + " tokens · " + lane.info.adapter_slots + " adapter slots")),
        lane.stats,
        h("div.card", {}, h("div.card-title", {}, "Batch, step by step",
          h("span.muted", {}, "each column is one step; its height the rows it ran; one colour per adapter segment")),
        lane.strip, lane.detail, lane.keyline));
      this.lanesEl.append(lane.el);
    }
    const sum = lane.summary;
    const last = lane.steps[lane.steps.length - 1];
    const kvUsed = sum ? sum.kv_pages_used : last ? last.kv_pages_used : 0;
    const kvTotal = lane.info.kv_pages_total;
    lane.stats.replaceChildren(
      stat("Running", sum ? sum.running : "–", "requests in the batch"),
      stat("Waiting", sum ? sum.waiting : "–", "queued for pages or an adapter"),
      stat("KV pages", kvUsed + " / " + kvTotal, ((100 * kvUsed) / Math.max(1, kvTotal)).toFixed(1) + "% of the cache", kvUsed / Math.max(1, kvTotal)),
      stat("Tokens/s", sum ? fmtRate(sum.tokens_per_s) : "–", sum ? fmtRate(sum.prompt_tokens_per_s) + " prompt tokens/s" : ""),
      stat("Steps", sum ? sum.steps.toLocaleString() : "–", last ? "last " + last.duration_ms.toFixed(1) + " ms, " + last.rows + " rows" : "no step yet"));
    strip(lane.strip, lane, STEPS_SHOWN, 150, true);
    lane.detail.replaceChildren(...stepDetail(last));
    const adapters = new Set();
    for (const st of lane.steps.slice(-STEPS_SHOWN)) for (const seg of st.segments) adapters.add(seg.adapter);
    lane.keyline.replaceChildren(
      ...[...adapters].sort((a, b) => adapterName(a).localeCompare(adapterName(b))).map((a) =>
        h("span", {}, h("i.sw", { "--c": colorOf(a) }), adapterName(a))),
      h("span", {}, h("i.sw.hatch"), "prefill rows"), h("span", {}, h("i.sw.solid"), "decode rows"));
  }

  /** Arrows between lanes: from the source's step nearest the migration to the target's. */
  renderMigrations() {
    let overlay = this.lanesEl.querySelector("svg.migrations");
    if (this.migrations.length === 0 || this.lanes.size < 2) { if (overlay) overlay.remove(); return; }
    if (!overlay) { overlay = s("svg", { class: "migrations" }); this.lanesEl.append(overlay); }
    const box = this.lanesEl.getBoundingClientRect();
    const paths = [];
    for (const m of this.migrations) {
      const a = this.lanes.get(m.from), b = this.lanes.get(m.to);
      if (!a || !b || !a.el || !b.el) continue;
      const pa = stepPoint(a, m.t, box), pb = stepPoint(b, m.t, box);
      if (!pa || !pb) continue;
      // A curve bowed to the left, so an arrow between the same step positions stays visible.
      const bow = Math.max(30, Math.abs(pb.y - pa.y) / 4);
      paths.push(s("path", { d: `M${pa.x},${pa.y} C${pa.x - bow},${pa.y} ${pb.x - bow},${pb.y} ${pb.x},${pb.y}`, "marker-end": "url(#arrow)",
        "data-request": m.request }));
    }
    overlay.replaceChildren(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto" },
      s("path", { d: "M0,0 L8,4 L0,8 z", fill: "#111827" }))), ...paths);
  }

  renderThroughput() {
    const W = Math.max(300, this.throughputEl.clientWidth), H = 190, L = 40, B = 20, T = 8;
    const now = Math.floor(Date.now() / 1000);
    const from = now - 300;
    let max = 1;
    for (const lane of this.lanes.values()) for (const p of lane.history) if (p.t >= from) max = Math.max(max, p.gen, p.prompt);
    max = niceCeil(max);
    const x = (t) => L + ((t - from) / 300) * (W - L - 4);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    const parts = [];
    for (const f of [0, 0.5, 1]) {
      parts.push(s("line", { class: "grid", x1: L, x2: W, y1: y(max * f), y2: y(max * f) }));
      const v = max * f;
      parts.push(s("text", { class: "axis", x: L - 6, y: y(v) + 3, "text-anchor": "end" }, v >= 1000 ? fmtRate(v) : String(+v.toFixed(1))));
    }
    for (const [label, t] of [["−5 min", from], ["−2.5", from + 150], ["now", now]]) {
      parts.push(s("text", { class: "axis", x: x(t), y: H - 4, "text-anchor": t === from ? "start" : t === now ? "end" : "middle" }, label));
    }
    const inks = ["#4f46e5", "#0891b2", "#d97706", "#db2777"];
    let k = 0;
    for (const lane of this.lanes.values()) {
      const pts = lane.history.filter((p) => p.t >= from);
      const ink = inks[k++ % inks.length];
      if (pts.length < 2) continue;
      const line = (key) => pts.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p[key]).toFixed(1)).join("");
      const gen = line("gen");
      parts.push(s("path", { class: "area", d: gen + `L${x(pts[pts.length - 1].t)},${y(0)}L${x(pts[0].t)},${y(0)}z`, fill: ink }));
      parts.push(s("path", { class: "line", d: gen, stroke: ink }));
      parts.push(s("path", { class: "line", d: line("prompt"), stroke: ink, "stroke-dasharray": "3 3", opacity: 0.6 }));
    }
    const engines = [...this.lanes.keys()];
    const legend = h("div.keyline", {},
      engines.length > 1
        ? engines.map((name, i) => h("span", {}, h("i.sw", { "--c": inks[i % inks.length] }), "engine " + name))
        : h("span", {}, h("i.sw", { "--c": inks[0] }), "generated"),
      h("span", {}, h("i.sw.hatch"), "prompt (dashed)"));
    this.throughputEl.replaceChildren(s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" }, ...parts), legend);
    this.throughputEl.style.height = "auto";
    this.throughputEl.firstChild.style.height = H + "px";
  }

  renderTiers() {
    const blocks = [];
    for (const lane of this.lanes.values()) {
      const sum = lane.summary;
      if (!sum) continue;
      const t = sum.adapters;
      const item = (name, cls) => h("div.item" + (cls ? "." + cls : ""), { "data-adapter": name }, h("span.dot", { "--c": colorOf(name) }), name,
        cls === "loading" ? h("span.muted", {}, "\u00a0· loading") : null);
      const slots = h("div.slots", {}, ...Array.from({ length: sum.adapter_slots }, (_, i) => {
        const name = i < t.device.length ? t.device[i] : i < t.device.length + t.loading.length ? t.loading[i - t.device.length] : null;
        return h("i" + (name ? ".on" : ""), name ? { "--c": colorOf(name), title: name } : {});
      }));
      if (this.lanes.size > 1) blocks.push(h("div.label", { style: { gridColumn: "1 / -1" } }, "Engine " + lane.info.engine));
      blocks.push(
        h("div.tier-col", { "data-tier": "device" }, h("h4", {}, "Device", h("span", {}, t.device.length + t.loading.length + " / " + sum.adapter_slots)),
          slots, ...t.device.map((n) => item(n)), ...t.loading.map((n) => item(n, "loading"))),
        h("div.tier-col", { "data-tier": "host" }, h("h4", {}, "Host memory", h("span", {}, String(t.host.length))), ...t.host.map((n) => item(n))),
        h("div.tier-col", { "data-tier": "disk" }, h("h4", {}, "Disk only", h("span", {}, String(t.disk.length))), ...t.disk.map((n) => item(n))));
    }
    this.tiersEl.replaceChildren(...blocks);
  }
}

function stat(k, v, sub, fill) {
  return h("div.card.stat", {}, h("div.k", {}, k), h("div.v", {}, String(v)), h("div.sub", {}, sub),
    fill != null ? h("div.meter", {}, h("i", { style: { width: (100 * Math.min(1, fill)).toFixed(1) + "%" } })) : null);
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** A hatch pattern per colour, for prefill rows. */
function hatch(defs, color) {
  const id = "hatch-" + color.slice(1);
  if (!defs.querySelector("#" + id)) {
    defs.append(s("pattern", { id, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      s("rect", { width: 6, height: 6, fill: color, opacity: 0.45 }), s("rect", { width: 3, height: 6, fill: color })));
  }
  return `url(#${id})`;
}

/** Draws a lane's last {@code n} steps into {@code el}: one column per step, segments stacked in row order. */
function strip(el, lane, n, height, axis) {
  const steps = lane.steps.slice(-n);
  const W = Math.max(200, el.clientWidth || 800), H = height, L = axis ? 34 : 0, B = axis ? 16 : 2;
  // The scale follows most steps, not the rare long prefill chunk: taller columns are cut, with a break mark.
  const sorted = steps.map((st) => st.rows).sort((a, b) => a - b);
  const typical = sorted.length ? sorted[Math.floor(0.9 * (sorted.length - 1))] : 0;
  const max = Math.max(4, Math.min(sorted.length ? sorted[sorted.length - 1] : 0, Math.ceil(typical * 1.6)));
  const colW = (W - L) / n;
  const y = (rows) => (H - B) * (1 - Math.min(rows, max) / max);
  const defs = s("defs");
  const parts = [defs];
  if (axis) {
    for (const f of [0, 0.5, 1]) {
      const v = Math.round(max * f);
      parts.push(s("line", { class: "grid", x1: L, x2: W, y1: y(v), y2: y(v) }));
      parts.push(s("text", { class: "axis", x: L - 6, y: y(v) + 3, "text-anchor": "end" }, String(v)));
    }
    parts.push(s("text", { class: "axis", x: W, y: H - 2, "text-anchor": "end" }, "newest step →"));
    parts.push(s("text", { class: "axis", x: L, y: H - 2 }, "rows"));
  }
  if (steps.length === 0) {
    parts.push(s("text", { class: "empty-note", x: L + 12, y: (H - B) / 2 }, "No steps yet: the engine is idle. Generate something in the playground."));
  }
  const x0 = W - steps.length * colW;
  steps.forEach((st, i) => {
    const g = s("g", { class: "step", "data-step": st.step, "data-segments": st.segments.length, "data-adapters": st.segments.map((x) => adapterName(x.adapter)).join(",") });
    let rowsBelow = 0;
    const w = Math.max(1, colW - (colW > 4 ? 1.5 : 0));
    for (const seg of st.segments) {
      const color = colorOf(seg.adapter);
      // Decode rows at the bottom of the segment, prefill rows above them.
      for (const [rows, fill] of [[seg.decode_rows, color], [seg.prefill_rows, hatch(defs, color)]]) {
        if (rows === 0) continue;
        const top = y(rowsBelow + rows), bottom = y(rowsBelow);
        rowsBelow += rows;
        if (bottom - top < 0.5) continue;
        g.append(s("rect", { class: "s", x: (x0 + i * colW).toFixed(2), y: top.toFixed(2), width: w.toFixed(2), height: Math.max(1, bottom - top - 0.5).toFixed(2), fill,
          "data-adapter": adapterName(seg.adapter) }));
      }
    }
    if (st.rows > max) g.append(s("rect", { class: "cut", x: (x0 + i * colW).toFixed(2), y: 5, width: w.toFixed(2), height: 3 }));
    g.append(s("rect", { x: (x0 + i * colW).toFixed(2), y: 0, width: colW.toFixed(2), height: H - B, fill: "transparent" }));
    g.addEventListener("mousemove", (e) => tooltip(e, stepTooltip(st)));
    g.addEventListener("mouseleave", (e) => tooltip(e, null));
    parts.push(g);
  });
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" }, ...parts);
  svg.style.height = H + "px"; // through the CSSOM: the page's content security policy forbids style attributes
  el.replaceChildren(svg);
}

function stepTooltip(st) {
  return h("div", {},
    h("div.tt-head", {}, h("span", {}, "Step " + st.step.toLocaleString()), h("span", {}, st.duration_ms.toFixed(1) + " ms")),
    st.segments.map((seg) => h("div.seg", {}, h("span.dot", { "--c": colorOf(seg.adapter) }), adapterName(seg.adapter) + ": ",
      segmentText(seg))),
    h("div.pct", { style: { textAlign: "left", marginTop: "6px" } },
      `${st.running} running · ${st.waiting} waiting · ${st.kv_pages_used}/${st.kv_pages_total} KV pages`));
}

function segmentText(seg) {
  const parts = [];
  if (seg.prefill_rows) parts.push(seg.prefill_rows + " prefill");
  if (seg.decode_rows) parts.push(seg.decode_rows + " decode");
  return parts.join(" + ") + " rows, " + seg.requests + (seg.requests === 1 ? " request" : " requests");
}

/** The newest step as one bar, each segment's width its rows. */
function stepDetail(st) {
  if (!st) return [h("div.segbar"), h("div.step-meta", {}, "no step yet")];
  // Each segment: its decode rows solid, then its prefill rows hatched; the label on the first part.
  const parts = [];
  for (const seg of st.segments) {
    const label = [adapterName(seg.adapter), h("small", {}, (seg.decode_rows ? seg.decode_rows + "D " : "") + (seg.prefill_rows ? seg.prefill_rows + "P" : ""))];
    const common = { "--c": colorOf(seg.adapter), title: adapterName(seg.adapter) + ": " + segmentText(seg), "data-adapter": adapterName(seg.adapter) };
    let first = true;
    for (const [rows, cls] of [[seg.decode_rows, ""], [seg.prefill_rows, ".prefill"]]) {
      if (rows === 0) continue;
      parts.push(h("div" + cls + (first ? "" : ".cont"), { ...common, style: { flex: String(rows) } }, first ? label : null));
      first = false;
    }
  }
  const bar = h("div.segbar", { "data-step": st.step, "data-segments": st.segments.length }, parts);
  return [bar, h("div.step-meta", {}, "step " + st.step.toLocaleString() + " · " + st.rows + " rows · " + st.sampled + " sampled · " + st.duration_ms.toFixed(1) + " ms")];
}

function stepPoint(lane, t, box) {
  const steps = lane.steps.slice(-STEPS_SHOWN);
  if (steps.length === 0) return null;
  let best = 0;
  for (let i = 1; i < steps.length; i++) if (Math.abs(steps[i].t - t) < Math.abs(steps[best].t - t)) best = i;
  const r = lane.strip.getBoundingClientRect();
  const colW = r.width / STEPS_SHOWN;
  const x = r.right - (steps.length - best - 0.5) * colW - box.left;
  return { x, y: r.top + r.height / 2 - box.top };
}
