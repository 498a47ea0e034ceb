"""Dense retrieval on SciFact (5,183 docs, 300 test queries), one run: float flat, HNSW, IVF
and binary (Hamming candidates + int8 rescoring) over the same cached MiniLM embeddings --
nDCG@10, R@100, MRR@10, QPS and bytes per document side by side.

- QPS (1 query): single thread, one query per call as a service would, on precomputed
  query embeddings (the index alone); an end-to-end table adds MiniLM query encoding.
- bytes/doc: what the search keeps per document (flat: float32 vectors; HNSW: the faiss
  file, vectors + graph; binary: sign codes + the int8 rescoring store).
- ``--filter-sweep``: exact scan of the allowed rows vs faiss + IDSelectorBitmap, per
  mask selectivity, on SciFact and on a synthetic copy of ``--sweep-docs`` rows (100k); it
  sets ``DenseConfig.exact_filter_fraction`` / ``exact_filter_min_rows``
  (``indexing/kinds/dense/config.py``).

Late interaction, rerankers and calibration are measured by ``scripts/late_interaction.py``.
More dense rows join by appending a function ``rows(bench: DenseBench) -> list[Row]`` to
``ROW_SOURCES``. Writes ``benchmarks/results/dense_scifact.json``.

Run: nice .venv/bin/python scripts/bench_dense.py [--data ../shared/data/scifact] [--filter-sweep]
Check on a slice: python scripts/scifact_cache.py --write-slice /tmp/sf --slice-docs 200, then
``--data /tmp/sf --e2e-queries 5 --filter-sweep --sweep-docs 2000 --results-dir /tmp/results``.
"""

from __future__ import annotations

import os

import bench_env

