from __future__ import annotations

from fastapi import APIRouter, Response, status

from specrag.api.auth import READ, WRITE
from specrag.api.deps import ServiceDep
from specrag.api.responses import AUTH, errors
from specrag.api.responses import WRITE as WRITES
from specrag.api.schemas import CollectionCreate, CollectionOut, CollectionPatch

router = APIRouter(prefix="/collections", tags=["collections"])


@router.post(
    "",
    response_model=CollectionOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 409, 422),
)
def create_collection(body: CollectionCreate, service: ServiceDep) -> CollectionOut:
    return service.create_collection(body.name, body.kinds, shards=body.shards, live=body)


@router.get("", response_model=list[CollectionOut], dependencies=READ, responses=errors(*AUTH))
def list_collections(service: ServiceDep) -> list[CollectionOut]:
    return service.list_collections()


@router.get(
    "/{name}", response_model=CollectionOut, dependencies=READ, responses=errors(*AUTH, 404)
)
def get_collection(name: str, service: ServiceDep) -> CollectionOut:
    return service.get_collection(name)


@router.patch(
    "/{name}",
    response_model=CollectionOut,
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 422),
)
def update_collection(name: str, body: CollectionPatch, service: ServiceDep) -> CollectionOut:
    """Change the live settings given: ``refresh_interval`` (seconds; 0 or null: refresh
    on demand only), ``merge_max_share``, ``merge_max_docs``."""
    return service.update_collection(name, body)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITE,
    responses=errors(*WRITES, 404),
)
def delete_collection(name: str, service: ServiceDep) -> Response:
    service.delete_collection(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
