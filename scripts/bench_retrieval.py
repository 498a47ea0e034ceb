"""Retrieval benchmark on SciFact: each retriever's quality, the default pipeline's, the
MaxSim rerank's paired significance test, build speed and latency.

1. Builds the ``scifact`` collection (bm25, dense MiniLM flat, colbert MiniLM tokens) under
   ``--home`` with ``CollectionService.index``, the code ``specrag index`` runs, encoding
   every document for real (kept for later runs; ``--rebuild`` builds again).
2. nDCG@10, R@100 and MRR@10 on the 300 test queries for bm25, dense, RRF k=60, convex
   z-score, ``hybrid`` (the default pipeline) and ``hybrid`` + the opt-in MaxSim rerank
   (fusion weights of ``retrieval/recipe.py``), all through ``CollectionService.search_batch``.
3. Paired tests over queries (t-test and a bootstrap 95% interval of the mean nDCG@10
   difference): MaxSim rerank vs hybrid alone, and hybrid vs RRF.
4. Latency, one query per call through ``CollectionService.search`` (k=10), one thread:
   the default hybrid next to the one it replaced (100 candidates per kind, not 1000)
   and the opt-in MaxSim rerank and bm25 RM3 from the fused list,
   measured in the same run, so the cost of the deeper lists is a same-load figure.

Run: nice .venv/bin/python scripts/bench_retrieval.py [--data ../shared/data/scifact]
"""

from __future__ import annotations

import os

import bench_env

bench_env.offline_with_threads(1)

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import ir_measures  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_results  # noqa: E402
from scifact_cache import add_data_argument, load_scifact  # noqa: E402

from specrag.api.service import CollectionService  # noqa: E402
from specrag.retrieval.evaluation import evaluate  # noqa: E402
from specrag.retrieval.request import PrfSpec, RerankSpec, RetrieverSpec, SearchRequest  # noqa: E402
from specrag.settings import Settings  # noqa: E402
from specrag.storage.store import NotFound  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
COLLECTION = "scifact"
KINDS = ["bm25", "dense", "colbert"]
MAXSIM = "hybrid + MaxSim rerank of the top 100 (opt-in)"
HYBRID_ONLY = "hybrid, the default (retrieval/recipe.py HYBRID)"
RRF = "RRF k=60, bm25 + dense 1:1"
PREVIOUS = "hybrid as before issue #19 (z-score bm25 0.6 : dense 0.4, 100 per kind)"
FUSED_PRF = "hybrid + bm25 RM3 from the fused list, 3 documents, query weight 0.7 (opt-in)"


def requests() -> dict[str, SearchRequest]:
    """The systems compared, as the API would be asked for them (k=100 for R@100)."""

    def both(fusion: str, **kw) -> SearchRequest:
        specs = [RetrieverSpec(kind="bm25"), RetrieverSpec(kind="dense")]
        return SearchRequest(query="x", k=100, retrievers=specs, fusion=fusion, rerank=None, **kw)

    return {
        "bm25": SearchRequest(query="x", k=100, retriever="bm25", rerank=None),
        "dense (MiniLM, flat)": SearchRequest(query="x", k=100, retriever="dense", rerank=None),
        RRF: both("rrf"),
        "convex z-score 1:1": both("convex", normalization="zscore"),
        HYBRID_ONLY: SearchRequest(query="x", k=100, retriever="hybrid", rerank=None),
        PREVIOUS: SearchRequest(
            query="x",
            k=100,
            retrievers=[
                RetrieverSpec(kind="bm25", weight=0.6, k=100),
                RetrieverSpec(kind="dense", weight=0.4, k=100),
            ],
            fusion="convex",
            normalization="zscore",
            rerank=None,
        ),
        MAXSIM: SearchRequest(
            query="x", k=100, retriever="hybrid", rerank=RerankSpec(method="maxsim")
        ),
        FUSED_PRF: SearchRequest(
            query="x",
            k=100,
            retriever="hybrid",
            rerank=None,
            prf=PrfSpec(fb_docs=3, orig_weight=0.7, feedback="fused"),
        ),  # fmt: skip
    }


def per_query_ndcg(run: dict[str, list], qrels, query_ids: list[str]) -> np.ndarray:
    """nDCG@10 of every query (0 for a query with no hits), in ``query_ids`` order."""
    scored = {
        qid: {h.doc_id: float(-rank) for rank, h in enumerate(hits)} for qid, hits in run.items()
    }
    by_query = {
        m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, scored)
    }
    return np.array([by_query.get(q, 0.0) for q in query_ids])


def paired_test(a: np.ndarray, b: np.ndarray, seed: int = 0, n_boot: int = 10_000) -> dict:
    """Mean of a - b, two-sided paired t-test p, and a bootstrap 95% interval."""
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    p = float(stats.ttest_rel(a, b).pvalue) if diff.any() else 1.0
    return {"mean_diff": float(diff.mean()), "p_ttest": p, "ci95": [float(lo), float(hi)]}


