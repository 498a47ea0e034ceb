"""Retrieval benchmark on the whole SciFact set: quality, build speed and latency.

1. Builds the ``scifact`` collection (bm25 + dense) under a bench SPECRAG_HOME with the
   CollectionService, as `specrag index` does. The dense kind reuses the MiniLM document
   embeddings cached by ``scripts/scifact_cache.py`` when their texts match (encoding
   5,183 abstracts takes many minutes on a shared CPU); its encode speed is then measured
   by a real dense build over a sample (``--dense-sample``).
2. Chooses the hybrid fusion on SciFact *train* queries (a small grid of RRF and convex
   fusions) and prints the grid; ``retrieval/pipeline.py:HYBRID`` holds the choice.
3. Test-set nDCG@10, R@100, MRR@10 for bm25, dense, RRF, convex (minmax, zscore), hybrid.
4. Single-thread latency per retriever (pipeline in-process, sequential, one query at a
   time): QPS, p50, p99; and the same through the REST endpoint (uvicorn on 127.0.0.1 in
   a subprocess, httpx client, sequential requests).

Run: nice -n 10 .venv/bin/python scripts/bench_retrieval.py [--data ../shared/data/scifact]
"""

from __future__ import annotations

import os

# Single-threaded numeric libraries, for stable latency figures on a shared machine.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scifact_cache import (  # noqa: E402
    DEFAULT_DATA,
    cache_path,
    document_embeddings,
    load_scifact,
)

from specrag.api.service import CollectionService  # noqa: E402
from specrag.indexing.kinds.dense import build as dense_builder  # noqa: E402
from specrag.indexing.versions import VersionStore  # noqa: E402
from specrag.retrieval import pipeline  # noqa: E402
from specrag.retrieval.evaluation import evaluate  # noqa: E402
from specrag.retrieval.request import RetrieverSpec, SearchRequest  # noqa: E402
from specrag.settings import Settings  # noqa: E402
from specrag.storage.store import NotFound  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
COLLECTION = "scifact"
KINDS = ["bm25", "dense"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--home", type=Path, default=REPO / ".cache" / "bench_retrieval_home")
    parser.add_argument(
        "--rebuild", action="store_true", help="build a new version even if one exists"
    )
    parser.add_argument("--no-embedding-cache", action="store_true", help="encode dense for real")
    parser.add_argument(
        "--dense-sample", type=int, default=300, help="docs for the dense speed build"
    )
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--rest-queries", type=int, default=100)
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--json-out", type=Path, default=REPO / ".cache" / "bench_retrieval.json")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    test = load_scifact(args.data, "test")
    train = load_scifact(args.data, "train")
    results: dict = {
        "n_docs": len(test.docs),
        "n_test_queries": len(test.query_ids),
        "n_train_queries": len(train.query_ids),
    }

    service = CollectionService(Settings(home=args.home))
    service.start()
    try:
        results["build"] = build(service, test, args)
        version = service.version_for(COLLECTION)
        info = service.store.get_collection(COLLECTION)
        allowed = service.live_mask(COLLECTION, version, info.generation)
        live_searchers = dict(version.searchers)
        version.searchers = {k: _Memo(s) for k, s in live_searchers.items()}
        if not args.skip_grid:
            results["grid_train"] = hybrid_grid(version, train, allowed)
        results["quality_test"] = quality(version, test, allowed)
        version.searchers = live_searchers
        results["latency"] = latency(version, test, allowed, args.latency_queries)
    finally:
        service.close()
    results["rest"] = rest_latency(args.home, test, args.rest_queries)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results, indent=2))
    print(report(results))


# -- build -----------------------------------------------------------------------------
def build(service: CollectionService, data, args) -> dict:
    try:
        versions = service.versions(COLLECTION)
    except NotFound:
        versions = None
    stats: dict = {}
    if versions is None or versions.current() is None or args.rebuild:
        cached = None
        if (
            not args.no_embedding_cache
            and cache_path(
                [d.full_text() for d in data.docs], "all-MiniLM-L6-v2", "document", True
            ).exists()
        ):
            cached = document_embeddings(data)
        with _cached_dense(data, cached):
            started = time.perf_counter()
            service.index(COLLECTION, data.docs, KINDS, progress_bar=True)
            stats["index_seconds"] = round(time.perf_counter() - started, 2)
        stats["dense_from_cache"] = cached is not None
        (args.home / "bench_build.json").write_text(json.dumps(stats))
    elif (args.home / "bench_build.json").exists():
        stats.update(json.loads((args.home / "bench_build.json").read_text()))
    versions = service.versions(COLLECTION)
    manifest = versions.manifest(versions.current())
    for kind, entry in manifest["kinds"].items():
        seconds = entry["build_seconds"]
        stats[kind] = {
            "build_seconds": seconds,
            "docs_per_s": round(manifest["n_docs"] / seconds, 1),
        }
    if stats.get("dense_from_cache"):
        stats["dense"]["note"] = "index written from cached embeddings"
    if args.dense_sample:
        sample = data.docs[: args.dense_sample]
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            VersionStore(Path(tmp)).build(sample, {"dense": {}})
            seconds = time.perf_counter() - started
        stats["dense_sample"] = {
            "docs": len(sample),
            "seconds": round(seconds, 2),
            "docs_per_s": round(len(sample) / seconds, 1),
        }
    return stats


