"""Answers under load, against the app served by uvicorn on a loopback port (real
connections, real disconnects): a slow client does not hold a generation worker, a
vanished one cancels its answer within one step, a full pool answers 429 with
Retry-After, and search and ask stop at their time settings (504, or an SSE ``error``
event once streaming). Steps are counted (``tests/gated_generator.py``), never timed."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from specrag.api.app import ERROR_STATUS, _handler
from specrag.api.auth import Auth
from specrag.api.deps import get_service
from specrag.api.generation_pool import GenerationPool
from specrag.api.routes import ask as ask_route
from specrag.api.routes import search as search_route
from specrag.generation import service as gen_service
from specrag.settings import Settings
from tests.gated_generator import GatedGenerator
from tests.test_ask_api import FakeService

WAIT_S = 30  # a condition that should hold at once fails the test after this long


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@contextmanager
def served(app: FastAPI) -> Iterator[httpx.Client]:
    """An httpx client of ``app`` under uvicorn on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    until(lambda: server.started, "uvicorn to start")
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with httpx.Client(base_url=base, timeout=WAIT_S) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        app.state.generations.close()


@pytest.fixture
def gated(monkeypatch) -> GatedGenerator:
    gen = GatedGenerator(steps=40)
    monkeypatch.setattr(gen_service, "get_generator", lambda name, device=None: gen)
    yield gen
    gen.release(10_000)  # let any answer a failed test left waiting end


def app_with(service_class: type[FakeService] = FakeService, **settings) -> FastAPI:
    """The ask and search routes over a FakeService (fixed hits), with these settings."""
    app = FastAPI()
    for exc_class, code in ERROR_STATUS.items():
        app.add_exception_handler(exc_class, _handler(code))
    app.include_router(ask_route.router)
    app.include_router(search_route.router)
    app.state.auth = Auth(Settings(auth="off"), keys=None)
    svc = service_class(Settings(generator="extractive", device="cpu", **settings))
    app.dependency_overrides[get_service] = lambda: svc
    app.state.generations = GenerationPool.from_settings(svc.settings)
    return app


def ask(question: str, stream: bool = False) -> dict:
    return {"question": question, "k": 2, "stream": stream}


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:])


def test_a_slow_client_does_not_hold_the_worker(gated):
    """One worker: an answer streamed to a client that stops reading is generated to the
    end anyway (the worker hands events over without waiting for the client), so the
    next client's answer gets the worker and completes; the slow client then reads its
    whole answer."""
    app = app_with(max_concurrent_generations=1, max_queued_generations=1)
    with served(app) as client:
        with client.stream("POST", "/collections/c/ask", json=ask("reader A", True)) as a:
            events = sse_events(a.iter_lines())
            assert next(events) == ("delta", {"text": "w0 "})  # then A stops reading
            b = client.post("/collections/c/ask", json=ask("reader B"))
            assert b.status_code == 200, b.text  # B had the only worker: A's answer ended
            assert b.json()["answer"].endswith("w39")
            rest = list(events)
        assert [k for k, _ in rest] == ["delta"] * 39 + ["done"]
        assert gated.steps_run == {"reader A": 40, "reader B": 40}


def test_a_vanished_client_cancels_its_answer_within_one_step(gated):
    """Two workers: A streams a slow answer, reads two deltas and goes away; B's answer
    completes meanwhile, and A's answer stops after the step in progress when the server
    saw the disconnect: 3 steps run (2 delivered + 1), not the 40 it would take."""
    app = app_with(max_concurrent_generations=2, max_queued_generations=0)
    pool = app.state.generations
    with served(app) as client:
        gated.release(2)
        with client.stream("POST", "/collections/c/ask", json=ask("slow A", True)) as a:
            events = sse_events(a.iter_lines())
            assert [next(events)[0], next(events)[0]] == ["delta", "delta"]
            (job,) = pool.jobs()  # A's, waiting at its third step
            b = client.post("/collections/c/ask", json=ask("fast B"))
            assert b.status_code == 200 and b.json()["answer"].endswith("w39")
            assert not job.cancelled.is_set() and gated.steps_run["slow A"] == 2
        # the client is gone (the response closed mid-stream)
        until(job.cancelled.is_set, "the server to cancel A's answer")
        gated.release(100)  # the step in progress ends; no further step may start
        until(job.finished.is_set, "A's worker to stop")
        assert gated.steps_run["slow A"] == 3 and job.steps == 3
        until(lambda: pool.admitted == 0, "every worker free")


