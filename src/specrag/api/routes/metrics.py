"""GET /metrics: Prometheus exposition text (``api/observability.py``). It needs the read
scope once keys exist: the metrics name collections and reveal traffic. A Prometheus
server scrapes it with a read key (``authorization: {credentials: <key>}`` in its scrape
config)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from specrag.api.auth import READ

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    dependencies=READ,
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}
    },
)
def metrics(request: Request) -> Response:
    """Request counts and latencies per route, search stage timings, builds, generation
    speed and cache sizes, in the Prometheus text format."""
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
