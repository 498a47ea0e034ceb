// The Search view: one query with the settings form; hits with score bars and timings.
import { api } from "./api.js";
import { showError } from "./dom.js";
import { renderHits, renderTimings } from "./hits.js";
import { InputError, Settings, isFilterError } from "./settings.js";

export const INCLUDE = ["title", "text", "metadata", "scores"];

export function initSearch(state) {
  const form = document.getElementById("search-form");
  const settings = new Settings(document.getElementById("search-settings"), "search");
  const error = document.getElementById("search-error");
  const summary = document.getElementById("search-summary");
  const list = document.getElementById("search-hits");
  const timings = document.getElementById("search-timings");
  const requestView = document.getElementById("search-request");
  const button = form.querySelector("button[type=submit]");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    let body;
    try {
      body = { query: document.getElementById("search-query").value, ...settings.read(), include: INCLUDE };
    } catch (err) {
      if (!(err instanceof InputError)) showError(error, err);
      return;
    }
    if (!state.collection) return showError(error, new Error("no collection selected"));
    requestView.textContent = JSON.stringify(body, null, 2);
    button.disabled = true;
    summary.textContent = "Searching…";
    try {
      const response = await api("POST", `/collections/${encodeURIComponent(state.collection)}/search`, body);
      renderHits(list, response.hits, body.query, { idPrefix: "search-hit" });
      renderTimings(timings, response.timings_ms);
      summary.textContent = `${response.hits.length} hits from ${response.collection} (version ${response.version})`;
    } catch (err) {
      list.replaceChildren();
      renderTimings(timings, {});
      summary.textContent = "";
      if (isFilterError(err, body)) settings.showFilterError(err);
      else showError(error, err);
    } finally {
      button.disabled = false;
    }
  });
  return settings;
}