bench_env.offline_with_threads(1)  # single-thread figures on a shared machine

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_results  # noqa: E402
from scifact_cache import (  # noqa: E402
    Row,
    SciFact,
    add_data_argument,
    document_embeddings,
    evaluate,
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


SWEEP_QUERIES = 50


def filter_sweep(bench: DenseBench, n_synthetic: int, n_queries: int = SWEEP_QUERIES) -> list[dict]:
    """Microseconds per query: exact scan of allowed rows vs faiss with IDSelectorBitmap."""
    rng = np.random.default_rng(0)
    q = bench.query_emb[:n_queries]
    reps = -(-n_synthetic // len(bench.doc_emb))
    synthetic = np.tile(bench.doc_emb, (reps, 1))[:n_synthetic]
    synthetic = synthetic + rng.normal(0, 0.02, synthetic.shape).astype(np.float32)
    synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
    setups = [
        ("scifact flat", bench.doc_emb, DenseConfig()),
        ("scifact hnsw", bench.doc_emb, DenseConfig(index="hnsw")),
    ]
    setups.append((f"synthetic-{n_synthetic // 1000}k flat", synthetic, DenseConfig()))
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
            print(out[-1], file=sys.stderr, flush=True)
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


#: The binary kind's targets against float flat: (operator, bound).
CHECKS = {
    "binary nDCG@10 / float flat": (">=", 0.99),
    "binary bytes/doc / float32": ("<=", 0.30),
    "binary QPS / float flat QPS (1 query)": (">=", 1.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--e2e-queries", type=int, default=100, help="queries for end-to-end QPS")
    parser.add_argument("--filter-sweep", action="store_true")
    parser.add_argument(
        "--sweep-docs", type=int, default=100_000, help="rows of the sweep's synthetic copy"
    )
    parser.add_argument("--results-dir", type=Path, default=bench_results.RESULTS)
    args = parser.parse_args()

    import faiss
    import torch

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    data = load_scifact(args.data)
    bench_args = dict(
        data=data, doc_emb=document_embeddings(data), query_emb=query_embeddings(data)
    )
    print(f"SciFact: {len(data.docs)} docs, {len(data.query_ids)} test queries", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-dense-") as tmp:
        bench = DenseBench(workdir=Path(tmp), **bench_args)
        rows: list[Row] = []
        for source in ROW_SOURCES:
            rows.extend(source(bench))
        e2e = end_to_end(bench, args.e2e_queries)
        sweep = filter_sweep(bench, args.sweep_docs) if args.filter_sweep else []

    flat, binary = _named(rows, "dense float32, flat"), _named(rows, "binary + int8")
    checks = {
        "binary nDCG@10 / float flat": binary.metrics["nDCG@10"] / flat.metrics["nDCG@10"],
        "binary bytes/doc / float32": binary.bytes_per_doc / flat.bytes_per_doc,
        "binary QPS / float flat QPS (1 query)": binary.qps_single / flat.qps_single,
    }
    passed = {}
    for name, value in checks.items():
        op, bound = CHECKS[name]
        passed[name] = value >= bound if op == ">=" else value <= bound
        print(f"{name}: {value:.4f} (want {op} {bound})", file=sys.stderr)

    table = bench_results.table
    tables = [
        table(
            f"Dense indexes over the same MiniLM embeddings ({len(data.docs):,} documents, "
            f"{len(data.query_ids)} test queries; QPS on precomputed query embeddings, one "
            f"thread, best of {REPEATS} interleaved rounds)",
            [
                "system",
                "nDCG@10",
                "R@100",
                "MRR@10",
                "QPS (1 query)",
                "QPS (batch)",
                "bytes/doc",
                "note",
            ],
            [
                [
                    r.name,
                    r.metrics["nDCG@10"],
                    r.metrics["R@100"],
                    r.metrics["RR@10"],
                    r.qps_single,
                    r.qps_batch,
                    r.bytes_per_doc,
                    r.note,
                ]
                for r in rows
            ],
        ),
        table(
            f"End to end: MiniLM query encoding + search, one query per call, one thread "
            f"({min(args.e2e_queries, len(data.query_ids))} queries)",
            ["index", "QPS"],
            [[name, qps] for name, qps in e2e],
        ),
        table(
            "The binary kind against float flat",
            ["ratio", "value", "target", "met"],
            [
                [name, value, f"{CHECKS[name][0]} {CHECKS[name][1]}", passed[name]]
                for name, value in checks.items()
            ],
        ),
    ]
    if sweep:
        n_sweep = min(SWEEP_QUERIES, len(data.query_ids))
        tables.append(
            table(
                f"Filtered search, microseconds per query (one thread, {n_sweep} queries, "
                "k=10): exact scan of the allowed rows vs faiss with an IDSelectorBitmap; "
                "short: queries for which faiss returned fewer than 10 hits",
                [
                    "index",
                    "docs",
                    "allowed share",
                    "allowed",
                    "exact scan us",
                    "faiss selector us",
                    "faiss short queries",
                ],
                [
                    [
                        d["index"],
                        d["n_docs"],
                        d["fraction"],
                        d["allowed"],
                        d["exact_us"],
                        d["faiss_selector_us"],
                        d["faiss_short_queries"],
                    ]
                    for d in sweep
                ],
            )  # fmt: skip
        )
    load = os.getloadavg()
    bench_results.write_result(
        "dense_scifact",
        "Dense retrieval on SciFact: flat, HNSW, IVF and binary",
        tables,
        notes=[
            "Every index is written from the same cached MiniLM document embeddings "
            "(`scripts/scifact_cache.py`; documents encoded as the dense kind encodes them) "
            "and searched by the kinds' own searchers (`DenseSearcher.search_rows`, "
            "`BinarySearcher.search_rows`). The Hamming-only row is the binary kind's "
            "candidate stage alone.",
            f"Load average during the run: {load[0]:.1f} (a shared machine: QPS is noisy, "
            "quality figures are not).",
        ],
        order=20,
        data={
            "rows": [r.__dict__ for r in rows],
            "end_to_end_qps": dict(e2e),
            "checks": checks,
            "filter_sweep": sweep,
        },
        out_dir=args.results_dir,
    )


def _named(rows: list[Row], prefix: str) -> Row:
    return next(r for r in rows if r.name.startswith(prefix))


if __name__ == "__main__":
    main()
