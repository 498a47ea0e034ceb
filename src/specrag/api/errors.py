"""Error responses.

- 422 for a malformed body that always serializes: pydantic's field errors echo the input,
  and an input holding NaN or Infinity (which Python's JSON parser accepts) would make the
  error response itself fail to render; non-finite numbers are sent as strings instead.
- 500 for anything that is not a user error: a defect or an outage. The client gets a
  request id and no internals; the log gets the id with the traceback.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from fastapi import Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name ("NaN", "Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return value


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with pydantic's field errors, whatever numbers the request held."""
    detail = finite_json(jsonable_encoder(exc.errors()))
    return JSONResponse(
        status_code=422,
        content={"detail": detail},  # (the constant was renamed across starlette versions)
    )


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """500 with the request id (``api/observability.py``: the client's X-Request-ID when
    it sent a short one), logged with the traceback under the same id."""
    request_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
    log.error(
        "internal error %s on %s %s",
        request_id,
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"request_id": request_id},
    )
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content={
            "detail": f"internal error (request id {request_id}); the server log has the details",
            "request_id": request_id,
        },
        headers={"x-request-id": request_id},
    )
