// Rendering of search results: hit cards (title, highlighted text, metadata), the bar
// chart of each hit's per-retriever scores, and the request's stage timings.
import { formatScore, h, highlight, queryTerms } from "./dom.js";

// Bars are drawn in this order; other score names follow alphabetically.
const SCORE_ORDER = ["bm25", "splade", "lucene", "dense", "binary", "colbert", "maxsim", "fused", "relevance"];

// A hit's scores as the bars show them: the API's `scores`, plus `fused` (the hit's
// `score`) when that is not one of them (a fusion or a later stage produced it).
export function barScores(hit) {
  const scores = { ...(hit.scores || {}) };
  if (!Object.values(scores).some((v) => v === hit.score)) scores.fused = hit.score;
  return scores;
}

function orderedNames(names) {
  const known = SCORE_ORDER.filter((n) => names.has(n));
  return known.concat([...names].filter((n) => !SCORE_ORDER.includes(n)).sort());
}

// Per score name, the range the bars span: from min(0, lowest) to max(0, highest) over
// the hits shown, so that bars compare hits within one retriever's scale.
export function scoreRanges(hits) {
  const ranges = {};
  for (const hit of hits) {
    for (const [name, v] of Object.entries(barScores(hit))) {
      const r = (ranges[name] ||= { lo: 0, hi: 0 });
      r.lo = Math.min(r.lo, v);
      r.hi = Math.max(r.hi, v);
    }
  }
  return ranges;
}

export function scoreBars(hit, ranges) {
  const scores = barScores(hit);
  const rows = orderedNames(new Set(Object.keys(scores))).map((name) => {
    const v = scores[name];
    const { lo, hi } = ranges[name];
    const pct = hi > lo ? ((v - lo) / (hi - lo)) * 100 : 0;
    return h(
      "div",
      { class: `score score-${name}` },
      h("span", { class: "score-name" }, name),
      h(
        "span",
        { class: "bar-track", "aria-hidden": "true" },
        h("span", {
          class: "bar",
          style: `width: ${pct.toFixed(2)}%`,
          dataset: { kind: name, value: String(v), pct: pct.toFixed(2) },
        }),
      ),
      h("span", { class: "score-value", title: String(v) }, formatScore(v)),
    );
  });
  return h("div", { class: "scores", role: "group", "aria-label": "Scores" }, rows);
}

function metadataList(metadata) {
  const entries = Object.entries(metadata || {});
  if (!entries.length) return null;
  return h(
    "dl",
    { class: "metadata" },
    entries.map(([key, value]) =>
      h("div", {}, h("dt", {}, key), h("dd", {}, typeof value === "string" ? value : JSON.stringify(value))),
    ),
  );
}

// One <li> per hit. `options.idPrefix` makes element ids unique per view; `options.shared`
// (a Set of doc ids) marks hits that the other side of a comparison also found.
export function renderHits(list, hits, query, options = {}) {
  const terms = queryTerms(query);
  const ranges = scoreRanges(hits);
  const prefix = options.idPrefix || "hit";
  list.replaceChildren(
    ...hits.map((hit, i) => {
      const shared = options.shared?.has(hit.doc_id);
      return h(
        "li",
        {
          class: shared ? "hit overlap" : "hit",
          id: `${prefix}-${i + 1}`,
          dataset: { docId: hit.doc_id, score: String(hit.score) },
        },
        h(
          "div",
          { class: "hit-head" },
          h("span", { class: "rank" }, `${i + 1}.`),
          h("h3", { class: "hit-title" }, highlight(hit.title || "(untitled)", terms)),
          shared ? h("span", { class: "badge" }, "in both") : null,
        ),
        h("p", { class: "doc-id" }, "id ", h("code", {}, hit.doc_id), ` · score ${formatScore(hit.score)}`),
        hit.text ? h("p", { class: "hit-text" }, highlight(hit.text, terms)) : null,
        metadataList(hit.metadata),
        scoreBars(hit, ranges),
      );
    }),
  );
}

export function renderTimings(container, timings) {
  const entries = Object.entries(timings || {});
  container.replaceChildren(
    ...entries.map(([stage, ms]) =>
      h("div", { class: "timing", dataset: { stage } }, h("dt", {}, stage), h("dd", {}, `${ms.toFixed(2)} ms`)),
    ),
  );
  container.hidden = !entries.length;
}
