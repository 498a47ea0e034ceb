from __future__ import annotations

from fastapi import APIRouter, Request

from specrag.api.auth import READ
from specrag.api.deps import ServiceDep
from specrag.api.request_limits import check_search, in_thread_within
from specrag.api.responses import WRITE, errors
from specrag.api.schemas import SearchResponse
from specrag.retrieval.request import SearchRequest

router = APIRouter(tags=["search"])


@router.post(
    "/collections/{name}/search",
    response_model=SearchResponse,
    dependencies=READ,
    responses=errors(*WRITE, 400, 404, 409, 422, 504),
)
async def search(
    name: str, request: SearchRequest, service: ServiceDep, http: Request
) -> SearchResponse:
    settings = service.settings
    check_search(settings, request)
    response = await in_thread_within(
        settings.search_timeout_s, "search_timeout_s", service.search, name, request
    )
    metrics = getattr(http.app.state, "metrics", None)
    if metrics is not None:
        metrics.observe_search(response.timings_ms)
    return response
