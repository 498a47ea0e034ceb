"""Dependency aliases for the routes (FastAPI full-stack template habit): the heavy
objects are created once at lifespan and stored on ``app.state``; routes only name
``ServiceDep`` / ``SettingsDep``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from specrag.api.service import CollectionService
from specrag.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_service(request: Request) -> CollectionService:
    return request.app.state.service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[CollectionService, Depends(get_service)]
