"""Search under load across a version swap (issue #15): a real server process
(`specrag serve` on a free loopback port, its home in a temp folder), the demo corpus
indexed with bm25 + dense over REST, then ``--clients`` client threads searching for
``--seconds`` (queries from the demo set; each client alternates `hybrid` and `bm25`,
k=10) while, a third of the way in, one document with a marker word is upserted and a
REST build swaps the version.

Reported per database (SQLite file; PostgreSQL on a throwaway cluster started with
``.ci/postgres.sh``): requests, QPS, p50/p99 latency (ms) per retriever, errors, and the
swap. Consistency, checked on every response: it names one of the two versions; a client
never sees the old version after the new one; for each (version, query, retriever) every
response carries the same hits; the marker document is never in a response naming the
old version, and is the first bm25 hit of the marker query on the new one. The load
average before and after each run goes into the notes (the machine may be shared).

Run:  python scripts/bench_load.py [--seconds 60] [--backends sqlite,postgres]
      python scripts/bench_load.py --seconds 10 --no-write     # a rehearsal
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from contextlib import contextmanager, nullcontext  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from itertools import islice  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import REPO, table, write_result  # noqa: E402
from serve_process import serve  # noqa: E402

from specrag.indexing.readers import read_documents  # noqa: E402

DEMO = REPO / "src" / "specrag" / "demo"
COLLECTION = "load"
KINDS = ["bm25", "dense"]
RETRIEVERS = ["hybrid", "bm25"]
K = 10
MARKER = "zyxwvmarker"
MARKER_DOC = {"id": "load-marker", "title": "Marker", "text": f"{MARKER} {MARKER} glioblastoma"}


@dataclass
class Response:
    client: int
    started: float  # seconds since the run began
    ms: float
    retriever: str
    query: int
    status: int | str  # an HTTP status, or the exception's name
    version: str | None = None
    hits: tuple[str, ...] = ()


@dataclass
class Run:
    backend: str
    responses: list[Response] = field(default_factory=list)
    build_started: float = 0.0
    build_done: float = 0.0
    old: str = ""
    new: str = ""
    load_before: tuple[float, ...] = ()
    load_after: tuple[float, ...] = ()


@contextmanager
def postgres_url():
    """A throwaway PostgreSQL cluster (``.ci/postgres.sh``): its URL, stopped afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="specrag-load-pg-"))
    folder.chmod(0o755)  # the cluster's owner (user postgres, when we are root) needs it
    script = REPO / ".ci" / "postgres.sh"
    out = subprocess.run(
        [str(script), "start", str(folder / "pg")], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"PostgreSQL could not be started: {out.stderr.strip()}")
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(script), "stop", str(folder / "pg")], check=False)
        folder.rmdir()  # empty once the cluster's folder is removed


