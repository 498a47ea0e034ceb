"""POST /collections/{name}/ask: retrieve with the /search options, then answer from the
hits with the configured generator (retrieval-augmented speculative decoding, or the
extractive no-LLM mode). ``"stream": true`` answers with Server-Sent Events."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from specrag.api.deps import ServiceDep, SettingsDep
from specrag.generation.prompt import Passage
from specrag.generation.service import AskOptions, GeneratorUnavailable, get_generator
from specrag.retrieval.request import SearchRequest

router = APIRouter()

#: SearchRequest fields an /ask request passes through to retrieval (query = question).
SEARCH_FIELDS = set(SearchRequest.model_fields) - {"query", "include"}


class AskRequest(SearchRequest):
    """The /search options (``k`` = passages put into the prompt) plus generation options."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    query: str | None = Field(None, description="Ignored: the question is the query.")
    k: int = Field(5, ge=1, le=50, description="Passages retrieved and put into the prompt.")
    model: str | None = Field(None, description="Generator name/path; default Settings.generator.")
    max_new_tokens: int = Field(256, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=5)
    seed: int | None = None
    speculative: bool = True
    drafters: list[Literal["context", "datastore", "draft-model"]] = ["context", "datastore"]
    draft_model: str | None = Field(None, description="Default Settings.draft_model.")
    max_prompt_tokens: int = Field(2048, ge=64)
    stop: list[str] = Field(default_factory=list, max_length=8)
    stream: bool = False

    def search_request(self) -> SearchRequest:
        data = self.model_dump(include=SEARCH_FIELDS)
        return SearchRequest(**data, query=self.question, include=["title", "text"])

    def options(self, default_draft: str | None) -> AskOptions:
        return AskOptions(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=self.seed,
            speculative=self.speculative, drafters=tuple(self.drafters),
            draft_model=self.draft_model or default_draft, max_prompt_tokens=self.max_prompt_tokens,
            stop_strings=tuple(self.stop),
        )


class CitationOut(BaseModel):
    number: int
    doc_id: str
    title: str | None
    text: str
    cited: bool


class AskResponse(BaseModel):
    collection: str
    version: str
    answer: str
    citations: list[CitationOut]
    stats: dict[str, Any]


def _datastore_for(service, name: str, generator) -> Any:
    """The collection's datastore searcher when it was built with the generator's tokenizer."""
    version_for = getattr(service, "version_for", None)
    if version_for is None or not hasattr(generator, "loaded"):
        return None
    try:
        version = version_for(name)
    except Exception:  # noqa: BLE001 -- drafting is an optimization, never a failure
        return None
    searcher = version.searchers.get("datastore")
    if searcher is None:
        return None
    tokenizer = getattr(searcher.config, "tokenizer", None)
    return searcher if tokenizer in {generator.name, getattr(generator.loaded.tokenizer, "name_or_path", None)} else None


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post("/collections/{name}/ask", response_model=AskResponse)
def ask(name: str, body: AskRequest, service: ServiceDep, settings: SettingsDep):
    try:
        generator = get_generator(body.model or settings.generator, settings.device)
    except GeneratorUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    options = body.options(settings.draft_model)
    started = time.perf_counter()
    found = service.search(name, body.search_request())
    retrieval_ms = round((time.perf_counter() - started) * 1000, 2)
    passages = [Passage(h.doc_id, h.text or "", h.title) for h in found.hits]
    datastore = _datastore_for(service, name, generator) if "datastore" in options.drafters else None
    events = generator.stream(body.question, passages, options, datastore)

    def final(answer) -> dict:
        stats = {**answer.stats, "retrieval_ms": retrieval_ms}
        return {
            "collection": name, "version": found.version, "answer": answer.text,
            "citations": [asdict(c) for c in answer.citations], "stats": stats,
        }

    if body.stream:
        def sse():
            for kind, value in events:
                if kind == "delta":
                    yield _sse("delta", {"text": value})
                else:
                    yield _sse("done", final(value))

        return StreamingResponse(sse(), media_type="text/event-stream")
    answer = None
    for kind, value in events:
        if kind == "done":
            answer = value
    return AskResponse(**final(answer))


# --- CLI: `specrag ask` ---------------------------------------------------------------------
def add_ask_arguments(parser) -> None:
    """Arguments of `specrag ask` (wire with: p = sub.add_parser("ask", help=...);
    add_ask_arguments(p); p.set_defaults(handler=ask_cli))."""
    parser.add_argument("--collection", required=True)
    parser.add_argument("--question", required=True)
    parser.add_argument("--k", type=int, default=5, help="passages put into the prompt")
    parser.add_argument("--retriever", default="hybrid", help="an index kind or hybrid")
    parser.add_argument("--filter", default=None, help="Mongo-like metadata filter as JSON")
    parser.add_argument("--model", default=None, help="generator; default SPECRAG_GENERATOR")
    parser.add_argument("--draft-model", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-speculative", action="store_true")
    parser.add_argument("--drafters", default="context,datastore", help="comma-separated: context,datastore,draft-model")
    parser.add_argument("--json", action="store_true", help="print the AskResponse as JSON")


def ask_cli(args, service=None) -> int:
    """`specrag ask`: streams the answer to stdout, then the citations and stats."""
    import sys

    from specrag.api.service import CollectionService
    from specrag.settings import Settings

    settings = Settings()
    body = AskRequest(
        question=args.question, k=args.k, retriever=args.retriever,
        filter=json.loads(args.filter) if args.filter else None, model=args.model,
        draft_model=args.draft_model, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, seed=args.seed, speculative=not args.no_speculative,
        drafters=[d.strip() for d in args.drafters.split(",") if d.strip()],
    )
    own = service is None
    service = service or CollectionService(settings)
    try:
        generator = get_generator(body.model or settings.generator, settings.device)
        found = service.search(args.collection, body.search_request())
        passages = [Passage(h.doc_id, h.text or "", h.title) for h in found.hits]
        datastore = _datastore_for(service, args.collection, generator) if "datastore" in body.drafters else None
        answer = None
        for kind, value in generator.stream(body.question, passages, body.options(settings.draft_model), datastore):
            if kind == "delta" and not args.json:
                sys.stdout.write(value)
                sys.stdout.flush()
            elif kind == "done":
                answer = value
    except GeneratorUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        if own:
            service.close()
    if args.json:
        out = AskResponse(collection=args.collection, version=found.version, answer=answer.text,
                          citations=[CitationOut(**asdict(c)) for c in answer.citations], stats=answer.stats)
        print(out.model_dump_json(indent=2))
        return 0
    print()
    for c in answer.citations:
        mark = "*" if c.cited else " "
        print(f"{mark}[{c.number}] {c.doc_id}  {(c.title or '')[:80]}")
    print(json.dumps(answer.stats))
    return 0
