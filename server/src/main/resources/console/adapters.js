// The adapters page: what is registered (rank, target modules, size, tier), load and unload through
// vLLM's endpoints. The API key, when the server has one, comes from the key panel, never from the page.
import { colorAll, colorOf, fmtBytes, getJson, h, postJson } from "./common.js";

export class AdaptersPage {
  constructor(onChange) {
    this.onChange = onChange;
    this.rows = document.getElementById("adapter-rows");
    this.status = document.getElementById("adapter-status");
    this.count = document.getElementById("adapter-count");
    document.getElementById("load-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.load();
    });
  }

  say(message, kind) {
    this.status.textContent = message;
    this.status.className = "status " + (kind || "");
  }

  fail(e) {
    this.say(e.status === 401 ? "Unauthorized: " + e.message + " Set the API key (top right)." : e.message, "error");
  }

  async refresh() {
    const ask = (this.asked = (this.asked || 0) + 1);
    let list;
    try {
      list = await getJson("/v1/adapters");
      if (ask !== this.asked) return; // a newer listing is under way
    } catch (e) {
      if (ask !== this.asked) return;
      this.rows.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "Cannot list the adapters.")));
      this.count.textContent = "";
      this.fail(e);
      return;
    }
    colorAll(list.data.map((a) => a.name));
    this.count.textContent = list.data.length + " on " + list.base_model;
    if (list.data.length === 0) {
      this.rows.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No adapters: only the base model is served.")));
      return;
    }
    this.rows.replaceChildren(...list.data.map((a) => h("tr", { "data-adapter": a.name },
      h("td.name", {}, h("span.dot", { "--c": colorOf(a.name) }), a.name),
      h("td.num", {}, a.rank < 0 ? "?" : String(a.rank)),
      h("td.num", {}, String(a.alpha)),
      h("td", {}, a.target_modules.map((m) => h("span.tag", {}, m))),
      h("td.num", {}, fmtBytes(a.size_bytes)),
      h("td", {}, Object.entries(a.tiers).map(([engine, tier]) =>
        h("span.tier.tier-" + tier, { title: "engine " + engine, "data-tier": tier }, tier))),
      h("td", {}, h("button.danger", { type: "button", "data-action": "unload", onclick: () => this.unload(a.name) }, "Unload")))));
  }

  async load() {
    const name = document.getElementById("load-name").value.trim();
    const path = document.getElementById("load-path").value.trim();
    this.say("Loading " + name + "…");
    try {
      const message = await postJson("/v1/load_lora_adapter", { lora_name: name, lora_path: path });
      this.say(message, "ok");
      document.getElementById("load-name").value = "";
      document.getElementById("load-path").value = "";
      this.onChange();
    } catch (e) {
      this.fail(e);
    }
    await this.refresh();
  }

  async unload(name) {
    this.say("Unloading " + name + "…");
    try {
      this.say(await postJson("/v1/unload_lora_adapter", { lora_name: name }), "ok");
      this.onChange();
    } catch (e) {
      this.fail(e);
    }
    await this.refresh();
  }
}
