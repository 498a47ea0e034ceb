from __future__ import annotations

from fastapi import APIRouter, Request

from specrag.api.deps import ServiceDep
from specrag.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(request: Request, service: ServiceDep) -> Health:
    """Liveness, and how requests are authorized (no key needed)."""
    auth = request.app.state.auth
    return service.health().model_copy(update={"auth": auth.mode(), "warnings": auth.warnings()})
