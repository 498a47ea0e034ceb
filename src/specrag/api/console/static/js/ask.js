// The Ask view: the answer streams over the /ask Server-Sent Events, one span per delta;
// at the end the [n] markers link to the cited passages and the decoding figures show.
import { streamEvents } from "./api.js";
import { formatScore, h, highlight, queryTerms, showError } from "./dom.js";
import { InputError, Settings, isFilterError } from "./settings.js";

// Figures of the final event's `stats` worth a line, in this order (others follow).
const STAT_ORDER = [
  "generator",
  "generated_tokens",
  "target_forwards",
  "mean_accepted_tokens_per_forward",
  "tokens_per_second",
  "retrieval_ms",
  "generation_ms",
];

// Text with each [n] turned into a link to passage n.
function linkCitations(text) {
  const nodes = [];
  let last = 0;
  for (const m of text.matchAll(/\[(\d+)\]/g)) {
    if (m.index > last) nodes.push(text.slice(last, m.index));
    nodes.push(h("a", { href: `#ask-passage-${m[1]}`, class: "cite" }, m[0]));
    last = m.index + m[0].length;
  }
  nodes.push(text.slice(last));
  return nodes;
}

export function initAsk(state) {
  const form = document.getElementById("ask-form");
  const settings = new Settings(document.getElementById("ask-settings"), "ask", { k: 5 });
  const error = document.getElementById("ask-error");
  const status = document.getElementById("ask-status");
  const answer = document.getElementById("ask-answer");
  const passages = document.getElementById("ask-passages");
  const stats = document.getElementById("ask-stats");
  const button = form.querySelector("button[type=submit]");

  function finish(final, question) {
    for (const span of answer.querySelectorAll(".delta")) span.replaceChildren(...linkCitations(span.textContent));
    const terms = queryTerms(question);
    passages.replaceChildren(
      ...final.citations.map((c) =>
        h(
          "li",
          { id: `ask-passage-${c.number}`, class: c.cited ? "hit cited" : "hit", dataset: { docId: c.doc_id } },
          h("div", { class: "hit-head" }, h("span", { class: "rank" }, `[${c.number}]`), h("h3", { class: "hit-title" }, c.title || "(untitled)"), c.cited ? h("span", { class: "badge" }, "cited") : null),
          h("p", { class: "doc-id" }, "id ", h("code", {}, c.doc_id)),
          h("p", { class: "hit-text" }, highlight(c.text, terms)),
        ),
      ),
    );
    const names = Object.keys(final.stats);
    const ordered = STAT_ORDER.filter((n) => n in final.stats).concat(names.filter((n) => !STAT_ORDER.includes(n)));
    stats.replaceChildren(
      ...ordered.map((n) => {
        const v = final.stats[n];
        return h("div", { dataset: { stat: n } }, h("dt", {}, n), h("dd", {}, typeof v === "number" && !Number.isInteger(v) ? formatScore(v) : String(v)));
      }),
    );
    stats.hidden = false;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null);
    const question = document.getElementById("ask-question").value;
    let body;
    try {
      body = { question, ...settings.read(), stream: true };
    } catch (err) {
      if (!(err instanceof InputError)) showError(error, err);
      return;
    }
    if (!state.collection) return showError(error, new Error("no collection selected"));
    answer.replaceChildren();
    passages.replaceChildren();
    stats.replaceChildren();
    stats.hidden = true;
    answer.dataset.state = "streaming";
    status.textContent = "Retrieving and answering…";
    button.disabled = true;
    let final = null;
    let deltas = 0;
    try {
      await streamEvents(`/collections/${encodeURIComponent(state.collection)}/ask`, body, (name, data) => {
        if (name === "delta") {
          answer.append(h("span", { class: "delta" }, data.text));
          deltas += 1;
          status.textContent = `Streaming… ${deltas} parts`;
        } else if (name === "done") {
          final = data;
        } else if (name === "error") {
          throw new Error(data.detail);
        }
      });
      if (!final) throw new Error("the answer stream ended before its final event");
      finish(final, question);
      answer.dataset.state = "done";
      status.textContent = final.answer ? `Done: ${deltas} parts.` : "No answer: the retrieved passages had no usable sentence.";
    } catch (err) {
      answer.dataset.state = "error";
      status.textContent = "";
      if (isFilterError(err, body)) settings.showFilterError(err);
      else showError(error, err);
    } finally {
      button.disabled = false;
    }
  });
  return settings;
}
