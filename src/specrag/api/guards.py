"""Writes a browser cannot forge: a pure ASGI middleware in front of the routes.

- A request that changes something (POST, PUT, PATCH, DELETE) with a body must send it as
  JSON (``application/json`` or ``+json``), else 415: the content types an HTML form or a
  no-preflight ``fetch`` can send (form-urlencoded, multipart, text/plain) never reach a
  route.
- Such a request from a browser page of another origin (an ``Origin`` header that is
  neither this server nor in ``SPECRAG_CORS_ORIGINS``) is refused with 403, bodiless or
  not (``POST .../builds`` needs no body).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class WriteGuard:
    def __init__(self, app: ASGIApp, allowed_origins: list[str] | None = None):
        self.app = app
        self.allowed = {o.rstrip("/") for o in allowed_origins or []}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if origin and not self._origin_allowed(origin, headers.get("host")):
            await _refuse(
                send,
                403,
                f"cross-origin request from {origin} refused; allow the origin with "
                "SPECRAG_CORS_ORIGINS",
            )
            return
        has_body = headers.get("content-length", "0") not in ("", "0") or (
            "transfer-encoding" in headers
        )
        if has_body and not _is_json(headers.get("content-type", "")):
            await _refuse(
                send,
                415,
                "send the request body as JSON (Content-Type: application/json)",
            )
            return
        await self.app(scope, receive, send)

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        if origin.rstrip("/") in self.allowed or "*" in self.allowed:
            return True
        return host is not None and urlsplit(origin).netloc.lower() == host.lower()


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _refuse(send: Send, code: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