def wait_build(api: httpx.Client, job_id: str) -> dict:
    while True:
        job = api.get(f"/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            if job["status"] != "succeeded":
                raise SystemExit(f"build failed: {job}")
            return job
        time.sleep(0.2)


def setup(api: httpx.Client, n_docs: int) -> str:
    """The collection indexed with bm25 + dense: its version id."""
    docs = [
        {"id": d.id, "title": d.title, "text": d.text}
        for d in islice(read_documents(DEMO / "scifact-1k.jsonl"), n_docs)
    ]
    api.post("/collections", json={"name": COLLECTION, "kinds": KINDS}).raise_for_status()
    for i in range(0, len(docs), 500):
        r = api.post(f"/collections/{COLLECTION}/documents", json={"documents": docs[i : i + 500]})
        r.raise_for_status()
    wait_build(api, api.post(f"/collections/{COLLECTION}/builds").json()["id"])
    return api.get(f"/collections/{COLLECTION}").json()["current_version"]


def queries() -> list[str]:
    lines = (DEMO / "queries.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in lines if line.strip()] + [MARKER]


def run_load(base: str, run: Run, seconds: float, clients: int, texts: list[str]) -> None:
    start = time.perf_counter()
    stop = threading.Event()
    lock = threading.Lock()

    def client(c: int) -> None:
        rng = np.random.default_rng(c)
        with httpx.Client(base_url=base, timeout=60) as http:
            i = 0
            while not stop.is_set():
                retriever = RETRIEVERS[i % len(RETRIEVERS)]
                q = int(rng.integers(len(texts)))
                t0 = time.perf_counter()
                body = {"query": texts[q], "k": K, "retriever": retriever, "include": []}
                try:
                    r = http.post(f"/collections/{COLLECTION}/search", json=body)
                    status: int | str = r.status_code
                except httpx.HTTPError as exc:
                    r, status = None, type(exc).__name__
                ms = (time.perf_counter() - t0) * 1000
                out = Response(c, t0 - start, ms, retriever, q, status)
                if r is not None and r.status_code == 200:
                    data = r.json()
                    out.version = data["version"]
                    out.hits = tuple(h["doc_id"] for h in data["hits"])
                with lock:
                    run.responses.append(out)
                i += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=base, timeout=120) as api:
        time.sleep(seconds / 3)
        run.build_started = time.perf_counter() - start
        r = api.post(f"/collections/{COLLECTION}/documents", json={"documents": [MARKER_DOC]})
        r.raise_for_status()
        wait_build(api, api.post(f"/collections/{COLLECTION}/builds").json()["id"])
        run.build_done = time.perf_counter() - start
        run.new = api.get(f"/collections/{COLLECTION}").json()["current_version"]
        time.sleep(max(0.0, seconds - (time.perf_counter() - start)))
    stop.set()
    for t in threads:
        t.join()


def check(run: Run, marker_query: int) -> list[str]:
    """Every way a response could disagree with one consistent version."""
    problems: list[str] = []
    ok = [r for r in run.responses if r.status == 200]
    versions = {r.version for r in ok}
    if not versions <= {run.old, run.new}:
        problems.append(f"unknown versions {versions - {run.old, run.new}}")
    by_client: dict[int, list[Response]] = defaultdict(list)
    for r in sorted(ok, key=lambda r: r.started):
        by_client[r.client].append(r)
    for c, rs in by_client.items():
        seen_new = False
        for r in rs:
            seen_new |= r.version == run.new
            if seen_new and r.version == run.old:
                problems.append(f"client {c} saw the old version after the new one")
                break
    hits: dict[tuple, set] = defaultdict(set)
    for r in ok:
        hits[(r.version, r.query, r.retriever)].add(r.hits)
        if r.version == run.old and MARKER_DOC["id"] in r.hits:
            problems.append(f"the marker document in a response of the old version: {r}")
        marker_case = r.version == run.new and r.query == marker_query and r.retriever == "bm25"
        if marker_case and r.hits[:1] != (MARKER_DOC["id"],):
            problems.append(f"the marker query's first bm25 hit on the new version: {r}")
    for key, variants in hits.items():
        if len(variants) > 1:
            problems.append(f"{len(variants)} different hit lists for {key}")
    return problems


def one_run(backend: str, seconds: float, clients: int, n_docs: int) -> tuple[Run, list[str]]:
    run = Run(backend)
    texts = queries()
    database = postgres_url() if backend == "postgres" else nullcontext(None)
    with (
        tempfile.TemporaryDirectory(prefix="specrag-load-") as tmp,
        database as url,
        serve(Path(tmp), {"SPECRAG_DATABASE_URL": url} if url else None) as base,
    ):
        with httpx.Client(base_url=base, timeout=600) as api:
            t0 = time.perf_counter()
            run.old = setup(api, n_docs)
            print(f"[{backend}] indexed in {time.perf_counter() - t0:.0f} s", flush=True)
        run.load_before = os.getloadavg()
        run_load(base, run, seconds, clients, texts)
        run.load_after = os.getloadavg()
    return run, check(run, marker_query=len(texts) - 1)


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def rows(run: Run, seconds: float) -> list[list]:
    out = []
    for name in [*RETRIEVERS, "all"]:
        rs = [r for r in run.responses if name == "all" or r.retriever == name]
        ms = [r.ms for r in rs if r.status == 200]
        errors = sum(r.status != 200 for r in rs)
        out.append(
            [
                run.backend,
                name,
                len(rs),
                len(ms) / seconds,
                percentile(ms, 50),
                percentile(ms, 99),
                errors,
            ]
        )
    return out


def swap_row(run: Run, problems: list[str]) -> list:
    ok = [r for r in run.responses if r.status == 200]
    during = [r.ms for r in ok if run.build_started <= r.started <= run.build_done]
    return [
        run.backend,
        sum(r.version == run.old for r in ok),
        sum(r.version == run.new for r in ok),
        round(run.build_started, 1),
        round(run.build_done, 1),
        percentile(during, 99),
        len(problems),
        " / ".join(f"{x:.1f}" for x in run.load_before),
        " / ".join(f"{x:.1f}" for x in run.load_after),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load per database (60)")
    parser.add_argument("--clients", type=int, default=8, help="client threads (8)")
    parser.add_argument("--docs", type=int, default=1000, help="demo documents indexed (1000)")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--no-write", action="store_true", help="print only (a rehearsal)")
    args = parser.parse_args()
    latency, swaps, all_problems = [], [], {}
    for backend in args.backends.split(","):
        run, problems = one_run(backend, args.seconds, args.clients, args.docs)
        latency += rows(run, args.seconds)
        swaps.append(swap_row(run, problems))
        all_problems[backend] = problems[:20]
        print(json.dumps({"latency": rows(run, args.seconds), "swap": swaps[-1]}), flush=True)
        for p in problems[:20]:
            print("PROBLEM", backend, p, flush=True)
    if args.no_write:
        return 1 if any(all_problems.values()) else 0
    write_result(
        "load",
        "Search under load across a version swap",
        [
            table(
                f"{args.clients} clients searching for {args.seconds:g} s (k={K}; each client "
                "alternates hybrid and bm25), one server process (`specrag serve`, uvicorn, "
                "one worker)",
                ["database", "retriever", "requests", "QPS", "p50 ms", "p99 ms", "errors"],
                latency,
            ),
            table(
                "The swap: one document upserted and a REST build a third of the way in; "
                "consistency problems counted over every response (see the notes)",
                [
                    "database",
                    "responses of the old version",
                    "of the new",
                    "build started (s)",
                    "swapped (s)",
                    "p99 ms during the build",
                    "consistency problems",
                    "load before (1/5/15 min)",
                    "load after",
                ],
                swaps,
            ),
        ],
        notes=[
            f"The demo corpus ({args.docs} SciFact documents) indexed with bm25 + dense over "
            "REST in a temp home; clients and server on one machine, loopback HTTP "
            "(httpx, one connection per client). Consistency, checked on every response: it "
            "names the old or the new version; no client sees the old one after the new one; "
            "for each (version, query, retriever) every response has the same hits; the "
            "upserted marker document is never in a response of the old version and is the "
            "first bm25 hit of its query on the new one. The machine is shared with other "
            "work: the load averages (2 cores) are in the swap table; latencies here are "
            "those of an overloaded machine, not of the engine alone.",
        ],
        order=80,
        data={"problems": all_problems},
    )
    return 1 if any(all_problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