def build(service: CollectionService, data, rebuild: bool) -> dict:
    stats_: dict = {}
    try:
        current = service.versions(COLLECTION).current()
    except NotFound:  # not created yet
        current = None
    if rebuild or current is None:
        started = time.perf_counter()
        service.index(COLLECTION, data.docs, KINDS, progress_bar=True)
        stats_["index_seconds"] = time.perf_counter() - started
    versions = service.versions(COLLECTION)
    manifest = versions.manifest(versions.current())
    stats_["kinds"] = {kind: entry["build_seconds"] for kind, entry in manifest["kinds"].items()}
    stats_["n_docs"] = manifest["n_docs"]
    return stats_


def latency(service: CollectionService, queries: list[str], names: list[str]) -> dict:
    """Per system: QPS, p50 and p99 of one query per call. Systems take turns query by
    query, so a load change on a shared machine falls on all of them alike."""
    reqs = requests()
    ask = {name: reqs[name].model_copy(update={"k": 10}) for name in names}
    for request in ask.values():
        for q in queries[:5]:  # warm-up: models, JIT, caches
            service.search(COLLECTION, request.model_copy(update={"query": q}))
    times: dict[str, list[float]] = {name: [] for name in names}
    for q in queries:
        for name, request in ask.items():
            t0 = time.perf_counter()
            service.search(COLLECTION, request.model_copy(update={"query": q}))
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name in names:
        ms = np.array(times[name]) * 1000
        out[name] = {
            "qps": len(ms) / ms.sum() * 1000,
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
        }
        print(f"latency {name}: {out[name]}", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--home", type=Path, default=REPO / ".cache" / "bench_retrieval_home")
    parser.add_argument("--rebuild", action="store_true", help="build a new version")
    parser.add_argument("--latency-queries", type=int, default=100)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    data = load_scifact(args.data, "test")
    service = CollectionService(Settings(home=args.home))
    service.start()
    try:
        built = build(service, data, args.rebuild)
        runs, quality, ndcg = {}, {}, {}
        for name, request in requests().items():
            _, hits = service.search_batch(COLLECTION, data.query_texts, request)
            runs[name] = dict(zip(data.query_ids, hits, strict=True))
            quality[name] = evaluate(runs[name], data.qrels)
            ndcg[name] = per_query_ndcg(runs[name], data.qrels, data.query_ids)
            print(f"{name}: {quality[name]}", file=sys.stderr)
        tests = {
            f"{MAXSIM} vs {HYBRID_ONLY}": paired_test(ndcg[MAXSIM], ndcg[HYBRID_ONLY]),
            f"{HYBRID_ONLY} vs {RRF}": paired_test(ndcg[HYBRID_ONLY], ndcg[RRF]),
            f"{HYBRID_ONLY} vs {PREVIOUS}": paired_test(ndcg[HYBRID_ONLY], ndcg[PREVIOUS]),
            f"{FUSED_PRF} vs {HYBRID_ONLY}": paired_test(ndcg[FUSED_PRF], ndcg[HYBRID_ONLY]),
        }
        lat = latency(
            service,
            data.query_texts[: args.latency_queries],
            ["bm25", "dense (MiniLM, flat)", HYBRID_ONLY, PREVIOUS, MAXSIM, FUSED_PRF],
        )
    finally:
        service.close()

    tables = [
        bench_results.table(
            f"Quality ({len(data.query_ids)} test queries)",
            ["system", "nDCG@10", "R@100", "MRR@10"],
            [[n, q["nDCG@10"], q["R@100"], q["MRR@10"]] for n, q in quality.items()],
        ),
        bench_results.table(
            "Paired tests over queries, nDCG@10 (t-test; bootstrap 95% interval of the mean "
            "difference, 10,000 resamples)",
            ["comparison", "mean difference", "95% interval", "p (paired t)", "significant"],
            [
                [
                    n,
                    t["mean_diff"],
                    f"[{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}]",
                    t["p_ttest"],
                    t["p_ttest"] < 0.05,
                ]
                for n, t in tests.items()
            ],  # fmt: skip
        ),
        bench_results.table(
            f"Latency, one query per call through CollectionService.search, k=10, one "
            f"thread ({args.latency_queries} queries; includes query encoding)",
            ["system", "QPS", "p50 ms", "p99 ms"],
            [[n, v["qps"], v["p50_ms"], v["p99_ms"]] for n, v in lat.items()],
        ),
        bench_results.table(
            f"Build of the {built['n_docs']:,} documents through CollectionService.index "
            "(every document encoded; seconds per kind)",
            ["kind", "seconds", "docs/s"],
            [[k, s, built["n_docs"] / s] for k, s in built["kinds"].items()],
        ),
    ]
    load = os.getloadavg()
    bench_results.write_result(
        "retrieval_scifact",
        "Retrieval on SciFact: retrievers, the default pipeline, MaxSim significance",
        tables,
        notes=[
            "All systems run through the service code on one version of the collection "
            "(bm25, dense MiniLM flat, colbert MiniLM int8 tokens). `hybrid` is what a request "
            "gets by default; the MaxSim rerank is opt-in because its gain is not significant.",
            f"Load average during the run: {load[0]:.1f} (a 2-core machine shared with other "
            "work: latencies are noisy, quality figures are not).",
        ],
        order=10,
        data={"quality": quality, "tests": tests, "latency": lat, "build": built},
    )


if __name__ == "__main__":
    main()
