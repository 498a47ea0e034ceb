// Small DOM helpers: build elements without innerHTML (API text is never parsed as HTML).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Show an error's message in its box (an element with role="alert"), or hide the box.
export function showError(box, err) {
  box.textContent = err ? err.message || String(err) : "";
  box.hidden = !err;
}

export function formatScore(x) {
  if (!Number.isFinite(x)) return String(x);
  const abs = Math.abs(x);
  return abs !== 0 && (abs < 0.001 || abs >= 1e5) ? x.toExponential(2) : x.toFixed(abs >= 100 ? 1 : 3);
}

const STOP_WORDS = new Set(
  "a an and are as at be by can do does for from has have how in is it of on or that the this to was what when where which who why with".split(
    " ",
  ),
);

// The words of a query worth marking in hit texts (lower case, no stop words).
export function queryTerms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  const terms = words
    .filter((w) => w.length > 1 && !STOP_WORDS.has(w))
    .map((w) => (w.length > 3 && w.endsWith("s") ? w.slice(0, -1) : w)); // cells -> cell*
  return [...new Set(terms)];
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// Text nodes and <mark>s: every word that starts with a query term is marked.
export function highlight(text, terms) {
  if (!text) return [];
  if (!terms.length) return [document.createTextNode(text)];
  const pattern = new RegExp(
    `(?<![\\p{L}\\p{N}])(?:${terms.map(escapeRegExp).join("|")})[\\p{L}\\p{N}]*`,
    "giu",
  );
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
    nodes.push(h("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
  return nodes;
}
