from __future__ import annotations

from fastapi import APIRouter

from specrag.api.deps import ServiceDep
from specrag.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(service: ServiceDep) -> Health:
    return service.health()
