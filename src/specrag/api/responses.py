"""The error responses each route declares in the OpenAPI schema (``responses=`` in the
route decorators), so that a client generated from the schema, and the schema fuzzer
(``tests/test_fuzz_api.py``), know every status the API answers with.

Every error body is ``{"detail": ...}``: a message, or pydantic's list of field errors
(422 of a malformed body); a 500 adds ``request_id``. 429 is the admission limit of builds
and generations, with ``Retry-After`` (not rate limiting per client: docs/security.md,
"Not covered"); 504 a search or answer past its time setting."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

SSE_MEDIA_TYPE = "text/event-stream"


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong: a message, or the field errors of a malformed body."
    )
    request_id: str | None = Field(default=None, description="Only on a 500: the log's id.")


DESCRIPTIONS = {
    400: "A request the service refuses: a bad filter, document, kind, model or option.",
    401: "No valid API key where one is required.",
    403: "The key's scope is too small, or a write from a browser origin not allowed.",
    404: "Unknown collection, document, job or key.",
    409: "A conflict with the current state: exists already, or no index built yet.",
    413: "The request body is over max_body_bytes.",
    415: "A write whose body is not JSON.",
    422: "A malformed request, or one over a limit (k, query length, batch size).",
    429: "The server is at its limit of queued builds or of generations (workers and "
    "queue); Retry-After says in how many seconds to try again.",
    503: "The generator is not available (no model, or it failed to load).",
    504: "The search or answer took longer than search_timeout_s / ask_timeout_s.",
}

#: Headers a status declares besides its body.
HEADERS = {
    429: {
        "Retry-After": {
            "description": "Seconds after which trying again is reasonable.",
            "schema": {"type": "integer", "minimum": 1},
        }
    }
}

#: Any route with a scope (auth.py): 401 and 403.
AUTH = (401, 403)
#: A write (POST, DELETE): WriteGuard's 403/415 and BodySizeLimit's 413 besides.
WRITE = (*AUTH, 413, 415)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each code with the error body and its meaning."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted(set(codes)):
        out[code] = {"model": ErrorOut, "description": DESCRIPTIONS[code]}
        if code in HEADERS:
            out[code]["headers"] = HEADERS[code]
    return out


def sse(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``errors(*codes)`` plus the Server-Sent Events media type of a 200."""
    return {
        200: {
            "content": {
                SSE_MEDIA_TYPE: {
                    # OpenAPI before 3.2: `schema` describes each event
                    "schema": {
                        "type": "object",
                        "description": "With `stream: true`: `event: delta` with "
                        '`{"text": ...}` as data per piece of the answer, then one '
                        "`event: done` with the AskResponse as data (JSON), or, when "
                        "the answer fails or runs out of time once streaming, one "
                        '`event: error` with `{"detail": ...}`.',
                        "properties": {
                            "event": {"type": "string", "enum": ["delta", "done", "error"]},
                            "data": {"type": "string", "description": "JSON"},
                        },
                        "required": ["event", "data"],
                    }
                }
            }
        },
        **errors(*codes),
    }
