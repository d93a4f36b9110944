// The console's shell: tabs, the API key panel, the model list, and the engine statistics stream.
import { apiKey, banner, colorAll, getJson } from "./common.js";
import { Playground } from "./playground.js";
import { EngineView } from "./engine.js";
import { AdaptersPage } from "./adapters.js";

const engineView = new EngineView(document.getElementById("lanes"), document.getElementById("throughput"),
  document.getElementById("tiers"), document.getElementById("mini-strip"));
const playground = new Playground();
const adaptersPage = new AdaptersPage(refreshModels);

// ---- tabs ------------------------------------------------------------------------------------------

function showTab() {
  const tab = (location.hash || "#playground").slice(1);
  const name = ["playground", "engine", "adapters"].includes(tab) ? tab : "playground";
  for (const page of document.querySelectorAll(".page")) page.hidden = page.dataset.page !== name;
  for (const a of document.querySelectorAll(".tabs a")) a.setAttribute("aria-selected", String(a.dataset.tab === name));
  engineView.visible(name === "engine", name === "playground");
  // The adapters page follows tiers as they change (loads, evictions) while it is shown.
  clearInterval(adaptersTimer);
  if (name === "adapters") {
    adaptersPage.refresh();
    adaptersTimer = setInterval(() => adaptersPage.refresh(), 3000);
  }
}
let adaptersTimer;
addEventListener("hashchange", showTab);

// ---- API key ---------------------------------------------------------------------------------------

const keyPanel = document.getElementById("key-panel");
const keyButton = document.getElementById("key-button");
const keyInput = document.getElementById("key-input");

function showKeyState() {
  keyButton.dataset.set = String(apiKey.get() !== "");
  keyButton.textContent = apiKey.get() ? "API key set" : "API key";
}

export function askForKey() {
  keyPanel.hidden = false;
  keyInput.value = "";
  keyInput.focus();
}

keyButton.addEventListener("click", () => (keyPanel.hidden ? askForKey() : (keyPanel.hidden = true)));
document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  apiKey.set(keyInput.value.trim());
  keyInput.value = "";
  keyPanel.hidden = true;
});
document.getElementById("key-clear").addEventListener("click", () => {
  apiKey.set("");
  keyPanel.hidden = true;
});
document.addEventListener("punica:key", () => {
  showKeyState();
  banner(null);
  refreshModels();
  adaptersPage.refresh();
});
document.getElementById("banner-close").addEventListener("click", () => banner(null));
document.addEventListener("punica:unauthorized", (e) => {
  banner("The server refused the API key: " + e.detail + " Set the key with the API key button.");
  askForKey();
});

// ---- models ----------------------------------------------------------------------------------------

let modelsAsked = 0;

/** Loads /v1/models; the base model is the card without a parent. Only the newest call's answer counts. */
async function refreshModels() {
  const ask = ++modelsAsked;
  try {
    const list = await getJson("/v1/models");
    if (ask !== modelsAsked) return;
    const base = list.data.find((m) => !m.parent);
    const adapters = list.data.filter((m) => m.parent).map((m) => m.id);
    colorAll(adapters);
    document.getElementById("model-name").textContent = base ? base.id : "?";
    playground.setModels(base ? base.id : null, adapters);
  } catch (e) {
    if (ask !== modelsAsked) return; // an answer to an older key: a newer call is under way
    if (e.status === 401) document.dispatchEvent(new CustomEvent("punica:unauthorized", { detail: e.message }));
    else banner("Cannot list the models: " + e.message);
  }
}

// ---- the statistics stream -------------------------------------------------------------------------

const live = document.getElementById("live");
function connectStats() {
  const source = new EventSource("/stats/stream");
  const state = (s) => { live.dataset.state = s; live.querySelector("span").textContent = s === "open" ? "live" : s; };
  source.addEventListener("open", () => state("open"));
  source.addEventListener("error", () => state(source.readyState === EventSource.CLOSED ? "closed" : "connecting"));
  source.addEventListener("hello", (e) => engineView.hello(JSON.parse(e.data)));
  source.addEventListener("step", (e) => engineView.step(JSON.parse(e.data)));
  source.addEventListener("engine", (e) => engineView.summary(JSON.parse(e.data)));
  source.addEventListener("migration", (e) => engineView.migration(JSON.parse(e.data)));
}

showKeyState();
showTab();
refreshModels();
connectStats();
document.body.dataset.ready = "true"; // the handlers are in place (browser tests wait for this)
