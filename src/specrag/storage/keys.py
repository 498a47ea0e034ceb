"""API keys with scopes, stored hashed.

A key is ``sk_`` + 43 URL-safe random characters (256 bits). The table keeps its first 8
characters after ``sk_`` (to find the row) and its SHA-256 (to check it, compared with
``hmac.compare_digest``); the key itself is returned once by :meth:`KeyStore.create` and
never stored. Scopes are ordered: ``admin`` includes ``write``, which includes ``read``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, update

from specrag.errors import UserError
from specrag.storage.db import write_connection
from specrag.storage.models import ApiKeyRow, utcnow
from specrag.storage.store import AlreadyExists, NotFound

SCOPES = ("read", "write", "admin")
KEY_PREFIX = "sk_"
#: Characters after ``sk_`` kept in clear to find a key's row.
LOOKUP_CHARS = 8
KEY_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class InvalidKeyRequest(UserError, ValueError):
    """A bad key name or scope."""


@dataclass(frozen=True)
class KeyInfo:
    name: str
    scope: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def scope_allows(granted: str, needed: str) -> bool:
    """Whether a key of scope ``granted`` may do what needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, name: str, scope: str) -> tuple[KeyInfo, str]:
        """A new key named ``name`` (unique among active keys): (its info, the key)."""
        if not isinstance(name, str) or not KEY_NAME.fullmatch(name):
            raise InvalidKeyRequest(
                f"invalid key name {name!r}: use 1 to 64 letters, digits, '_', '.', '@' or '-'"
            )
        if scope not in SCOPES:
            raise InvalidKeyRequest(f"invalid scope {scope!r}; one of {', '.join(SCOPES)}")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = key[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_CHARS]
        now = utcnow()
        with write_connection(self.engine) as conn:
            taken = conn.scalar(
                select(ApiKeyRow.id).where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
            )
            if taken is not None:
                raise AlreadyExists(f"an active key named {name!r} exists; revoke it first")
            conn.execute(
                ApiKeyRow.__table__.insert().values(
                    name=name, scope=scope, prefix=prefix, key_hash=_hash(key), created_at=now
                )
            )
        return KeyInfo(name, scope, prefix, now, None), key

    def list(self) -> list[KeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    ApiKeyRow.name,
                    ApiKeyRow.scope,
                    ApiKeyRow.prefix,
                    ApiKeyRow.created_at,
                    ApiKeyRow.revoked_at,
                ).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
            ).all()
        return [KeyInfo(r.name, r.scope, r.prefix, r.created_at, r.revoked_at) for r in rows]

    def revoke(self, name: str) -> None:
        with write_connection(self.engine) as conn:
            result = conn.execute(
                update(ApiKeyRow)
                .where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        if result.rowcount == 0:
            raise NotFound(f"no active key named {name!r}")

    def has_active_keys(self) -> bool:
        with self.engine.connect() as conn:
            return (
                conn.scalar(select(ApiKeyRow.id).where(ApiKeyRow.revoked_at.is_(None)).limit(1))
                is not None
            )

    def verify(self, key: str) -> KeyInfo | None:
        """The active key ``key`` is, or None. Only the hash is compared, in constant time."""
        if not isinstance(key, str) or not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        prefix = key[len(KEY_PREFIX) : len(KEY_PREFIX) + LOOKUP_CHARS]
        digest = _hash(key)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    ApiKeyRow.name,
                    ApiKeyRow.scope,
                    ApiKeyRow.prefix,
                    ApiKeyRow.key_hash,
                    ApiKeyRow.created_at,
                ).where(ApiKeyRow.prefix == prefix, ApiKeyRow.revoked_at.is_(None))
            ).all()
        found = None
        for row in rows:
            if hmac.compare_digest(row.key_hash, digest):
                found = KeyInfo(row.name, row.scope, row.prefix, row.created_at, None)
        return found
