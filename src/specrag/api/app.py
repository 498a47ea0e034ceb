"""The FastAPI application: ``create_app(settings)``.

Heavy objects (the CollectionService with its engine, opened versions and build worker)
are created once in the lifespan and injected through ``api/deps.py``. User errors (typed:
``specrag.errors.UserError`` and its subclasses) map to 4xx responses with a message
(``{"detail": ...}``); anything else is a defect: a 500 with a request id, logged with its
traceback (``api/errors.py``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from specrag import __version__
from specrag.api.auth import Auth
from specrag.api.console import mount_console
from specrag.api.errors import internal_error, validation_error
from specrag.api.generation_pool import GenerationPool
from specrag.api.guards import WriteGuard
from specrag.api.limits import BodySizeLimit
from specrag.api.observability import Metrics, RequestContext
from specrag.api.request_limits import Admission, RequestTimeout, TooBusy
from specrag.api.routes import (
    ask,
    builds,
    collections,
    documents,
    health,
    keys,
    search,
)
from specrag.api.routes import (
    metrics as metrics_routes,
)
from specrag.api.service import CollectionService, ModelNotAllowed, NotReady, RequestTooLarge
from specrag.api.swagger import mount_docs
from specrag.errors import UserError
from specrag.generation.service import GeneratorUnavailable
from specrag.indexing.kinds.impact.index import IndexFormatError
from specrag.retrieval.pipeline import SearchError
from specrag.settings import Settings, get_settings
from specrag.storage.filters import FilterError
from specrag.storage.keys import KeyStore
from specrag.storage.store import AlreadyExists, InvalidDocument, NotFound

log = logging.getLogger(__name__)

#: Exception class -> HTTP status; the most specific class wins (MRO lookup).
ERROR_STATUS: dict[type[Exception], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    AlreadyExists: status.HTTP_409_CONFLICT,
    NotReady: status.HTTP_409_CONFLICT,
    IndexFormatError: status.HTTP_409_CONFLICT,
    FilterError: status.HTTP_400_BAD_REQUEST,
    InvalidDocument: status.HTTP_400_BAD_REQUEST,
    ModelNotAllowed: status.HTTP_400_BAD_REQUEST,
    SearchError: status.HTTP_400_BAD_REQUEST,
    RequestTooLarge: 422,  # (starlette renamed its constant; the number is stable)
    GeneratorUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    TooBusy: status.HTTP_429_TOO_MANY_REQUESTS,
    RequestTimeout: status.HTTP_504_GATEWAY_TIMEOUT,
    # Every other user error (specrag.errors.UserError). A bare ValueError is a defect: 500.
    UserError: status.HTTP_400_BAD_REQUEST,
}


def create_app(
    settings: Settings | None = None, service: CollectionService | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = service or CollectionService(settings)
        app.state.service.build_listeners += [metrics.observe_build, admission.build_ended]
        app.state.auth = Auth(settings, KeyStore(app.state.service.engine))
        for warning in app.state.auth.warnings():
            log.warning("%s", warning)
        app.state.service.start_refresher()
        generations = app.state.generations = GenerationPool.from_settings(settings)
        try:
            yield
        finally:
            generations.close()
            app.state.service.close()

    app = FastAPI(
        title="specrag",
        version=__version__,
        description="Retrieval and RAG search service.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's files (api/swagger), not a CDN
        redoc_url=None,  # ReDoc has no offline bundle here
    )
    app.state.settings = settings
    metrics = app.state.metrics = Metrics(app.state)
    admission = app.state.admission = Admission(settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(WriteGuard, allowed_origins=settings.cors_origins)
    if settings.cors_origins:  # CORS stays off unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(RequestContext, metrics=metrics)  # outermost: sees every response
    for exc_class, code in ERROR_STATUS.items():
        app.add_exception_handler(exc_class, _handler(code))
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
    for module in (health, metrics_routes, collections, documents, builds, search, ask, keys):
        app.include_router(module.router)
    mount_docs(app)  # /docs: Swagger UI, offline
    mount_console(app)  # the browser console at /ui (/ redirects there)
    return app


def _handler(code: int):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        message = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
        headers = getattr(exc, "headers", None)  # TooBusy's Retry-After
        return JSONResponse(status_code=code, content={"detail": message}, headers=headers)

    return handle