def test_a_vanished_plain_client_cancels_its_answer_within_one_step(gated):
    """A non-streamed ask whose client closes its connection while the answer is being
    generated: the answer stops after the step in progress (3 steps: 2 run before the
    client left + 1), not the 40 it would take nor at ask_timeout_s. A raw socket, so that
    the test decides exactly when the connection closes."""
    app = app_with(max_concurrent_generations=1, max_queued_generations=0)
    pool = app.state.generations
    with served(app) as client:
        port = int(str(client.base_url).rsplit(":", 1)[1])
        body = json.dumps(ask("slow plain")).encode()
        request = (
            b"POST /collections/c/ask HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        gated.release(2)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(request)
            until(lambda: gated.steps_run["slow plain"] == 2, "two steps of the answer")
            (job,) = pool.jobs()  # waiting at its third step
            assert not job.cancelled.is_set()
        # the client is gone before any response
        until(job.cancelled.is_set, "the server to cancel the answer")
        gated.release(100)  # the step in progress ends; no further step may start
        until(job.finished.is_set, "the answer's worker to stop")
        assert gated.steps_run["slow plain"] == 3 and job.steps == 3
        until(lambda: pool.admitted == 0, "the worker free")
        assert client.post("/collections/c/ask", json=ask("fast after")).status_code == 200


def test_pool_and_queue_full_is_429_with_retry_after(gated):
    """One worker and one queued answer are the limit: a third ask is 429 with
    Retry-After (streaming or not) until one ends; the two admitted ones complete."""
    app = app_with(max_concurrent_generations=1, max_queued_generations=1)
    pool = app.state.generations
    with served(app) as client:
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(
                target=lambda q=q: results.append(client.post("/collections/c/ask", json=ask(q)))
            )
            for q in ("slow 1", "slow 2")
        ]
        for t in threads:
            t.start()
        until(lambda: pool.admitted == 2, "two answers admitted")
        for stream in (False, True):
            r = client.post("/collections/c/ask", json=ask("slow 3", stream))
            assert r.status_code == 429, r.text
            assert "max_queued_generations" in r.json()["detail"]
            assert int(r.headers["Retry-After"]) >= 1
        gated.release(80)
        for t in threads:
            t.join(WAIT_S)
        assert sorted(r.status_code for r in results) == [200, 200]
        assert gated.steps_run["slow 3"] == 0  # refused answers never ran
        assert client.post("/collections/c/ask", json=ask("fast 4")).status_code == 200


def test_ask_past_its_time_is_504_and_its_answer_stops(gated):
    """An answer that has not produced its first event by ask_timeout_s is 504 naming the
    setting; its generation stops: the step in progress is its last."""
    app = app_with(ask_timeout_s=0.5)
    pool = app.state.generations
    with served(app) as client:
        assert client.post("/collections/c/ask", json=ask("fast")).status_code == 200  # within
        until(lambda: pool.admitted == 0, "the first answer's worker to end")
        r = client.post("/collections/c/ask", json=ask("slow"))  # waits at its first step
        assert r.status_code == 504 and "ask_timeout_s=0.5" in r.json()["detail"]
        (job,) = pool.jobs()
        assert job.cancelled.is_set()
        gated.release(100)
        until(job.finished.is_set, "the timed-out answer to stop")
        assert gated.steps_run["slow"] == 1


def test_ask_stream_past_its_time_ends_with_an_error_event(gated):
    """Once streaming, the status is sent: past ask_timeout_s the stream ends with an
    `error` event naming the setting, and the answer stops after its step in progress."""
    app = app_with(ask_timeout_s=1.0)
    pool = app.state.generations
    with served(app) as client:
        gated.release(2)
        with client.stream("POST", "/collections/c/ask", json=ask("slow", True)) as r:
            assert r.status_code == 200
            events = list(sse_events(r.iter_lines()))
        assert [k for k, _ in events] == ["delta", "delta", "error"]
        assert "ask_timeout_s=1" in events[-1][1]["detail"]
        (job,) = pool.jobs()  # waiting at its third step
        assert job.cancelled.is_set()
        gated.release(100)
        until(job.finished.is_set, "the timed-out answer to stop")
        assert gated.steps_run["slow"] == 3


class SlowSearch(FakeService):
    """A search whose stage blocks until the test opens ``gate`` when the query starts
    with ``slow``: a slow stage injected, no real work timed."""

    gate = threading.Event()

    def search(self, name, request):
        if request.query.startswith("slow") and not self.gate.wait(WAIT_S):
            raise TimeoutError("the test never opened the gate")
        return super().search(name, request)


def test_search_past_its_time_is_504():
    app = app_with(SlowSearch, search_timeout_s=0.5)
    SlowSearch.gate.clear()
    with served(app) as client:
        within = client.post("/collections/c/search", json={"query": "cells", "k": 2})
        assert within.status_code == 200 and len(within.json()["hits"]) == 2
        r = client.post("/collections/c/search", json={"query": "slow cells", "k": 2})
        assert r.status_code == 504, r.text
        assert "search_timeout_s=0.5" in r.json()["detail"]
        SlowSearch.gate.set()  # the abandoned thread ends; the server still answers
        assert client.post("/collections/c/search", json={"query": "slow", "k": 1}).is_success


def test_time_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPECRAG_SEARCH_TIMEOUT_S", "2.5")
    monkeypatch.setenv("SPECRAG_ASK_TIMEOUT_S", "0")
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.setenv("SPECRAG_ASK_TIMEOUT_S", "10")
    monkeypatch.setenv("SPECRAG_MAX_QUEUED_GENERATIONS", "0")
    s = Settings()
    assert (s.search_timeout_s, s.ask_timeout_s, s.max_queued_generations) == (2.5, 10.0, 0)
