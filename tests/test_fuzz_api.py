"""Schemathesis over the app's own OpenAPI schema: every operation, positive and
negative cases, a bounded number of examples each. Asserted: no 5xx, every response
matches its declared schema, status code and media type. Path parameters that name a
collection point at a scratch bm25 collection half of the time, so the destructive
operations (delete, upsert, build) run against it, recreated when a case deleted it."""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from specrag.api.app import create_app  # noqa: E402
from specrag.settings import Settings  # noqa: E402
from specrag.storage.store import NotFound  # noqa: E402
from tests.conftest import demo_documents  # noqa: E402

SCRATCH = "fuzz"
READ_TIMEOUT_S = 120
HOME = Path(tempfile.mkdtemp(prefix="specrag-fuzz-"))
#: Keys off: a fuzzed POST /keys would otherwise lock every later case out (401).
APP = create_app(Settings(home=HOME, auth="off", max_body_bytes=64 * 1024))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CHECKS = [
    schemathesis.checks.not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


def ensure_scratch() -> None:
    service = getattr(APP.state, "service", None)
    if service is None:
        return
    try:
        if service.store.get_collection(SCRATCH).current_version:
            return
    except NotFound:
        pass
    service.index(SCRATCH, demo_documents(10), ["bm25"])


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case):
    ensure_scratch()
    # half of the cases, chosen by a stable hash (derandomized runs repeat)
    if "name" in (case.path_parameters or {}) and zlib.crc32(repr(case.body).encode()) % 2 == 0:
        case.path_parameters["name"] = SCRATCH
    # The harness's read timeout (10 s by default) cancels a request that runs past it;
    # the first rerank case loads a model, which takes longer on a busy machine.
    case.call_and_validate(checks=CHECKS, timeout=READ_TIMEOUT_S)


def test_every_route_declares_its_guard_responses():
    """The statuses the middlewares and the key check answer with are in the schema of
    every route they can reach: 401/403 with a scope, 413/415 on writes (the fuzzer runs
    with keys off, so it does not see the 401s)."""
    from fastapi.routing import APIRoute

    missing = []
    for route in APP.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        declared = set(route.responses)
        needs: set[int] = set()
        if route.dependencies:
            needs |= {401, 403}
        if route.methods & {"POST", "DELETE"}:
            needs |= {413, 415}
        if not needs <= declared:
            missing.append(f"{sorted(route.methods)} {route.path}: {sorted(needs - declared)}")
    assert missing == []