class _cached_dense:
    """While active, the dense builder takes each document's row from the embedding cache
    (checked by id and exact text) instead of encoding; any mismatch falls back to the
    real encoder. The registry imports the builder by name at call time."""

    def __init__(self, data, embeddings):
        self.embeddings = embeddings
        self.rows = {d.id: (i, d.full_text()) for i, d in enumerate(data.docs)}
        self.original = dense_builder.build_dense

    def __enter__(self):
        if self.embeddings is None:
            return self
        original, rows, emb = self.original, self.rows, self.embeddings

        def build_from_cache(corpus, out_dir, config, progress):
            order = []
            for doc in corpus:
                hit = rows.get(doc.id)
                same_encoding = (config.model, config.normalize, config.max_seq_length) == (
                    "all-MiniLM-L6-v2",
                    True,
                    None,
                )
                if hit is None or hit[1] != doc.full_text() or not same_encoding:
                    return original(corpus, out_dir, config, progress)
                order.append(hit[0])
            return dense_builder.write_dense_index(np.asarray(emb[order]), out_dir, config)

        dense_builder.build_dense = build_from_cache
        return self

    def __exit__(self, *exc):
        dense_builder.build_dense = self.original


class _Memo:
    """A searcher wrapper that answers a repeated batch from memory, so that the fusion
    grid searches each kind once and only re-fuses (quality runs only, never latency)."""

    def __init__(self, searcher):
        self.searcher = searcher
        self.kind = searcher.kind
        self.cache: dict = {}

    def search(self, queries, k, allowed=None):
        key = (tuple(queries), k, None if allowed is None else allowed.tobytes())
        if key not in self.cache:
            self.cache[key] = self.searcher.search(queries, k, allowed)
        return [
            [h.__class__(h.doc_id, h.score, dict(h.scores)) for h in hits]
            for hits in self.cache[key]
        ]


# -- quality ---------------------------------------------------------------------------
def run_request(version, data, allowed, request: SearchRequest) -> dict[str, float]:
    hits = pipeline.search_batch(version, data.query_texts, request, allowed).hits
    return evaluate(dict(zip(data.query_ids, hits, strict=True)), data.qrels)


def retriever_configs() -> dict[str, SearchRequest]:
    def fused(fusion: str, **kw) -> SearchRequest:
        specs = [
            RetrieverSpec(kind="bm25", weight=kw.pop("w_bm25", 1.0)),
            RetrieverSpec(kind="dense", weight=kw.pop("w_dense", 1.0)),
        ]
        return SearchRequest(query="x", k=100, retrievers=specs, fusion=fusion, **kw)

    return {
        "bm25": SearchRequest(query="x", k=100, retriever="bm25"),
        "dense": SearchRequest(query="x", k=100, retriever="dense"),
        "rrf k=60 (1:1)": fused("rrf"),
        "convex minmax (1:1)": fused("convex", normalization="minmax"),
        "convex zscore (1:1)": fused("convex", normalization="zscore"),
        "hybrid": SearchRequest(query="x", k=100, retriever="hybrid"),
    }


def quality(version, data, allowed) -> dict:
    out = {}
    for name, request in retriever_configs().items():
        out[name] = {
            m: round(v, 4) for m, v in run_request(version, data, allowed, request).items()
        }
        print(f"test {name:<22} {out[name]}", file=sys.stderr)
    return out


