"""The browser console (/ui) in a real browser: Debian's chromium driven by Playwright
against the app served by uvicorn on a loopback port, over small bm25-only collections of
the demo slice. Each check compares what the page shows with the API's own JSON.

Skipped, with the reason, where chromium or playwright is missing (``.ci/run`` installs
chromium with apt-get). ``SPECRAG_SCREENSHOTS=docs/console`` saves a screenshot of each
view there (the README shows them)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from specrag.api.app import create_app
from specrag.generation.service import ExtractiveGenerator
from specrag.settings import Settings
from tests.conftest import demo_documents

CHROMIUM = (
    os.environ.get("SPECRAG_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
SCREENSHOTS = os.environ.get("SPECRAG_SCREENSHOTS")
QUERY = "glioblastoma stem cells"
QUESTION = "What maintains glioblastoma stem cells?"
TIMEOUT_MS = 30_000
#: The demo collection's kinds: bm25 only (fast), plus dense for the screenshots, so that
#: they show fused scores too.
DEMO_KINDS = ["bm25", "dense"] if SCREENSHOTS else ["bm25"]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (apt-get install chromium, or set SPECRAG_CHROMIUM): "
    "the console's browser tests need a real browser",
)


def doc_json(doc) -> dict:
    return {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}


def wait_for_job(api: httpx.Client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def make_collection(
    api: httpx.Client, name: str, n_docs: int, build: bool, kinds: list[str] = ("bm25",)
) -> None:
    r = api.post("/collections", json={"name": name, "kinds": list(kinds)})
    assert r.status_code == 201, r.text
    docs = [doc_json(d) for d in demo_documents(n_docs)]
    assert api.post(f"/collections/{name}/documents", json={"documents": docs}).status_code == 200
    if build:
        job = wait_for_job(api, api.post(f"/collections/{name}/builds").json()["id"])
        assert job["status"] == "succeeded", job


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, an httpx client of it, its settings): the real app under uvicorn on a free port, with
    `demo` built, `fresh` (documents, no build yet) and `empty` (no documents)."""
    settings = Settings(home=tmp_path_factory.mktemp("console-home"), generator="extractive")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    with httpx.Client(base_url=base, timeout=120) as api:
        make_collection(api, "demo", 200, build=True, kinds=DEMO_KINDS)
        make_collection(api, "fresh", 200, build=False)
        assert api.post("/collections", json={"name": "empty"}).status_code == 201
        yield base, api, settings
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    with sync_api.sync_playwright() as p:
        # Debian's chromium, never a downloaded browser; --no-sandbox because CI runs as root.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def open_view(page, server, view: str, collection: str = "demo") -> None:
    page.goto(f"{server[0]}/ui/?collection={collection}#{view}")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator(f"#view-{view}").is_visible()


def screenshot(page, name: str, selector: str | None = None) -> None:
    """Save `name`.png under $SPECRAG_SCREENSHOTS (the page, at most 1,600 px of it, or one
    element); nothing without the variable."""
    if not SCREENSHOTS:
        return
    path = Path(SCREENSHOTS) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if selector:
        page.locator(selector).screenshot(path=path)
        return
    width, height = page.evaluate("[window.innerWidth, document.documentElement.scrollHeight]")
    clip = {"x": 0, "y": 0, "width": width, "height": min(height, 1600)}
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=path, full_page=True, clip=clip)


def hits_shown(page, list_id: str) -> list[dict]:
    """Each hit card's doc id and its bars: {kind: (value, width %)}."""
    return page.eval_on_selector_all(
        f"#{list_id} > li",
        """items => items.map(li => ({
            doc_id: li.dataset.docId,
            bars: Object.fromEntries([...li.querySelectorAll('.bar')].map(
                b => [b.dataset.kind, [Number(b.dataset.value), parseFloat(b.style.width)]])),
            marks: [...li.querySelectorAll('mark')].map(m => m.textContent.toLowerCase()),
        }))""",
    )


