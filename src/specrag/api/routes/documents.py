from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from specrag.api.auth import READ, WRITE
from specrag.api.deps import ServiceDep, SettingsDep
from specrag.api.request_limits import check_delete
from specrag.api.responses import AUTH, errors
from specrag.api.responses import WRITE as WRITES
from specrag.api.schemas import DeleteDocuments, DocumentOut, UpsertDocuments

router = APIRouter(prefix="/collections/{name}/documents", tags=["documents"])

#: ``?refresh=``, as Elasticsearch: ``wait_for`` (or ``true``) answers once the write is
#: searchable; ``false`` (the default) once it is durable.
Refresh = Annotated[
    Literal["false", "true", "wait_for"],
    Query(
        description="wait_for or true: answer once the change is searchable (a refresh "
        "covers it); false: once it is durable (searchable after the next refresh)."
    ),
]


@router.post(
    "",
    response_model=dict[str, int],
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 409, 422),
)
def upsert_documents(
    name: str, body: UpsertDocuments, service: ServiceDep, refresh: Refresh = "false"
) -> dict[str, int]:
    """Insert or replace documents, durable before the answer. New text becomes searchable
    at the next refresh (every ``refresh_interval``), or before the answer with
    ``?refresh=wait_for``."""
    n = service.upsert(name, [doc.to_document() for doc in body.documents], refresh)
    return {"upserted": n}


@router.post(
    "/delete",
    response_model=dict[str, int],
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 409, 422),
)
def delete_documents(
    name: str,
    body: DeleteDocuments,
    service: ServiceDep,
    settings: SettingsDep,
    refresh: Refresh = "false",
) -> dict[str, int]:
    """Delete documents; they leave search results at once (tombstones)."""
    check_delete(settings, body.ids)
    return {"deleted": service.delete_documents(name, body.ids, refresh)}


@router.get(
    "/{doc_id:path}", response_model=DocumentOut, dependencies=READ, responses=errors(*AUTH, 404)
)
def get_document(name: str, doc_id: str, service: ServiceDep) -> DocumentOut:
    return service.get_document(name, doc_id)


@router.delete(
    "/{doc_id:path}",
    response_model=dict[str, int],
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 409, 422),
)
def delete_document(
    name: str, doc_id: str, service: ServiceDep, refresh: Refresh = "false"
) -> dict[str, int]:
    return {"deleted": service.delete_documents(name, [doc_id], refresh)}
