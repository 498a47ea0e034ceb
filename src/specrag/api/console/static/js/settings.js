// The retrieval settings form shared by Search, Compare and Ask: k, retriever (a kind,
// hybrid, or explicit weights and fusion), a JSON filter, rerank and min_relevance.
// `read()` returns the request fields; a filter that is not JSON is reported inline
// before any request, and the API's own filter errors are shown in the same place.
import { h } from "./dom.js";

export class InputError extends Error {}

function field(id, label, input, hint) {
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", { id: hintId }, hint) : null);
}

function select(id, options, value) {
  return h(
    "select",
    { id, name: id },
    options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
  );
}

// An API error that is about the filter: a FilterError (400), or a 422 on `filter`.
export function isFilterError(err, body) {
  if (!body.filter || !err || (err.status !== 400 && err.status !== 422)) return false;
  if (Array.isArray(err.detail)) return err.detail.some((e) => (e.loc || []).includes("filter"));
  return /filter|field '|operator|\$[a-z]+/i.test(err.message);
}

export class Settings {
  constructor(root, prefix, { k = 10, showMinRelevance = true } = {}) {
    this.prefix = prefix;
    this.kinds = [];
    const id = (name) => `${prefix}-${name}`;
    this.k = h("input", { id: id("k"), type: "number", min: 1, max: 1000, value: k, required: true });
    this.retriever = select(id("retriever"), [["hybrid", "hybrid"]], "hybrid");
    this.fusion = select(id("fusion"), [["rrf", "RRF"], ["convex", "convex"]], "rrf");
    this.normalization = select(id("normalization"), [["minmax", "min-max"], ["zscore", "z-score"]], "minmax");
    this.rrfK = h("input", { id: id("rrf-k"), type: "number", min: 1, step: "any", value: 60 });
    this.weights = h("div", { class: "weights" });
    this.explicit = h(
      "fieldset",
      { class: "explicit", hidden: true },
      h("legend", {}, "Retrievers and fusion"),
      this.weights,
      h(
        "div",
        { class: "row" },
        field(id("fusion"), "Fusion", this.fusion),
        field(id("normalization"), "Normalization (convex)", this.normalization),
        field(id("rrf-k"), "rrf_k (RRF)", this.rrfK),
      ),
    );
    this.filter = h("textarea", {
      id: id("filter"),
      rows: 2,
      spellcheck: "false",
      placeholder: '{"year": {"$gte": 2010}}',
    });
    this.filterError = h("p", { id: id("filter-error"), class: "error field-error", role: "alert", hidden: true });
    this.rerank = select(
      id("rerank"),
      [
        ["default", "collection default"],
        ["off", "off"],
        ["maxsim", "MaxSim"],
        ["cross-encoder", "cross-encoder"],
      ],
      "default",
    );
    this.minRelevance = h("input", { id: id("min-relevance"), type: "number", min: 0, max: 1, step: 0.05 });
    this.retriever.addEventListener("change", () => {
      this.explicit.hidden = this.retriever.value !== "explicit";
    });
    const filterField = field(id("filter"), "Filter (JSON)", this.filter, "Mongo-like: $eq $ne $in $nin $gt $gte $lt $lte $exists $and $or $not");
    filterField.append(this.filterError);
    this.filter.setAttribute("aria-describedby", `${id("filter")}-hint ${id("filter-error")}`);
    root.append(
      h(
        "div",
        { class: "row" },
        field(id("k"), "k", this.k),
        field(id("retriever"), "Retriever", this.retriever),
        field(id("rerank"), "Rerank", this.rerank),
        showMinRelevance
          ? field(id("min-relevance"), "min_relevance", this.minRelevance, "needs a calibration (specrag calibrate)")
          : null,
      ),
      this.explicit,
      filterField,
    );
  }

  // The current collection's kinds: the retriever choices and the weight rows.
  setKinds(kinds) {
    this.kinds = kinds;
    const before = this.retriever.value;
    const options = [["hybrid", "hybrid"], ...kinds.filter((k) => k !== "datastore").map((k) => [k, k]), ["explicit", "explicit weights…"]];
    this.retriever.replaceChildren(...options.map(([v, t]) => h("option", { value: v }, t)));
    this.retriever.value = options.some(([v]) => v === before) ? before : "hybrid";
    this.explicit.hidden = this.retriever.value !== "explicit";
    this.weights.replaceChildren(
      ...kinds
        .filter((k) => k !== "datastore")
        .map((kind) => {
          const use = h("input", { type: "checkbox", id: `${this.prefix}-use-${kind}`, checked: true, dataset: { kind } });
          const weight = h("input", { type: "number", id: `${this.prefix}-weight-${kind}`, min: 0, step: "any", value: 1, dataset: { kind } });
          return h(
            "div",
            { class: "row weight" },
            h("div", { class: "field check" }, use, h("label", { for: use.id }, `use ${kind}`)),
            field(weight.id, `${kind} weight`, weight),
          );
        }),
    );
  }

  showFilterError(err) {
    this.filterError.textContent = err ? err.message : "";
    this.filterError.hidden = !err;
    this.filter.setAttribute("aria-invalid", err ? "true" : "false");
  }

  // The request fields of these settings (throws InputError for a filter that is not JSON).
  read() {
    const body = { k: Number(this.k.value) };
    if (this.retriever.value === "explicit") {
      body.retrievers = [...this.weights.querySelectorAll("input[type=checkbox]")]
        .filter((c) => c.checked)
        .map((c) => ({ kind: c.dataset.kind, weight: Number(document.getElementById(`${this.prefix}-weight-${c.dataset.kind}`).value) }));
      body.fusion = this.fusion.value;
      body.normalization = this.normalization.value;
      body.rrf_k = Number(this.rrfK.value);
    } else {
      body.retriever = this.retriever.value;
    }
    const text = this.filter.value.trim();
    this.showFilterError(null);
    if (text) {
      try {
        body.filter = JSON.parse(text);
      } catch (err) {
        const error = new InputError(`the filter is not JSON: ${err.message}`);
        this.showFilterError(error);
        throw error;
      }
    }
    if (this.rerank.value === "off") body.rerank = null;
    else if (this.rerank.value !== "default") body.rerank = { method: this.rerank.value };
    if (this.minRelevance.value !== "") body.min_relevance = Number(this.minRelevance.value);
    return body;
  }
}
