"""POST /collections/{name}/ask: retrieve with the /search options, then answer from the
hits (``CollectionService.ask``). ``"stream": true`` answers with Server-Sent Events."""

from __future__ import annotations

import itertools
import json

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from specrag.api.auth import READ
from specrag.api.deps import ServiceDep
from specrag.api.request_limits import check_ask
from specrag.api.responses import SSE_MEDIA_TYPE, WRITE, sse
from specrag.api.schemas import AskRequest, AskResponse

router = APIRouter(tags=["ask"])


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post(
    "/collections/{name}/ask",
    response_model=AskResponse,
    dependencies=READ,
    responses=sse(*WRITE, 400, 404, 409, 422, 429, 503),
)
def ask(name: str, body: AskRequest, service: ServiceDep, request: Request):
    check_ask(service.settings, body)
    state = request.app.state
    events = _admitted(getattr(state, "admission", None), service, name, body)
    events = _observed(events, getattr(state, "metrics", None))
    if body.stream:
        first = next(events)  # errors before the first event become HTTP errors, not SSE

        def sse():
            for event, value in itertools.chain([first], events):
                if event == "delta":
                    yield _sse("delta", {"text": value})
                else:
                    yield _sse("done", value.model_dump(mode="json"))

        return StreamingResponse(sse(), media_type=SSE_MEDIA_TYPE)
    answer = None
    for event, value in events:
        if event == "done":
            answer = value
    return answer


def _observed(events, metrics):
    """The events, with the finished answer's generation speed recorded."""
    for event, value in events:
        if event == "done" and metrics is not None:
            metrics.observe_answer(value.stats)
        yield event, value


def _admitted(admission, service, name, body):
    """The answer's events, counted as one generation from the first event to the last
    (or until the client goes): 429 past max_concurrent_generations."""
    if admission is None:  # an app without it (a test's bare router)
        yield from service.ask(name, body)
        return
    with admission.generation():
        yield from service.ask(name, body)
