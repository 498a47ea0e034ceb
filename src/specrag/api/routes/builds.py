from __future__ import annotations

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
    admission = getattr(request.app.state, "admission", None)
    if admission is None:
        return service.start_build(name, body.kinds if body else None)
    admission.build_started()
    try:
        return service.start_build(name, body.kinds if body else None)
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
    """Make documents upserted since the current version searchable now (``dense``: a
    delta segment beside the version; other kinds at the next build). Synchronous: it
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
    """Merge the delta into a new version now: a build job over every kind, from the
    encoding store (nothing already encoded is encoded again); poll ``GET /jobs/{id}``.
    Searches see the old version and delta until the new version is switched in."""
    return start_build(name, service, request, None)


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