def hybrid_grid(version, data, allowed) -> list[dict]:
    """nDCG@10 on train queries for RRF (k, weights) and convex (normalization, weights),
    with candidate depth 100. Lists are searched once and re-fused for every setting."""
    rows = []
    grid: list[tuple[str, dict]] = []
    for w in (0.3, 0.4, 0.5, 0.6, 0.7):
        for rrf_k in (10, 30, 60, 100):
            grid.append(("rrf", {"rrf_k": rrf_k, "w_bm25": w}))
        for norm in ("minmax", "zscore"):
            grid.append(("convex", {"normalization": norm, "w_bm25": w}))
    for method, params in grid:
        specs = [
            RetrieverSpec(kind="bm25", weight=params["w_bm25"], k=100),
            RetrieverSpec(kind="dense", weight=1 - params["w_bm25"], k=100),
        ]
        extra = {k: v for k, v in params.items() if k != "w_bm25"}
        request = SearchRequest(query="x", k=100, retrievers=specs, fusion=method, **extra)
        scores = run_request(version, data, allowed, request)
        rows.append({"fusion": method, **params, **{m: round(v, 4) for m, v in scores.items()}})
        print(f"train {rows[-1]}", file=sys.stderr)
    return sorted(rows, key=lambda r: -r["nDCG@10"])


# -- latency ---------------------------------------------------------------------------
LATENCY_RETRIEVERS = ["bm25", "dense", "hybrid"]


def latency(version, data, allowed, n_queries: int) -> dict:
    out = {}
    queries = data.query_texts[:n_queries]
    for retriever in LATENCY_RETRIEVERS:
        request = SearchRequest(query="x", k=10, retriever=retriever)
        pipeline.search_batch(version, queries[:5], request, allowed)  # warm-up
        times = []
        for q in queries:
            t0 = time.perf_counter()
            pipeline.search(version, request.model_copy(update={"query": q}), allowed)
            times.append(time.perf_counter() - t0)
        out[retriever] = _summary(times)
        print(f"latency {retriever}: {out[retriever]}", file=sys.stderr)
    return out


def rest_latency(home: Path, data, n_queries: int) -> dict:
    import httpx

    port = _free_port()
    env = {**os.environ, "SPECRAG_HOME": str(home)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "specrag.api.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = {}
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            _wait_healthy(client, server)
            for retriever in LATENCY_RETRIEVERS:
                body = {"query": "x", "k": 10, "retriever": retriever}
                for q in data.query_texts[:5]:  # warm-up (loads the version, the model)
                    client.post(
                        f"/collections/{COLLECTION}/search", json={**body, "query": q}
                    ).raise_for_status()
                times = []
                for q in data.query_texts[:n_queries]:
                    t0 = time.perf_counter()
                    r = client.post(f"/collections/{COLLECTION}/search", json={**body, "query": q})
                    times.append(time.perf_counter() - t0)
                    r.raise_for_status()
                out[retriever] = _summary(times)
                print(f"rest {retriever}: {out[retriever]}", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


def _wait_healthy(client, server, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the REST server exited before it was healthy")
        try:
            if client.get("/health").status_code == 200:
                return
        except Exception:
            pass
        time.sleep(0.3)
    raise RuntimeError("the REST server did not become healthy")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {
        "n": len(times),
        "qps": round(len(times) / ms.sum() * 1000, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


# -- report ----------------------------------------------------------------------------
def report(r: dict) -> str:
    lines = [
        f"SciFact: {r['n_docs']} docs, {r['n_test_queries']} test queries, "
        f"{r['n_train_queries']} train queries",
        "",
        "| retriever | nDCG@10 | R@100 | MRR@10 |",
        "|---|---|---|---|",
    ]
    for name, m in r["quality_test"].items():
        lines.append(f"| {name} | {m['nDCG@10']:.4f} | {m['R@100']:.4f} | {m['MRR@10']:.4f} |")
    if "grid_train" in r:
        lines += [
            "",
            "Hybrid grid on train (top 8 by nDCG@10):",
            "",
            "| fusion | params | nDCG@10 | R@100 |",
            "|---|---|---|---|",
        ]
        for row in r["grid_train"][:8]:
            params = ", ".join(
                f"{k}={v}"
                for k, v in row.items()
                if k not in ("fusion", "nDCG@10", "R@100", "MRR@10")
            )
            lines.append(
                f"| {row['fusion']} | {params} | {row['nDCG@10']:.4f} | {row['R@100']:.4f} |"
            )
    lines += [
        "",
        "Build:",
        "",
        "```",
        json.dumps(r["build"], indent=2),
        "```",
        "",
        "| retriever | in-process QPS | p50 ms | p99 ms | REST QPS | REST p50 ms | REST p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in r["latency"].items():
        rest = r["rest"].get(name, {})
        lines.append(
            f"| {name} | {m['qps']} | {m['p50_ms']} | {m['p99_ms']} | "
            f"{rest.get('qps', '-')} | {rest.get('p50_ms', '-')} | {rest.get('p99_ms', '-')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
