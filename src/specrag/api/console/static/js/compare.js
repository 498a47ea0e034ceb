// The Compare view: one query, two settings side by side; hits found by both sides in
// their top k are marked, and the overlap is counted.
import { api } from "./api.js";
import { showError } from "./dom.js";
import { renderHits, renderTimings } from "./hits.js";
import { INCLUDE } from "./search.js";
import { InputError, Settings, isFilterError } from "./settings.js";

export function initCompare(state) {
  const form = document.getElementById("compare-form");
  const sides = ["left", "right"].map((side) => ({
    side,
    settings: new Settings(document.getElementById(`compare-${side}-settings`), `compare-${side}`, { k: 5, showMinRelevance: false }),
    error: document.getElementById(`compare-${side}-error`),
    list: document.getElementById(`compare-${side}-hits`),
    timings: document.getElementById(`compare-${side}-timings`),
  }));
  const summary = document.getElementById("compare-summary");
  const error = document.getElementById("compare-error");

  async function run(side, query) {
    showError(side.error, null);
    let body;
    try {
      body = { query, ...side.settings.read(), include: INCLUDE };
    } catch (err) {
      if (!(err instanceof InputError)) showError(side.error, err);
      return null;
    }
    try {
      return await api("POST", `/collections/${encodeURIComponent(state.collection)}/search`, body);
    } catch (err) {
      if (isFilterError(err, body)) side.settings.showFilterError(err);
      else showError(side.error, err);
      return null;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    if (!state.collection) return showError(error, new Error("no collection selected"));
    const query = document.getElementById("compare-query").value;
    summary.textContent = "Searching…";
    const results = await Promise.all(sides.map((side) => run(side, query)));
    const ids = results.map((r) => new Set(r ? r.hits.map((hit) => hit.doc_id) : []));
    const shared = new Set([...ids[0]].filter((d) => ids[1].has(d)));
    sides.forEach((side, i) => {
      const response = results[i];
      renderHits(side.list, response ? response.hits : [], query, { idPrefix: `compare-${side.side}-hit`, shared });
      renderTimings(side.timings, response ? response.timings_ms : {});
    });
    summary.textContent = results.every(Boolean)
      ? `${shared.size} documents in both result lists (left ${ids[0].size}, right ${ids[1].size})`
      : "";
  });
  return sides.map((side) => side.settings);
}
