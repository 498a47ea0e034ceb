"""Sharded vs unsharded search on the demo corpus (issue #16): build the collection once
unsharded and once per shard count (local processes), check that every sharded top-k is
the unsharded one (bm25: the same ids and scores exactly; dense: the same ids, scores within
1e-5), and time search through the same searchers the pipeline calls.

- latency: one query per call, as a service answers a request (p50 / p95 over the queries);
- QPS (batch): every query in one batched call;
- build: wall seconds of the version build (shards built in parallel processes).

The shards of one search run in threads; on a machine with fewer free cores than shards
they take turns, so figures from a shared machine understate what sharding gives a
multi-core host (the machine line of the result says what ran). Writes
``benchmarks/results/scale_demo.json``.

Run: python scripts/bench_scale.py [--shards 1,2,4] [--kinds bm25,dense] [--results-dir DIR]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-thread kernels: shards are the parallelism
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_results  # noqa: E402

from specrag.api.cli import DEMO_CORPUS  # noqa: E402
from specrag.indexing.readers import read_documents  # noqa: E402
from specrag.indexing.shards.build import build_sharded  # noqa: E402
from specrag.indexing.versions import VersionStore  # noqa: E402
from specrag.retrieval.version import OpenVersion, open_version  # noqa: E402

DEMO_QUERIES = DEMO_CORPUS.parent / "queries.jsonl"


def same_topk(kind: str, got, want) -> bool:
    for g, w in zip(got, want, strict=True):
        if [h.doc_id for h in g] != [h.doc_id for h in w]:
            return False
        gs, ws = [h.score for h in g], [h.score for h in w]
        if kind == "bm25" and gs != ws:
            return False
        if not np.allclose(gs, ws, atol=1e-5, rtol=0):
            return False
    return True


def time_search(version: OpenVersion, kind: str, queries: list[str], k: int, repeat: int):
    searcher = version.searchers[kind]
    searcher.search(queries, k)  # warm: numba, model, scratch buffers, thread pool
    latencies = []
    for _ in range(repeat):
        for q in queries:
            t0 = time.perf_counter()
            searcher.search([q], k)
            latencies.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    for _ in range(repeat):
        searcher.search(queries, k)
    qps = repeat * len(queries) / (time.perf_counter() - t0)
    return float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)), qps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEMO_CORPUS)
    parser.add_argument("--queries", type=Path, default=DEMO_QUERIES)
    parser.add_argument("--shards", default="1,2,4", help="shard counts, comma-separated")
    parser.add_argument("--kinds", default="bm25", help="kinds, comma-separated (bm25,dense)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="passes over the queries")
    parser.add_argument("--results-dir", type=Path, default=bench_results.RESULTS)
    args = parser.parse_args()

    docs = list(read_documents(args.corpus))
    queries = [json.loads(line)["text"] for line in args.queries.read_text().splitlines()]
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    counts = [int(s) for s in args.shards.split(",")]
    rows, checks = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        layouts: list[tuple[str, OpenVersion, float]] = []
        store = VersionStore(Path(tmp) / "plain")
        t0 = time.perf_counter()
        store.build(docs, kinds)
        layouts.append(("unsharded", open_version(store), time.perf_counter() - t0))
        for n in counts:
            store = VersionStore(Path(tmp) / f"s{n}")
            t0 = time.perf_counter()
            build_sharded(store, docs, kinds, n, runner="processes")
            name = f"{n} shard{'s' if n > 1 else ''}"
            layouts.append((name, open_version(store), time.perf_counter() - t0))
        plain = layouts[0][1]
        for kind in kinds:
            truth = plain.searchers[kind].search(queries, args.k)
            for name, version, build_s in layouts:
                identical = same_topk(kind, version.searchers[kind].search(queries, args.k), truth)
                checks[f"{kind}/{name}"] = identical
                p50, p95, qps = time_search(version, kind, queries, args.k, args.repeat)
                rows.append([kind, name, round(build_s, 2), p50, p95, qps, identical])
                print(f"{kind:6} {name:10} build {build_s:6.1f} s  p50 {p50:7.2f} ms  "
                      f"p95 {p95:7.2f} ms  {qps:8.0f} q/s  identical top-{args.k}: {identical}")  # fmt: skip
    if not all(checks.values()):
        print(f"sharded top-k differs from unsharded: {checks}", file=sys.stderr)
        sys.exit(1)
    bench_results.write_result(
        "scale_demo",
        f"Sharded vs unsharded search, demo corpus ({len(docs)} docs, {len(queries)} queries)",
        [
            bench_results.table(
                f"Top-{args.k} per kind and layout; latency one query per call, QPS one batch "
                f"of all queries; shards searched in threads",
                ["kind", "layout", "build s", "p50 ms", "p95 ms", "QPS (batch)", "identical top-k"],
                rows,
            )
        ],
        notes=[
            "Every sharded top-k equals the unsharded one (bm25: ids and scores exactly, "
            "collection-wide statistics; dense: ids, scores within 1e-5). Sharding a corpus "
            "this small only adds the scatter and merge; it pays where one index outgrows a "
            "core or a machine (docs/scaling.md). Sharded build times include starting the "
            "worker processes (spawn and imports, several seconds here).",
            f"Load average when the run ended: {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores (a shared machine: latencies are noisy).",
        ],
        order=35,
        out_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
