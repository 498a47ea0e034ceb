// Entry point: the view switcher (hash links, so the browser's back button and keyboard
// work), the collection picker shared by every view, and the views themselves.
import { api, apiKey, setApiKey } from "./api.js";
import { initAsk } from "./ask.js";
import { CollectionsView } from "./collections.js";
import { initCompare } from "./compare.js";
import { h, showError } from "./dom.js";
import { initSearch } from "./search.js";

const VIEWS = ["collections", "search", "compare", "ask"];
const state = { collection: null, collections: [] };
const picker = document.getElementById("collection");
const globalError = document.getElementById("global-error");

// The view a hash names: a view's name, or an element inside a view (a citation link
// such as #ask-passage-2 keeps the Ask view); anything else shows Search.
function viewOf(hash) {
  const name = decodeURIComponent(hash.replace(/^#\/?/, ""));
  if (VIEWS.includes(name)) return name;
  const section = name && document.getElementById(name)?.closest("section[id^='view-']");
  return section ? section.id.slice("view-".length) : "search";
}

function showView() {
  const view = viewOf(location.hash);
  document.body.dataset.route = location.hash; // the hash this view was chosen for
  for (const v of VIEWS) {
    document.getElementById(`view-${v}`).hidden = v !== view;
    const link = document.querySelector(`nav a[href="#${v}"]`);
    if (v === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

const settings = [];
const collectionsView = new CollectionsView(state, () => loadCollections());

function selectCollection(name) {
  state.collection = name;
  const info = state.collections.find((c) => c.name === name);
  const kinds = info ? Object.keys(info.kinds) : [];
  for (const s of settings) s.setKinds(kinds);
}

async function loadCollections() {
  try {
    state.collections = await api("GET", "/collections");
    showError(globalError, null);
  } catch (err) {
    showError(globalError, err);
    return;
  }
  const names = state.collections.map((c) => c.name);
  const wanted = new URLSearchParams(location.search).get("collection");
  const keep = [state.collection, wanted, names.find((n) => state.collections.find((c) => c.name === n).current_version)].find((n) => n && names.includes(n));
  picker.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
  picker.disabled = !names.length;
  if (keep || names.length) picker.value = keep || names[0];
  selectCollection(picker.value || null);
  collectionsView.render(state.collections);
}

// The API key field shows when the server requires keys (/health needs none), or when a
// key was given before; a changed key reloads the collections with it.
const keyField = document.getElementById("api-key-field");
const keyInput = document.getElementById("api-key");
keyInput.value = apiKey();
keyInput.addEventListener("change", () => {
  setApiKey(keyInput.value.trim());
  loadCollections();
});

async function checkAuth() {
  try {
    const health = await api("GET", "/health");
    keyField.hidden = health.auth !== "keys" && !apiKey();
  } catch (err) {
    showError(globalError, err);
  }
}

picker.addEventListener("change", () => selectCollection(picker.value));
window.addEventListener("hashchange", showView);
window.addEventListener("unhandledrejection", (event) => showError(globalError, event.reason));
document.getElementById("refresh-collections").addEventListener("click", loadCollections);
settings.push(initSearch(state), ...initCompare(state), initAsk(state));
showView();
Promise.all([checkAuth(), loadCollections()]).then(() => document.body.setAttribute("data-ready", "true"));
