"""API keys on requests: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Each route names the scope it needs (``require("read" | "write" | "admin")``). With
``SPECRAG_AUTH=off`` nothing is checked. Otherwise a key, when sent, must be active (401)
and of a sufficient scope (403); with no key sent, reads pass when
``SPECRAG_PUBLIC_READ=true``, and everything passes while no key exists at all (the open
mode that ``specrag serve`` allows on a loopback address only: ``check_exposure``).
Keys are looked up per request, so a key created or revoked by the CLI counts at once.
"""

from __future__ import annotations

import ipaddress
import logging

from fastapi import Depends, HTTPException, Request, status

from specrag.errors import UserError
from specrag.settings import Settings
from specrag.storage.keys import KeyInfo, KeyStore, scope_allows

log = logging.getLogger(__name__)

OPEN_WARNING = (
    "no API keys exist: the API is open to every client that can reach it (allowed on a "
    "loopback address only); create one with `specrag keys create --name NAME --scope admin`"
)
OFF_WARNING = "SPECRAG_AUTH=off: API keys are not checked; anyone who can reach the API may use it"


class ExposureError(UserError):
    """Refusing to serve beyond loopback without API keys."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, keys: KeyStore, host: str) -> str | None:
    """Before serving on ``host``: raise ExposureError for a non-loopback address without
    keys (unless auth is off); return the warning to log, if any."""
    if settings.auth == "off":
        return OFF_WARNING
    if keys.has_active_keys():
        return None
    if not is_loopback(host):
        raise ExposureError(
            f"refusing to serve on {host} without API keys: create one with "
            "`specrag keys create --name NAME --scope admin`, or set SPECRAG_AUTH=off to "
            "serve without keys (anyone who can reach it may read, write and delete)"
        )
    return OPEN_WARNING


class Auth:
    """The request check, with the key store it reads."""

    def __init__(self, settings: Settings, keys: KeyStore):
        self.settings = settings
        self.keys = keys

    def mode(self) -> str:
        """For /health: ``off``, ``keys`` (keys are required) or ``open`` (none exist)."""
        if self.settings.auth == "off":
            return "off"
        return "keys" if self.keys.has_active_keys() else "open"

    def warnings(self) -> list[str]:
        mode = self.mode()
        return {"off": [OFF_WARNING], "open": [OPEN_WARNING]}.get(mode, [])

    def check(self, request: Request, needed: str) -> KeyInfo | None:
        if self.settings.auth == "off":
            return None
        key = _presented_key(request)
        if key is not None:
            info = self.keys.verify(key)
            if info is None:
                raise _unauthorized("the API key is not valid (unknown or revoked)")
            if not scope_allows(info.scope, needed):
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN,
                    f"the key {info.name!r} has scope {info.scope!r}; this request needs "
                    f"{needed!r}",
                )
            return info
        if needed == "read" and self.settings.public_read:
            return None
        if not self.keys.has_active_keys():
            return None
        raise _unauthorized(
            f"an API key with scope {needed!r} is required: send `Authorization: Bearer "
            "<key>` or `X-API-Key: <key>`"
        )


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("the Authorization header must be `Bearer <key>`")
        return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


def require(scope: str):
    """A route dependency: the request must be allowed ``scope``."""

    def check(request: Request) -> KeyInfo | None:
        return request.app.state.auth.check(request, scope)

    return Depends(check)


#: What the routes name: reads (listing, fetching, search, ask) and writes (the rest).
READ = [require("read")]
WRITE = [require("write")]
ADMIN = [require("admin")]
