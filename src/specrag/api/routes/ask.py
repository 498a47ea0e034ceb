"""POST /collections/{name}/ask: retrieve with the /search options, then answer from the
hits (``CollectionService.ask``). ``"stream": true`` answers with Server-Sent Events.

The answer runs in the app's generation pool (``api/generation_pool.py``): 429 with
Retry-After when it is full, 504 past ``ask_timeout_s``. A client that goes away, streamed
or not, cancels its answer: the pool watches the request's ``receive`` for the disconnect
and the worker stops before its next step. Errors after the first event cannot change the
status any more: they end the stream with an ``error`` event."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from specrag.api.auth import READ
from specrag.api.deps import ServiceDep
from specrag.api.generation_pool import Event, GenerationJob
from specrag.api.request_limits import check_ask
from specrag.api.responses import SSE_MEDIA_TYPE, WRITE, sse
from specrag.api.schemas import AskRequest, AskResponse
from specrag.errors import UserError

router = APIRouter(tags=["ask"])
log = logging.getLogger(__name__)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@router.post(
    "/collections/{name}/ask",
    response_model=AskResponse,
    dependencies=READ,
    responses=sse(*WRITE, 400, 404, 409, 422, 429, 503, 504),
)
async def ask(name: str, body: AskRequest, service: ServiceDep, request: Request):
    settings = service.settings
    check_ask(settings, body)
    state = request.app.state
    deadline = asyncio.get_running_loop().time() + settings.ask_timeout_s
    job = state.generations.submit(lambda: service.ask(name, body), request.receive)
    metrics = getattr(state, "metrics", None)

    async def next_event() -> Event:
        event = await job.next_event(deadline, "ask_timeout_s", settings.ask_timeout_s)
        if event[0] == "done" and metrics is not None:
            metrics.observe_answer(event[1].stats)
        return event

    try:
        first = await next_event()  # errors before the first event are HTTP errors
    except BaseException:
        job.cancel()
        raise
    if body.stream:
        return StreamingResponse(_stream(job, first, next_event), media_type=SSE_MEDIA_TYPE)
    try:
        event = first
        while event[0] != "done":
            event = await next_event()
    finally:
        job.cancel()  # a no-op once done; stops the answer if this request was cancelled
    return event[1]


async def _stream(job: GenerationJob, first: Event, next_event) -> AsyncIterator[str]:
    """The SSE body: deltas, then ``done``, or ``error`` with a message."""
    try:
        event = first
        while True:
            kind, value = event
            if kind == "done":
                yield _sse("done", value.model_dump(mode="json"))
                return
            yield _sse("delta", {"text": value})
            try:
                event = await next_event()
            except UserError as exc:
                yield _sse("error", {"detail": str(exc)})
                return
            except Exception:
                log.exception("answer failed while streaming")
                yield _sse("error", {"detail": "internal error; the server log has the details"})
                return
    finally:
        job.cancel()  # the stream ended (or Starlette stopped it): no further step
