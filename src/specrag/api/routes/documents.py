from __future__ import annotations

from fastapi import APIRouter

from specrag.api.auth import READ, WRITE
from specrag.api.deps import ServiceDep, SettingsDep
from specrag.api.request_limits import check_delete
from specrag.api.responses import AUTH, errors
from specrag.api.responses import WRITE as WRITES
from specrag.api.schemas import DeleteDocuments, DocumentOut, UpsertDocuments

router = APIRouter(prefix="/collections/{name}/documents", tags=["documents"])


@router.post(
    "",
    response_model=dict[str, int],
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 422),
)
def upsert_documents(name: str, body: UpsertDocuments, service: ServiceDep) -> dict[str, int]:
    """Insert or replace documents. New text becomes searchable at the next build."""
    n = service.upsert(name, [doc.to_document() for doc in body.documents])
    return {"upserted": n}


@router.post(
    "/delete",
    response_model=dict[str, int],
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 422),
)
def delete_documents(
    name: str, body: DeleteDocuments, service: ServiceDep, settings: SettingsDep
) -> dict[str, int]:
    """Delete documents; they leave search results at once (tombstones)."""
    check_delete(settings, body.ids)
    return {"deleted": service.delete_documents(name, body.ids)}


@router.get(
    "/{doc_id:path}", response_model=DocumentOut, dependencies=READ, responses=errors(*AUTH, 404)
)
def get_document(name: str, doc_id: str, service: ServiceDep) -> DocumentOut:
    return service.get_document(name, doc_id)


@router.delete(
    "/{doc_id:path}",
    response_model=dict[str, int],
    dependencies=WRITE,
    responses=errors(*WRITES, 404),
)
def delete_document(name: str, doc_id: str, service: ServiceDep) -> dict[str, int]:
    return {"deleted": service.delete_documents(name, [doc_id])}
