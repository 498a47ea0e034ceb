"""`specrag serve` as a subprocess for the benchmarks that measure a real server
(`bench_load.py`, `live_updates.py`): this checkout's code, a free loopback port, its
output in ``<home>/server.log``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from bench_results import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(home: Path, env: dict[str, str] | None = None, start_s: float = 120) -> Iterator[str]:
    """The server's base URL once it answers ``/health``; ``env``: variables on top of
    this process's (a database URL, thread counts). Stopped on exit."""
    port = free_port()
    env = {**os.environ, "SPECRAG_HOME": str(home), "PYTHONPATH": str(REPO / "src"), **(env or {})}
    log = open(home / "server.log", "w")  # noqa: SIM115 -- closed below
    cmd = [sys.executable, "-m", "specrag.api.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_s
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not answer /health within {start_s:g} s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
