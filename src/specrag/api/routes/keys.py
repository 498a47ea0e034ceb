"""API key management over REST (scope ``admin``): the same operations as ``specrag keys``.
A created key is in the response once and never again."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from specrag.api.auth import ADMIN
from specrag.api.responses import AUTH, WRITE, errors
from specrag.storage.keys import KeyInfo, KeyStore

router = APIRouter(prefix="/keys", tags=["keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    scope: Literal["read", "write", "admin"]


class KeyOut(BaseModel):
    name: str
    scope: str
    prefix: str = Field(description="The key's first characters after sk_, to recognize it.")
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, info: KeyInfo) -> KeyOut:
        return cls(**vars(info))


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself: shown once, never stored.")


def _keys(request: Request) -> KeyStore:
    return request.app.state.auth.keys


@router.post(
    "",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    dependencies=ADMIN,
    responses=errors(*WRITE, 400, 409, 422),
)
def create_key(body: KeyCreate, request: Request) -> KeyCreated:
    info, key = _keys(request).create(body.name, body.scope)
    return KeyCreated(**vars(info), key=key)


@router.get("", response_model=list[KeyOut], dependencies=ADMIN, responses=errors(*AUTH))
def list_keys(request: Request) -> list[KeyOut]:
    return [KeyOut.of(info) for info in _keys(request).list()]


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=ADMIN,
    responses=errors(*WRITE, 404),
)
def revoke_key(name: str, request: Request) -> Response:
    _keys(request).revoke(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