def search_json(server, body: dict, collection: str = "demo") -> dict:
    r = server[1].post(f"/collections/{collection}/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


#: WCAG contrast of every piece of text against the first opaque background behind it.
CONTRAST_JS = """() => {
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    const text = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim());
    if (!text.length || !el.checkVisibility()) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def test_accessibility_basics_labels_keyboard_contrast(page, server):
    page.goto(server[0] + "/")
    assert page.url == server[0] + "/ui/"
    page.wait_for_selector("body[data-ready=true]")
    unlabeled = page.eval_on_selector_all(
        "input, select, textarea",
        "els => els.filter(e => !e.labels.length && !e.getAttribute('aria-label'))"
        ".map(e => e.outerHTML)",
    )
    assert unlabeled == []
    # keyboard: the skip link, then the views in order
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Collections"
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-route='#collections']")  # hashchange is async
    assert page.locator("#view-collections").is_visible()
    # readable: every text on the search page with hits, errors and bars is at least 4.5:1
    page.goto(server[0] + "/ui/#search")
    page.fill("#search-query", QUERY)
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-hits mark")
    page.fill("#search-filter", "{")
    page.press("#search-query", "Enter")  # the not-JSON message, beside the hits
    page.wait_for_selector("#search-filter-error:not([hidden])")
    assert page.evaluate(CONTRAST_JS) == []
    page.evaluate(
        "document.body.append(Object.assign(document.createElement('p'), "
        "{textContent: 'faint', style: 'color: #aaa'}))"
    )
    assert len(page.evaluate(CONTRAST_JS)) == 1  # the check can fail


def bars_expected(api_hits: list[dict]) -> list[dict]:
    """The bars the console should draw for the API's hits: each of `scores`, plus `fused`
    (the hit's score) when it is none of them; widths span min(0, lowest) to max(0,
    highest) of each bar's scores over the hits."""
    rows = []
    for hit in api_hits:
        row = dict(hit["scores"])
        if hit["score"] not in row.values():
            row["fused"] = hit["score"]
        rows.append(row)
    out = []
    for row in rows:
        bars = {}
        for kind, value in row.items():
            column = [r[kind] for r in rows if kind in r]
            lo, hi = min(0.0, *column), max(0.0, *column)
            bars[kind] = (value, 100 * (value - lo) / (hi - lo) if hi > lo else 0.0)
        out.append(bars)
    return out


def assert_hits_match(shown: list[dict], api_hits: list[dict]) -> None:
    assert [h["doc_id"] for h in shown] == [h["doc_id"] for h in api_hits]
    for hit, expected in zip(shown, bars_expected(api_hits), strict=True):
        assert set(hit["bars"]) == set(expected)
        for kind, (value, width) in expected.items():
            assert hit["bars"][kind][0] == value  # the exact float the API sent
            assert hit["bars"][kind][1] == pytest.approx(width, abs=0.01)


def test_search_shows_the_api_hits_and_score_bars(page, server):
    open_view(page, server, "search")
    page.fill("#search-query", QUERY)
    page.select_option("#search-retriever", "bm25")
    page.press("#search-query", "Enter")  # Enter submits
    page.wait_for_selector("#search-hits > li")
    truth = search_json(
        server,
        {"query": QUERY, "k": 10, "retriever": "bm25", "include": ["title", "scores"]},
    )
    shown = hits_shown(page, "search-hits")
    assert_hits_match(shown, truth["hits"])
    assert set(shown[0]["bars"]) == {"bm25"}  # one retriever: its score is the hit's score
    assert {"glioblastoma", "stem", "cells"} <= set(shown[0]["marks"])
    stages = page.eval_on_selector_all(
        "#search-timings [data-stage]", "e => e.map(d => d.dataset.stage)"
    )
    assert set(stages) == set(truth["timings_ms"])

    # explicit weights and fusion: every kind of the collection, bm25 at 0.5, convex
    kinds = list(server[1].get("/collections/demo").json()["kinds"])
    page.select_option("#search-retriever", "explicit")
    page.fill("#search-weight-bm25", "0.5")
    page.select_option("#search-fusion", "convex")
    page.fill("#search-k", "5")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#search-hits > li').length === 5")
    retrievers = [{"kind": k, "weight": 0.5 if k == "bm25" else 1.0} for k in kinds]
    body = {"query": QUERY, "k": 5, "retrievers": retrievers, "fusion": "convex"}
    truth = search_json(server, {**body, "include": ["scores"]})
    assert_hits_match(hits_shown(page, "search-hits"), truth["hits"])
    screenshot(page, "search")


def test_api_errors_show_the_api_message(page, server):
    open_view(page, server, "search")
    page.fill("#search-query", QUERY)
    bad = {"year": {"$foo": 1}}
    page.fill("#search-filter", json.dumps(bad))
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-filter-error:not([hidden])")
    r = server[1].post("/collections/demo/search", json={"query": QUERY, "filter": bad})
    assert r.status_code == 400
    assert page.inner_text("#search-filter-error") == r.json()["detail"]
    assert page.get_attribute("#search-filter", "aria-invalid") == "true"
    screenshot(page, "filter-error", "#view-search form")

    page.fill("#search-filter", "{year: 2010")  # not JSON: said before any request
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-filter-error:has-text('not JSON')")

    page.fill("#search-filter", "")
    page.fill("#search-min-relevance", "0.5")  # no calibration yet: the API's 400
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-error:not([hidden])")
    r = server[1].post("/collections/demo/search", json={"query": QUERY, "min_relevance": 0.5})
    assert r.status_code == 400 and page.inner_text("#search-error") == r.json()["detail"]

    open_view(page, server, "search", collection="empty")  # never built: the API's 409
    page.fill("#search-query", QUERY)
    page.press("#search-query", "Enter")
    page.wait_for_selector("#search-error:not([hidden])")
    r = server[1].post("/collections/empty/search", json={"query": QUERY})
    assert r.status_code == 409 and page.inner_text("#search-error") == r.json()["detail"]

    open_view(page, server, "ask")  # a 422: pydantic's field errors, one line per field
    page.fill("#ask-question", QUESTION)
    page.fill("#ask-k", "60")
    page.press("#ask-question", "Enter")
    page.wait_for_selector("#ask-error:not([hidden])")
    r = server[1].post("/collections/demo/ask", json={"question": QUESTION, "k": 60})
    assert r.status_code == 422
    fields = [
        (".".join(str(p) for p in e["loc"] if p != "body"), e["msg"]) for e in r.json()["detail"]
    ]
    assert page.inner_text("#ask-error") == "; ".join(f"{loc}: {msg}" for loc, msg in fields)


def test_compare_marks_the_overlap(page, server):
    open_view(page, server, "compare")
    page.fill("#compare-query", QUERY)
    page.select_option("#compare-left-retriever", "bm25")
    right_kind = DEMO_KINDS[-1]  # dense in the screenshots, else bm25 again
    page.select_option("#compare-right-retriever", right_kind)
    topic = {"topic": {"$in": ["bio", "med"]}}
    page.fill("#compare-right-filter", json.dumps(topic))
    page.press("#compare-query", "Enter")
    page.wait_for_selector("#compare-right-hits > li")
    base = {"query": QUERY, "k": 5, "retriever": "bm25"}
    left = [h["doc_id"] for h in search_json(server, base)["hits"]]
    right_body = {**base, "retriever": right_kind, "filter": topic}
    right = [h["doc_id"] for h in search_json(server, right_body)["hits"]]
    shared = set(left) & set(right)
    assert 0 < len(shared) < 5
    for side, truth in (("left", left), ("right", right)):
        assert [h["doc_id"] for h in hits_shown(page, f"compare-{side}-hits")] == truth
        marked = page.eval_on_selector_all(
            f"#compare-{side}-hits > li.overlap", "e => e.map(li => li.dataset.docId)"
        )
        assert set(marked) == shared
    assert page.inner_text("#compare-summary").startswith(f"{len(shared)} documents in both")
    screenshot(page, "compare")


#: Records, at each change of the answer, the time and how many delta spans it holds.
WATCH_ANSWER_JS = """() => {
  window.answerSeen = [];
  const answer = document.getElementById("ask-answer");
  new MutationObserver(() => window.answerSeen.push(
    [performance.now(), answer.querySelectorAll(".delta").length])).observe(answer, {childList: true});
}"""
DELTA_GAP_S = 0.4


def test_ask_streams_sentences_and_ends_with_citations(page, server, monkeypatch):
    # The server (a thread of this process) waits between sentences, so that the page's
    # rendering of each one can be seen before the next is sent.
    original = ExtractiveGenerator.stream

    def slow_stream(self, *args, **kwargs):
        for event, value in original(self, *args, **kwargs):
            yield event, value
            if event == "delta":
                time.sleep(DELTA_GAP_S)

    monkeypatch.setattr(ExtractiveGenerator, "stream", slow_stream)
    open_view(page, server, "ask")
    page.evaluate(WATCH_ANSWER_JS)
    page.fill("#ask-question", QUESTION)
    page.fill("#ask-k", "3")
    page.press("#ask-question", "Enter")
    page.wait_for_selector("#ask-answer[data-state=done]")
    seen = page.evaluate("window.answerSeen.filter(([, n]) => n > 0)")
    # each sentence was on the page on its own, about one gap after the one before
    assert [n for _, n in seen][:3] == [1, 2, 3]
    gaps_ms = [b[0] - a[0] for a, b in zip(seen, seen[1:3], strict=False)]
    assert all(gap > 0.5 * DELTA_GAP_S * 1000 for gap in gaps_ms), gaps_ms
    final = (
        server[1]
        .post("/collections/demo/ask", json={"question": QUESTION, "k": 3, "retriever": "hybrid"})
        .json()
    )
    deltas = page.eval_on_selector_all("#ask-answer .delta", "e => e.map(s => s.textContent)")
    # one span per streamed sentence, in order, adding up to the final answer
    assert len(deltas) == 3 and "".join(deltas) == final["answer"]
    links = page.eval_on_selector_all(
        "#ask-answer a.cite", "e => e.map(a => [a.textContent, a.getAttribute('href')])"
    )
    assert links and all(href == f"#ask-passage-{text[1:-1]}" for text, href in links)
    passages = page.eval_on_selector_all(
        "#ask-passages > li",
        "e => e.map(li => [li.id, li.dataset.docId, li.classList.contains('cited')])",
    )
    assert passages == [
        [f"ask-passage-{c['number']}", c["doc_id"], c["cited"]] for c in final["citations"]
    ]
    stats = page.eval_on_selector_all(
        "#ask-stats [data-stat]",
        "e => Object.fromEntries(e.map(d => [d.dataset.stat, d.querySelector('dd').textContent]))",
    )
    assert stats["generator"] == "extractive" and "retrieval_ms" in stats
    page.click("#ask-answer a.cite >> nth=0")  # the link leads to its passage, in the Ask view
    assert page.evaluate("location.hash") == links[0][1]
    page.wait_for_selector(f"body[data-route='{links[0][1]}']")
    assert page.locator("#view-ask").is_visible() and page.locator(links[0][1]).is_visible()
    screenshot(page, "ask")


def test_build_progress_bar_reaches_done(page, server):
    open_view(page, server, "collections", collection="fresh")
    row = "#collections-table tr[data-collection=fresh]"
    assert page.inner_text(f"{row} td >> nth=2") == "not built"
    page.click(f"{row} button.build")
    page.wait_for_selector(f"{row} .job[data-status=succeeded]")
    seen = [float(x) for x in page.get_attribute(f"{row} .job", "data-seen").split(",")]
    # drawn from the start (0) and moved only forward, to the end
    assert seen[0] == 0.0 and seen == sorted(seen) and seen[-1] == 1.0
    assert page.eval_on_selector(f"{row} progress", "p => p.value") == 1
    version = server[1].get("/collections/fresh").json()["current_version"]
    assert version
    page.wait_for_selector(f"{row} td:has-text('{version}')")  # the list reloaded
    screenshot(page, "collections")


def test_narrow_window_has_no_sideways_scroll(browser, server):
    context = browser.new_context(viewport={"width": 380, "height": 800})
    page = context.new_page()
    try:
        open_view(page, server, "search")
        page.fill("#search-query", QUERY)
        page.press("#search-query", "Enter")
        page.wait_for_selector("#search-hits > li")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(page, "narrow")
        for view in ("collections", "compare", "ask"):
            open_view(page, server, view)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), view
    finally:
        context.close()


def test_api_key_field_when_the_server_requires_keys(page, server):
    """Last in the file: while a key exists, every request needs one."""
    from specrag.storage.db import create_engine_for
    from specrag.storage.keys import KeyStore

    keys = KeyStore(create_engine_for(server[2].db_url))
    _, key = keys.create("console-test", "write")
    try:
        open_view(page, server, "search")
        assert page.locator("#api-key").is_visible()  # /health says keys are required
        r = server[1].get("/collections")
        assert r.status_code == 401
        page.wait_for_selector("#global-error:not([hidden])")
        assert page.inner_text("#global-error") == r.json()["detail"]
        page.fill("#api-key", key)
        page.press("#api-key", "Enter")  # a changed key reloads the collections with it
        page.wait_for_selector("#global-error", state="hidden")
        page.fill("#search-query", QUERY)
        page.press("#search-query", "Enter")
        page.wait_for_selector("#search-hits > li")
        assert page.evaluate("sessionStorage.getItem('specrag-api-key')") == key
    finally:
        keys.revoke("console-test")
