from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request, status

from specrag.api.auth import READ, WRITE
from specrag.api.deps import ServiceDep
from specrag.api.responses import AUTH, errors
from specrag.api.responses import WRITE as WRITES
from specrag.api.schemas import BuildRequest, JobOut, RefreshOut

router = APIRouter(tags=["builds"])


@router.post(
    "/collections/{name}/builds",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 422, 429),
)
def start_build(
    name: str, service: ServiceDep, request: Request, body: BuildRequest | None = None
) -> JobOut:
    """Queue a build of a new index version; poll ``GET /jobs/{id}``. 429 when
    ``max_queued_builds`` builds are queued or running already."""
    body = body or BuildRequest()
    return _admitted(request, lambda: service.start_build(name, body.kinds, full=body.full))


def _admitted(request: Request, start: Callable[[], JobOut]) -> JobOut:
    """``start`` a build job under the app's build admission (429 past the queue limit;
    the slot is given back when the job could not start)."""
    admission = getattr(request.app.state, "admission", None)
    if admission is None:
        return start()
    admission.build_started()
    try:
        return start()
    except BaseException:
        admission.build_ended()
        raise


@router.post(
    "/collections/{name}/refresh",
    response_model=RefreshOut,
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 409),
)
def refresh(name: str, service: ServiceDep) -> RefreshOut:
    """Make documents upserted since the current version searchable now: a delta segment
    beside the version, a part per kind (bm25, dense, splade, binary, colbert; lucene and
    datastore at the next build; a sharded version: dense). Synchronous: it
    encodes only the new and changed documents."""
    return service.refresh(name)


@router.post(
    "/collections/{name}/merge",
    response_model=JobOut,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=WRITE,
    responses=errors(*WRITES, 400, 404, 422, 429),
)
def merge(name: str, service: ServiceDep, request: Request) -> JobOut:
    """Merge the delta into a new version now: a full build job over every kind (as
    ``{"full": true}``: the same files as a fresh build), from the encoding store
    (nothing already encoded is encoded again); poll ``GET /jobs/{id}``. Searches see the
    old version and delta until the new version is switched in."""
    return _admitted(request, lambda: service.merge(name))


@router.get(
    "/collections/{name}/builds",
    response_model=list[JobOut],
    dependencies=READ,
    responses=errors(*AUTH, 404),
)
def list_builds(name: str, service: ServiceDep) -> list[JobOut]:
    return service.list_jobs(name)


@router.get(
    "/jobs/{job_id}", response_model=JobOut, dependencies=READ, responses=errors(*AUTH, 404)
)
def get_job(job_id: str, service: ServiceDep) -> JobOut:
    return service.get_job(job_id)
