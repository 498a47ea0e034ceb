"""Dense retrieval on the whole SciFact set (5,183 docs, 300 test queries), one run:
float flat, HNSW, IVF and binary (Hamming candidates + int8 rescoring) over the same cached
MiniLM embeddings -- nDCG@10, R@100, MRR@10, QPS and bytes per document side by side.

- QPS (1 query): single thread, one query per call as a service would, on precomputed
  query embeddings (the index alone); an end-to-end table adds MiniLM query encoding.
- bytes/doc: what the search keeps per document (flat: float32 vectors; HNSW: the faiss
  file, vectors + graph; binary: sign codes + the int8 rescoring store).
- ``--filter-sweep``: exact scan of the allowed rows vs faiss + IDSelectorBitmap, per
  mask selectivity, on SciFact and on a 100k-row synthetic copy; it sets the switch-over
  constants in ``retrieval/dense.py``.

- Late interaction, rerankers and calibration (``scripts/late_interaction.py``), in the
  same run unless ``--skip-late-interaction``: MaxSim rerank of dense / hybrid top-100 with
  fp32, int8 and 1-bit token codes, fused with first-stage scores (weights tuned on train);
  the offline default pipeline through the service code (``retrieval.pipeline`` HYBRID +
  ``MaxSimReranker``); calibrated ``min_relevance`` vs raw thresholds at matched recall; the
  ``colbert`` kind as a first stage (``--skip-colbert`` leaves it out).

More dense rows join by appending a function ``rows(bench: DenseBench) -> list[Row]`` to
``ROW_SOURCES``.

Run: nice -n 10 .venv/bin/python scripts/bench_dense.py [--data ../shared/data/scifact] [--filter-sweep]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-thread figures on a shared machine
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scifact_cache import (  # noqa: E402
    REPO,
    Row,
    SciFact,
    add_data_argument,
    document_embeddings,
    evaluate,
    format_rows,
    load_scifact,
    query_embeddings,
)

from specrag.indexing.kinds.binary.build import write_binary_index  # noqa: E402
from specrag.indexing.kinds.binary.config import BinaryConfig  # noqa: E402
from specrag.indexing.kinds.binary.search import BinarySearcher  # noqa: E402
from specrag.indexing.kinds.dense import search as dense_search  # noqa: E402
from specrag.indexing.kinds.dense.build import ivf_nlist, write_dense_index  # noqa: E402
from specrag.indexing.kinds.dense.config import DenseConfig  # noqa: E402
from specrag.indexing.kinds.dense.search import DenseSearcher  # noqa: E402

DEPTH = 100  # ranked list length: R@100 needs 100
REPEATS = 5  # timing rounds; each searcher's best one is reported


@dataclass
class DenseBench:
    """What every row source gets: the data, cached MiniLM embeddings, a scratch folder."""

    data: SciFact
    doc_emb: np.ndarray  # (n_docs, dim) float32, normalized, corpus order
    query_emb: np.ndarray  # (n_queries, dim), row i = data.query_ids[i]
    workdir: Path
    depth: int = DEPTH


def evaluate_searcher(
    name: str, bench: DenseBench, searcher, bytes_per_doc: float | None, note: str = ""
) -> Row:
    """Quality of a searcher exposing ``search_rows(query_emb, k, allowed)`` (QPS is filled
    in later by ``time_interleaved``)."""
    doc_ids = bench.data.doc_ids
    ranked = searcher.search_rows(bench.query_emb, bench.depth)
    run = {
        qid: dict(zip(doc_ids[rows].tolist(), scores.tolist(), strict=True))
        for qid, (rows, scores) in zip(bench.data.query_ids, ranked, strict=True)
    }
    return Row(name, evaluate(run, bench.data.qrels), None, None, bytes_per_doc, note)


def time_interleaved(bench: DenseBench, timed: list[tuple[Row, object]]) -> None:
    """Fill each row's QPS: one query per call and all queries in one call, in REPEATS
    rounds that visit every searcher in turn, keeping each one's best round -- on a shared
    machine, interleaving exposes all searchers to the same load."""
    q = bench.query_emb
    for _, searcher in timed:
        searcher.search_rows(q, bench.depth)  # warm-up: page in memory maps
    for _ in range(REPEATS):
        for row, searcher in timed:
            started = time.perf_counter()
            for i in range(len(q)):
                searcher.search_rows(q[i : i + 1], bench.depth)
            single = len(q) / (time.perf_counter() - started)
            started = time.perf_counter()
            searcher.search_rows(q, bench.depth)
            batch = len(q) / (time.perf_counter() - started)
            row.qps_single = max(row.qps_single or 0.0, single)
            row.qps_batch = max(row.qps_batch or 0.0, batch)


def dense_rows(bench: DenseBench) -> list[Row]:
    """float flat, HNSW, IVF, binary Hamming only, binary + int8 rescoring."""
    doc_ids = bench.data.doc_ids
    n, dim = bench.doc_emb.shape
    timed = []
    for label, config, note in [
        ("dense float32, flat (IndexFlatIP)", DenseConfig(), "exact"),
        (
            "dense float32, HNSW M=32 efSearch=128",
            DenseConfig(index="hnsw"),
            "faiss file: vectors + graph",
        ),
        (
            "dense float32, IVF nprobe=16",
            DenseConfig(index="ivf"),
            f"nlist={ivf_nlist(n, DenseConfig(index='ivf').ivf_nlist)}",
        ),
    ]:
        out = bench.workdir / f"dense-{config.index}"
        out.mkdir()
        stats = write_dense_index(bench.doc_emb, out, config)
        searcher = DenseSearcher.load(out, config, doc_ids)
        size = 4 * dim if config.index == "flat" else stats["index_bytes_per_doc"]
        timed.append((evaluate_searcher(label, bench, searcher, size, note), searcher))

    config = BinaryConfig()
    out = bench.workdir / "binary"
    out.mkdir()
    stats = write_binary_index(bench.doc_emb, out, config)
    binary = BinarySearcher.load(out, config, doc_ids)
    memory = stats["code_bytes_per_doc"] + stats["rescore_bytes_per_doc"]
    hamming = _HammingOnly(binary)
    timed.append(
        (
            evaluate_searcher(
                "binary Hamming, no rescoring",
                bench,
                hamming,
                stats["code_bytes_per_doc"],
                "sign bits only",
            ),
            hamming,
        )
    )
    n_cand = max(config.rescore_factor * bench.depth, config.min_candidates)
    note = (
        f"{stats['code_bytes_per_doc']} B codes + {stats['rescore_bytes_per_doc']} B int8 "
        f"= {stats['memory_ratio_vs_float32']:.1%} of float32"
    )
    timed.append(
        (
            evaluate_searcher(
                f"binary + int8 rescoring (top-{n_cand})", bench, binary, memory, note
            ),
            binary,
        )
    )
    time_interleaved(bench, timed)
    return [row for row, _ in timed]


class _HammingOnly:
    """The binary index's candidate stage alone, ranked by Hamming distance (context:
    what the int8 rescoring buys)."""

    def __init__(self, binary: BinarySearcher):
        self.binary = binary

    def search_rows(self, q, k, allowed=None):
        from specrag.indexing.kinds.binary.build import binarize

        dist, ids = self.binary.index.search(binarize(np.asarray(q, np.float32)), k)
        return [(i, -d.astype(np.float32)) for d, i in zip(dist, ids, strict=True)]


#: Each returns rows for the side-by-side table; later benchmarks append theirs here.
ROW_SOURCES: list[Callable[[DenseBench], list[Row]]] = [dense_rows]


def end_to_end(bench: DenseBench, n_queries: int) -> list[tuple[str, float]]:
    """QPS with MiniLM query encoding included (one query per call, single thread)."""
    texts = bench.data.query_texts[:n_queries]
    results = []
    for name, searcher in [
        (
            "dense flat",
            DenseSearcher.load(bench.workdir / "dense-flat", DenseConfig(), bench.data.doc_ids),
        ),
        (
            "binary + int8",
            BinarySearcher.load(bench.workdir / "binary", BinaryConfig(), bench.data.doc_ids),
        ),
    ]:
        searcher.search(texts[:3], bench.depth)  # warm-up: model load
        started = time.perf_counter()
        for text in texts:
            searcher.search([text], bench.depth)
        results.append((name, len(texts) / (time.perf_counter() - started)))
    return results


def filter_sweep(bench: DenseBench, n_queries: int = 50) -> list[dict]:
    """Microseconds per query: exact scan of allowed rows vs faiss with IDSelectorBitmap."""
    rng = np.random.default_rng(0)
    q = bench.query_emb[:n_queries]
    reps = -(-100_000 // len(bench.doc_emb))
    synthetic = np.tile(bench.doc_emb, (reps, 1))[:100_000]
    synthetic = synthetic + rng.normal(0, 0.02, synthetic.shape).astype(np.float32)
    synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
    setups = [
        ("scifact flat", bench.doc_emb, DenseConfig()),
        ("scifact hnsw", bench.doc_emb, DenseConfig(index="hnsw")),
    ]
    setups.append(("synthetic-100k flat", synthetic, DenseConfig()))
    out = []
    for label, emb, config in setups:
        folder = Path(tempfile.mkdtemp(dir=bench.workdir))
        write_dense_index(emb, folder, config)
        searcher = DenseSearcher.load(folder, config, np.arange(len(emb)).astype(str))
        for fraction in (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5):
            mask = rng.random(len(emb)) < fraction
            rows = np.flatnonzero(mask)
            if len(rows) < 10:
                continue

            def exact(qi, rows=rows, s=searcher):
                return dense_search.exact_search(s.embeddings, q[qi : qi + 1], 10, rows)

            def with_selector(qi, mask=mask, s=searcher):
                return s._faiss_search(q[qi : qi + 1], 10, mask)

            t_exact = _time_per_query(exact, len(q))
            t_faiss = _time_per_query(with_selector, len(q))
            short = sum(int((with_selector(qi)[1] >= 0).sum() < 10) for qi in range(len(q)))
            out.append(
                {
                    "index": label,
                    "n_docs": len(emb),
                    "fraction": fraction,
                    "allowed": len(rows),
                    "exact_us": round(t_exact * 1e6, 1),
                    "faiss_selector_us": round(t_faiss * 1e6, 1),
                    "faiss_short_queries": short,
                }
            )
            print(out[-1], flush=True)
    return out


def _time_per_query(fn: Callable[[int], object], n: int) -> float:
    """Seconds per call, best of REPEATS passes over n queries."""
    fn(0)
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for qi in range(n):
            fn(qi)
        best = min(best, (time.perf_counter() - started) / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--e2e-queries", type=int, default=100, help="queries for end-to-end QPS")
    parser.add_argument("--filter-sweep", action="store_true")
    parser.add_argument("--skip-late-interaction", action="store_true")
    parser.add_argument("--skip-colbert", action="store_true", help="no colbert first-stage rows")
    parser.add_argument("--json-out", type=Path, default=REPO / ".cache" / "bench_dense.json")
    args = parser.parse_args()

    import faiss
    import torch

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    data = load_scifact(args.data)
    bench_args = dict(
        data=data, doc_emb=document_embeddings(data), query_emb=query_embeddings(data)
    )
    print(f"SciFact: {len(data.docs)} docs, {len(data.query_ids)} test queries", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-dense-") as tmp:
        bench = DenseBench(workdir=Path(tmp), **bench_args)
        rows: list[Row] = []
        for source in ROW_SOURCES:
            rows.extend(source(bench))
        print(format_rows(rows))
        e2e = end_to_end(bench, args.e2e_queries)
        print("\nend to end (MiniLM query encoding + search, 1 query per call, 1 thread):")
        for name, qps in e2e:
            print(f"  {name}: {qps:.1f} QPS")
        sweep = filter_sweep(bench) if args.filter_sweep else []

    flat, binary = _named(rows, "dense float32, flat"), _named(rows, "binary + int8")
    checks = {
        "binary nDCG@10 / float flat": binary.metrics["nDCG@10"] / flat.metrics["nDCG@10"],
        "binary bytes/doc / float32": binary.bytes_per_doc / flat.bytes_per_doc,
        "binary QPS / float flat QPS (1 query)": binary.qps_single / flat.qps_single,
    }
    wanted = {
        "binary nDCG@10 / float flat": (">=", 0.99),
        "binary bytes/doc / float32": ("<=", 0.30),
        "binary QPS / float flat QPS (1 query)": (">=", 1.0),
    }
    print()
    for name, value in checks.items():
        op, bound = wanted[name]
        ok = value >= bound if op == ">=" else value <= bound
        print(f"{name}: {value:.4f} (want {op} {bound}) {'PASS' if ok else 'FAIL'}")
    late = {} if args.skip_late_interaction else late_interaction_rows(args)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(
        json.dumps(
            {
                "rows": [r.__dict__ for r in rows],
                "end_to_end_qps": dict(e2e),
                "checks": checks,
                "filter_sweep": sweep,
                "late_interaction": late,
            },
            indent=2,
        )
    )


def late_interaction_rows(args) -> dict:
    """MaxSim rerankers, the default pipeline, calibration and the colbert kind (one run)."""
    import late_interaction as li

    data = li.load_scifact(args.data)
    queries = li.token_cache(data.query_texts, "queries")
    docs = li.token_cache(data.doc_texts, "docs")
    results = li.run_all(data, queries, docs, skip_colbert=args.skip_colbert)
    results["served"] = li.served_pipeline(data, docs)
    print("\n" + li.report(results))
    return results


def _named(rows: list[Row], prefix: str) -> Row:
    return next(r for r in rows if r.name.startswith(prefix))


if __name__ == "__main__":
    main()
