// Shared pieces of the console: the API key, requests, colours per adapter, small DOM helpers.

const KEY_STORE = "punica.apiKey";

/** The API key, asked for in the page and kept in this tab's session storage only. */
export const apiKey = {
  get() { return sessionStorage.getItem(KEY_STORE) || ""; },
  set(value) {
    if (value) sessionStorage.setItem(KEY_STORE, value); else sessionStorage.removeItem(KEY_STORE);
    document.dispatchEvent(new CustomEvent("punica:key"));
  },
};

/** An HTTP error with the OpenAI error body's message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey.get();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

/** Reads an error response as OpenAI sends it ({"error": {"message": ...}}), or its text. */
export async function errorOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error && body.error.message) return new ApiError(response.status, body.error.message);
  } catch (e) { /* not JSON */ }
  return new ApiError(response.status, text || response.statusText);
}

export async function getJson(path) {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) throw await errorOf(r);
  return r.json();
}

export async function postJson(path, body) {
  const r = await fetch(path, { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) });
  if (!r.ok) throw await errorOf(r);
  return r.text();
}

/** Calls {@code onData} with each "data:" payload of a Server-Sent Events response body. */
export async function readSse(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of frame.split("\n")) {
        if (line.startsWith("data: ")) onData(line.slice(6));
      }
    }
  }
}

// ---- colours: one per adapter, stable while the set of adapters is ------------------------------

// Neighbours differ in hue as much as possible, so the first few adapters are told apart at a glance.
const PALETTE = ["#6366f1", "#f59e0b", "#10b981", "#ec4899", "#06b6d4", "#ef4444", "#8b5cf6", "#84cc16", "#f97316", "#0ea5e9",
  "#d946ef", "#14b8a6"];
export const BASE_COLOR = "#94a3b8";
const assigned = new Map();

/** Colour of an adapter (null: the base model): the palette in order of first sight, then round again. */
export function colorOf(adapter) {
  if (adapter == null) return BASE_COLOR;
  let c = assigned.get(adapter);
  if (!c) {
    c = PALETTE[assigned.size % PALETTE.length];
    assigned.set(adapter, c);
  }
  return c;
}

/** Gives colours in sorted order first, so a page load colours the same adapters the same way. */
export function colorAll(names) {
  [...names].sort().forEach(colorOf);
}

// ---- DOM ------------------------------------------------------------------------------------------

/** h("div.cls", {attr: v}, children...): a small element builder; strings become text nodes. */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k.startsWith("--")) el.style.setProperty(k, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export function banner(message) {
  const el = document.getElementById("banner");
  if (!message) { el.hidden = true; return; }
  document.getElementById("banner-text").textContent = message;
  el.hidden = false;
}

/** Shows the tooltip near the pointer with {@code content} (a node), or hides it when null. */
export function tooltip(event, content) {
  const tip = document.getElementById("tooltip");
  if (!content) { tip.hidden = true; return; }
  tip.replaceChildren(content);
  tip.hidden = false;
  const pad = 14;
  const r = tip.getBoundingClientRect();
  let x = event.clientX + pad, y = event.clientY + pad;
  if (x + r.width > innerWidth - 8) x = event.clientX - r.width - pad;
  if (y + r.height > innerHeight - 8) y = event.clientY - r.height - pad;
  tip.style.left = x + "px";
  tip.style.top = y + "px";
}

export function fmtBytes(n) {
  if (n < 0) return "?";
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + " MiB";
  return (n / (1 << 30)).toFixed(2) + " GiB";
}

export function fmtMillis(ms) {
  return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

export function fmtRate(x) {
  if (x === 0) return "0";
  if (x >= 1000) return (x / 1000).toFixed(1) + "k";
  if (x >= 100) return x.toFixed(0);
  return x.toFixed(1);
}
