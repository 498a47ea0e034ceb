"""POST /collections/{name}/ask: extractive mode, 503s, LM answers, Server-Sent Events."""

from __future__ import annotations

import json
import re

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from specrag.api import cli
from specrag.api.app import ERROR_STATUS, _handler
from specrag.api.auth import Auth
from specrag.api.deps import get_service
from specrag.api.generation_pool import GenerationPool
from specrag.api.routes import ask as ask_route
from specrag.api.schemas import SearchHit, SearchResponse
from specrag.api.service import CollectionService
from specrag.generation import service as gen_service
from specrag.generation.decode import DecodeConfig, generate
from specrag.generation.prompt import Passage, build_prompt
from specrag.indexing.encoders.models import resolve_model_path
from specrag.settings import Settings

PASSAGES = [
    (
        "d1",
        "Vitamin D",
        "Vitamin D deficiency is common in winter. Sunlight exposure raises vitamin D levels in the skin.",
    ),
    (
        "d2",
        "Sleep",
        "Adults need seven hours of sleep. Short sleep is linked to obesity and diabetes.",
    ),
]


class FakeService(CollectionService):
    """The real ``ask`` over a fixed search result (no database, no index)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.requests = []

    def search(self, name, request):
        self.requests.append(request)
        hits = [SearchHit(doc_id=i, score=1.0, title=t, text=x) for i, t, x in PASSAGES][
            : request.k
        ]
        return SearchResponse(collection=name, version="v1", hits=hits, timings_ms={})

    def version_for(self, name):
        return type("NoDatastore", (), {"searchers": {}})()

    def close(self):
        pass


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A random-weight GPT-2 saved with the offline MiniLM tokenizer (no quality claimed)."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny-lm")
    tok = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=2,
        n_head=4,
        initializer_range=0.2,
        eos_token_id=tok.sep_token_id,
        bos_token_id=tok.cls_token_id,
    )
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def make_client(generator: str) -> tuple[TestClient, FakeService]:
    app = FastAPI()
    for exc_class, code in ERROR_STATUS.items():
        app.add_exception_handler(exc_class, _handler(code))
    app.include_router(ask_route.router)
    app.state.auth = Auth(Settings(auth="off"), keys=None)  # the route's key check: off
    svc = FakeService(Settings(generator=generator, device="cpu"))
    app.state.generations = GenerationPool.from_settings(svc.settings)
    app.dependency_overrides[get_service] = lambda: svc
    return TestClient(app), svc


def test_extractive_mode_quotes_sentences_with_citations():
    client, svc = make_client("extractive")
    r = client.post(
        "/collections/c/ask", json={"question": "How does sunlight change vitamin D?", "k": 2}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"].startswith("Sunlight exposure raises vitamin D levels in the skin. [1]")
    assert [c["doc_id"] for c in body["citations"]] == ["d1", "d2"]
    assert body["citations"][0]["cited"] is True
    assert "retrieval_ms" in body["stats"]
    assert svc.requests[0].query == "How does sunlight change vitamin D?"
    assert "text" in svc.requests[0].include


def test_extractive_stream_sends_one_delta_per_sentence():
    """The SSE stream of the extractive mode grows by whole cited sentences: one delta
    each, in answer order, and they add up to the final answer."""
    client, _ = make_client("extractive")
    req = {"question": "How does sunlight change vitamin D?", "k": 2, "stream": True}
    events, name = [], None
    with client.stream("POST", "/collections/c/ask", json=req) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    deltas = [d["text"] for k, d in events if k == "delta"]
    assert [k for k, _ in events] == ["delta"] * len(deltas) + ["done"]
    final = events[-1][1]
    assert len(deltas) == 3 and "".join(deltas) == final["answer"]
    assert deltas[0] == "Sunlight exposure raises vitamin D levels in the skin. [1]"
    for delta in deltas:
        assert re.fullmatch(r" ?[A-Z][^\[\]]*[.!?] \[\d\]", delta), delta  # one sentence, cited


@pytest.mark.parametrize("generator", ["", "/nonexistent/model/path"])
def test_503_names_the_setting(generator):
    client, _ = make_client(generator)
    r = client.post("/collections/c/ask", json={"question": "q"})
    assert r.status_code == 503
    assert "SPECRAG_GENERATOR" in r.json()["detail"]
    assert "Settings.generator" in r.json()["detail"]


def test_bad_request_is_422():
    client, _ = make_client("extractive")
    assert client.post("/collections/c/ask", json={"question": ""}).status_code == 422
    assert (
        client.post("/collections/c/ask", json={"question": "q", "drafters": ["x"]}).status_code
        == 422
    )


def test_lm_answer_equals_plain_greedy(tiny_lm):
    client, _ = make_client(tiny_lm)
    req = {"question": "What raises vitamin D?", "k": 2, "max_new_tokens": 24}
    spec = client.post("/collections/c/ask", json=req).json()
    plain = client.post("/collections/c/ask", json={**req, "speculative": False}).json()
    assert spec["answer"] == plain["answer"]
    stats = spec["stats"]
    for key in (
        "generated_tokens",
        "target_forwards",
        "mean_accepted_tokens_per_forward",
        "tokens_per_second",
        "retrieval_ms",
        "generation_ms",
    ):
        assert key in stats
    assert plain["stats"]["target_forwards"] == plain["stats"]["generated_tokens"]
    # the same tokens as decoding the prompt directly
    gen = gen_service.get_generator(tiny_lm, "cpu")
    tok = gen.loaded.tokenizer
    passages = [Passage(i, x, t) for i, t, x in PASSAGES]
    prompt = build_prompt(tok, req["question"], passages, 2048, 384)
    ids, _ = generate(
        gen.loaded.model,
        prompt.ids,
        DecodeConfig(max_new_tokens=24, eos_token_ids=gen.loaded.eos_token_ids),
    )
    eos = set(gen.loaded.eos_token_ids)
    assert (
        spec["answer"]
        == tok.decode([t for t in ids if t not in eos], skip_special_tokens=True).strip()
    )


def test_sse_streams_deltas_then_final_event(tiny_lm, monkeypatch):
    client, _ = make_client(tiny_lm)
    gen = gen_service.get_generator(tiny_lm, "cpu")
    produced = []
    original = type(gen).stream

    def tracking_stream(self, *args, **kwargs):
        for kind, value in original(self, *args, **kwargs):
            produced.append(kind)
            yield kind, value

    monkeypatch.setattr(type(gen), "stream", tracking_stream)
    req = {"question": "What raises vitamin D?", "k": 2, "max_new_tokens": 24, "stream": True}
    events = []
    done_when_first_delta_arrived = None
    with client.stream("POST", "/collections/c/ask", json=req) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                if name == "delta" and done_when_first_delta_arrived is None:
                    done_when_first_delta_arrived = "done" in produced
                events.append((name, json.loads(line[6:])))
    assert (
        done_when_first_delta_arrived is False
    )  # the first event came before the answer was complete
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and kinds.count("delta") >= 2
    final = events[-1][1]
    assert "".join(d["text"] for k, d in events if k == "delta").strip() == final["answer"]
    assert final["citations"] and final["stats"]["generated_tokens"] > 0


def test_cli_entry(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_service", lambda: FakeService(Settings(generator="extractive")))
    argv = [
        "ask",
        "--collection",
        "c",
        "--question",
        "How does sunlight change vitamin D?",
        "--k",
        "2",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Sunlight exposure raises vitamin D" in out and "*[1] d1" in out


def test_prompt_budget_truncates_passages_never_the_question():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    long = " ".join(["word"] * 400)
    passages = [Passage("a", long, "A"), Passage("b", long, "B"), Passage("c", long, "C")]
    question = "what is the exact question that must survive intact?"
    built = build_prompt(tok, question, passages, max_prompt_tokens=300, max_passage_tokens=120)
    assert len(built.ids) <= 300
    assert question in built.text and "[1] A." in built.text and "[2] B." in built.text
    # the third is cut to what is left of the budget
    assert len(built.passages) == 3 and len(built.passages[2].text) < len(built.passages[1].text)
    tight = build_prompt(tok, question, passages, max_prompt_tokens=150, max_passage_tokens=120)
    assert len(tight.ids) <= 150 and len(tight.passages) == 1 and question in tight.text
    assert len(tok(built.passages[0].text, add_special_tokens=False)["input_ids"]) <= 120
    with pytest.raises(ValueError, match="question alone"):
        build_prompt(tok, "long " * 400, passages, max_prompt_tokens=50)


def test_stop_strings_identical_and_no_overshoot(tiny_lm):
    from specrag.generation.decode import trim_stop_text
    from specrag.generation.drafters import ContextDrafter

    gen = gen_service.get_generator(tiny_lm, "cpu")
    model, tok = gen.loaded.model, gen.loaded.tokenizer
    prompt = tok("the cell the cell the cell divides and the cell grows", add_special_tokens=False)[
        "input_ids"
    ]
    full, _ = generate(model, prompt, DecodeConfig(max_new_tokens=30))
    words = tok.decode(full).split()
    stop = words[len(words) // 2]
    cfg = DecodeConfig(max_new_tokens=30, stop_strings=(stop,), max_depth=8)
    ref, _ = generate(model, prompt, cfg, tokenizer=tok)
    out, _ = generate(model, prompt, cfg, drafters=[ContextDrafter()], tokenizer=tok)
    assert out == ref and len(ref) < len(full)
    assert stop in tok.decode(ref) and stop not in tok.decode(ref[:-1])  # ends at the stop
    assert stop not in trim_stop_text(tok.decode(ref), [stop])


def test_an_unread_answer_holds_no_lock(tiny_lm):
    """An LM answer whose consumer stopped reading mid-stream (suspended at a yield, as
    under a slow SSE client) does not block another answer from the same generator: the
    decode lock is held for one step, never across a yield."""
    import threading

    gen = gen_service.get_generator(tiny_lm, "cpu")
    passages = [Passage(i, x, t) for i, t, x in PASSAGES]
    options = gen_service.AskOptions(max_new_tokens=16, speculative=False)
    paused = gen.stream("What raises vitamin D?", passages, options)
    assert next(paused)[0] == "delta"  # suspended mid-answer
    other: list = []
    thread = threading.Thread(
        target=lambda: other.append(gen.answer("How long to sleep?", passages, options)),
        daemon=True,
    )
    thread.start()
    thread.join(120)
    assert not thread.is_alive() and other[0].stats["generated_tokens"] > 0
    assert [k for k, _ in paused][-1] == "done"  # the paused answer still completes
