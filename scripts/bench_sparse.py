"""Sparse retrieval benchmark: our impact index (exhaustive, BMP safe, BMP alpha) against
Lucene (Pyserini), bm25s and the authors' ``bmp`` package on SciFact, and ours alone on a
synthetic >= 1M-document corpus generated from SciFact's own term statistics (BM25 and
SPLADE-like impacts). One process, single-threaded (NUMBA/OMP threads = 1, pinned to one
CPU by default), the same queries for every system, timings interleaved over repeats.

    nice .venv/bin/python scripts/bench_sparse.py --out .cache/sparse/results.json

The synthetic generator (``synthetic_postings``): SciFact's analyzed documents are laid
end to end as one token stream T (so a uniform draw from T follows the collection
frequencies). Each synthetic document picks a random SciFact *seed* document and a length
``len(seed) * U(0.5, 1.5)``; each of its tokens is, with probability ``--topical`` (0.5), a
uniform draw from the seed's tokens (topical co-occurrence), otherwise a uniform draw from
T (collection frequency mixing). Documents are in random order (no clustering, no
reordering). BM25 impacts use the generated collection's own df/avgdl. SPLADE-like
documents add expansion terms (half as many as the document's unique terms, drawn by
collection frequency) and use flatter log-saturated weights; SPLADE-like queries keep the
SciFact query terms (weights ~1.2-2) plus twice as many expansion terms (weights ~0-0.7).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scifact_cache import add_data_argument, load_scifact  # noqa: E402

from specrag.indexing.analyzer import Analyzer  # noqa: E402
from specrag.indexing.bm25 import analyze_corpus, bm25_weights, build_bm25  # noqa: E402
from specrag.indexing.configs import BM25Config, LuceneConfig  # noqa: E402
from specrag.indexing.impact_index import ImpactIndex, quantize, term_major  # noqa: E402
from specrag.retrieval.evaluation import evaluate  # noqa: E402
from specrag.retrieval.sparse import ImpactSearcher, QueryBatch  # noqa: E402
from specrag.types import Hit  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "sparse"

# A system: queries -> list of (doc ids, scores) per query.
System = Callable[[list[str], int], list[list[Hit]]]


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------
# Timing


def time_loop(fn: Callable[[int], object], n: int) -> float:
    """Seconds to call fn(i) for every query i, one at a time."""
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - t


def interleaved_qps(
    fns: dict[str, Callable[[int], object]], n: int, repeats: int
) -> dict[str, dict]:
    """Best and median QPS of each system, systems interleaved in every repeat so that the
    load of the shared machine falls on all of them alike."""
    for fn in fns.values():  # warm-up (JIT, caches)
        for i in range(min(n, 20)):
            fn(i)
    secs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            secs[name].append(time_loop(fn, n))
    return {
        name: {"qps_best": n / min(s), "qps_median": n / float(np.median(s))}
        for name, s in secs.items()
    }


# ---------------------------------------------------------------------------------------
# SciFact


def hits_of(rows, scores, doc_ids, kind) -> list[Hit]:
    return [
        Hit(str(doc_ids[r]), float(s), {kind: float(s)}) for r, s in zip(rows, scores, strict=True)
    ]


def scifact(args) -> dict:
    data = load_scifact(args.data)
    doc_ids = data.doc_ids
    queries = data.query_texts
    nq = len(queries)
    qrels = data.qrels
    results: dict = {"n_docs": len(doc_ids), "n_queries": nq, "block_sizes": {}}
    log(f"SciFact: {len(doc_ids)} docs, {nq} queries")

    searchers = {}
    for bs in args.block_sizes:
        out = CACHE / f"scifact-bm25-bs{bs}"
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        t = time.perf_counter()
        stats = build_bm25(data.docs, out, BM25Config(block_size=bs), lambda *a: None)
        log(
            f"  built bm25 bs={bs} in {time.perf_counter() - t:.1f}s: {stats['n_postings']} postings"
        )
        searchers[bs] = ImpactSearcher.load(out, BM25Config(block_size=bs), doc_ids)
    default = searchers.get(BM25Config().block_size, searchers[args.block_sizes[0]])

    # Exactness: safe BMP == exhaustive, ids and scores, top-10 and top-100, every block size.
    exact = {}
    for bs, s in searchers.items():
        batch = s.encode_queries(queries)
        for k in (10, 100):
            s.mode = "exhaustive"
            ex = s.search_rows(batch, k)
            s.mode, s.alpha = "bmp", 1.0
            bm = s.search_rows(batch, k)
            same = all(np.array_equal(a, b) for a, b in zip(ex, bm, strict=True))
            exact[f"bs{bs}_k{k}"] = same
    results["safe_equals_exhaustive"] = exact
    log(f"  safe BMP == exhaustive (ids and scores): {exact}")

    def ours(s: ImpactSearcher, mode: str, alpha: float) -> System:
        def run(qs, k):
            s.mode, s.alpha = mode, alpha
            return s.search(qs, k)

        return run

    systems: dict[str, System] = {"ours exhaustive": ours(default, "exhaustive", 1.0)}
    for bs, s in searchers.items():
        systems[f"ours BMP safe bs={bs}"] = ours(s, "bmp", 1.0)
        systems[f"ours BMP a=0.9 bs={bs}"] = ours(s, "bmp", 0.9)
    systems.update(bm25s_system(data))
    systems.update(bmp_package_systems(default, doc_ids, args.block_sizes))
    lucene = lucene_system(data)
    if lucene:
        systems.update(lucene)

    # Quality from k=100 runs (nDCG@10, R@100).
    quality = {}
    for name, fn in systems.items():
        run = fn(queries, 100)
        quality[name] = evaluate(
            {qid: hits for qid, hits in zip(data.query_ids, run, strict=True)}, qrels
        )
    results["quality"] = quality

    qps = {}
    for k in (10, 100):
        fns = {name: (lambda i, fn=fn, k=k: fn([queries[i]], k)) for name, fn in systems.items()}
        qps[f"k{k}"] = interleaved_qps(fns, nq, args.repeats)
    # Batch mode (all 300 queries in one call) for the systems that have one.
    batch = {"ours BMP safe (batch)": lambda i: systems_batch(default, queries, 10)}
    if lucene and "lucene batch" in LUCENE_BATCH:
        batch["lucene (batch_search, 1 thread)"] = lambda i: LUCENE_BATCH["lucene batch"](
            queries, 10
        )
    batch_secs = {n: min(time_loop(f, 1) for _ in range(args.repeats)) for n, f in batch.items()}
    qps["batch_k10"] = {n: nq / s for n, s in batch_secs.items()}
    results["qps"] = qps
    for name in systems:
        q = quality[name]
        log(
            f"  {name:32s} nDCG@10 {q['nDCG@10']:.4f} R@100 {q['R@100']:.4f} "
            f"QPS k=10 {qps['k10'][name]['qps_best']:8.0f} k=100 {qps['k100'][name]['qps_best']:8.0f}"
        )
    for n, v in qps["batch_k10"].items():
        log(f"  {n:32s} batch QPS k=10 {v:8.0f}")
    return results


def systems_batch(s: ImpactSearcher, queries, k):
    s.mode, s.alpha = "bmp", 1.0
    return s.search(queries, k)


def bm25s_system(data) -> dict[str, System]:
    try:
        import bm25s
        import Stemmer
    except ImportError:
        log("  bm25s not installed: skipped")
        return {}
    stemmer = Stemmer.Stemmer("english")
    corpus_tokens = bm25s.tokenize(
        [d.full_text() for d in data.docs], stopwords="en", stemmer=stemmer, show_progress=False
    )
    retriever = bm25s.BM25(k1=0.9, b=0.4, backend="numba")
    retriever.index(corpus_tokens, show_progress=False)
    doc_ids = data.doc_ids

    def run(qs, k):
        tokens = bm25s.tokenize(qs, stopwords="en", stemmer=stemmer, show_progress=False)
        rows, scores = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [hits_of(r, s, doc_ids, "bm25s") for r, s in zip(rows, scores, strict=True)]

    return {"bm25s (numba backend)": run}


def bmp_package_systems(ours: ImpactSearcher, doc_ids, block_sizes) -> dict[str, System]:
    """The authors' Rust package over exactly our quantized impacts and query weights."""
    try:
        import bmp
    except ImportError:
        log("  bmp package not installed: skipped")
        return {}
    import scipy.sparse as sp

    ix = ours.index
    vocab = [None] * ix.n_terms
    for term, tid in ours._term_of.items():
        vocab[tid] = term
    by_doc = sp.csc_matrix((ix.impacts, ix.docs, ix.offsets), shape=(ix.n_docs, ix.n_terms)).tocsr()
    systems = {}
    for bs in block_sizes:
        path = CACHE / f"bmp-pkg-bs{bs}.bmp"
        path.unlink(missing_ok=True)
        indexer = bmp.Indexer(str(path), bs, False)
        for row in range(ix.n_docs):
            lo, hi = by_doc.indptr[row], by_doc.indptr[row + 1]
            vec = {
                vocab[t]: int(v)
                for t, v in zip(by_doc.indices[lo:hi], by_doc.data[lo:hi], strict=True)
            }
            indexer.add_document(str(row), vec)
        indexer.finish()
        searcher = bmp.Searcher(str(path))
        for alpha in (1.0, 0.9):

            def run(qs, k, searcher=searcher, alpha=alpha):
                out = []
                for q in qs:
                    counts = Counter(t for t in ours._analyzer(q) if t in ours._term_of)
                    if not counts:  # the package panics on empty queries
                        out.append([])
                        continue
                    rows, scores = searcher.search(
                        {t: float(c) for t, c in counts.items()}, k, alpha, 1.0
                    )
                    rows = [int(r) for r in rows]
                    out.append(hits_of(rows, [s * ix.scale for s in scores], doc_ids, "bmp"))
                return out

            systems[f"bmp package a={alpha} bs={bs}"] = run
    return systems


LUCENE_BATCH: dict[str, System] = {}


def lucene_system(data) -> dict[str, System]:
    try:
        from specrag.indexing.lucene import build_lucene
        from specrag.retrieval.lucene import LuceneSearcher
    except ImportError:
        return {}
    out = CACHE / "scifact-lucene"
    try:
        if not (out / "index").exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            build_lucene(data.docs, out, LuceneConfig(), lambda *a: None)
        searcher = LuceneSearcher.load(out, LuceneConfig(threads=1), data.doc_ids)
    except Exception as e:  # report and go on: Lucene is a comparison point
        log(f"  lucene unavailable: {type(e).__name__}: {e}")
        return {}
    LUCENE_BATCH["lucene batch"] = searcher.search_batch
    return {"lucene (pyserini)": searcher.search}


# ---------------------------------------------------------------------------------------
# Synthetic corpus


def scifact_stream(data):
    """SciFact's analyzed token stream, per-doc starts/lengths, vocab, query term ids."""
    analyzer = Analyzer()
    vocab, term_ids, doc_ids, tfs, lengths = analyze_corpus(data.docs, analyzer)
    tokens = np.repeat(term_ids.astype(np.int32), tfs)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    term_of = {t: i for i, t in enumerate(vocab)}
    queries = []
    for q in data.query_texts:
        c = Counter(t for t in analyzer(q) if t in term_of)
        queries.append(
            (np.array([term_of[t] for t in c], np.int64), np.array(list(c.values()), np.float64))
        )
    return tokens, starts, lengths, len(vocab), queries


def generate_docs(tokens, starts, lengths, n_docs, topical, rng, order, chunk=100_000):
    """Yield (n, local doc of each token, term ids, doc lengths) chunks, doc-major.
    ``order="clustered"`` sorts documents by seed: documents of one topic are adjacent."""
    nonempty = np.flatnonzero(lengths > 0)
    all_seeds = rng.choice(nonempty, n_docs)
    if order == "clustered":
        all_seeds = np.sort(all_seeds)
    for lo in range(0, n_docs, chunk):
        n = min(chunk, n_docs - lo)
        seeds = all_seeds[lo : lo + n]
        dl = np.maximum(1, np.rint(lengths[seeds] * rng.uniform(0.5, 1.5, n))).astype(np.int64)
        owner = np.repeat(np.arange(n, dtype=np.int64), dl)
        topic = rng.random(len(owner)) < topical
        pos = np.where(
            topic,
            starts[seeds][owner]
            + (rng.random(len(owner)) * lengths[seeds][owner]).astype(np.int64),
            (rng.random(len(owner)) * len(tokens)).astype(np.int64),
        )
        yield n, owner, tokens[pos], dl


def synthetic_postings(data, n_docs: int, kind: str, topical: float, seed: int, order: str):
    """(n_docs, n_terms, offsets, docs, impacts, scale, query batch) for kind bm25|splade."""
    rng = np.random.default_rng(seed)
    tokens, starts, lengths, n_terms, sci_queries = scifact_stream(data)
    parts_t, parts_d, parts_tf, all_dl = [], [], [], []
    base = 0
    for n, owner, terms, dl in generate_docs(tokens, starts, lengths, n_docs, topical, rng, order):
        keys, tf = np.unique(owner * n_terms + terms, return_counts=True)
        d, t = np.divmod(keys, n_terms)
        if kind == "splade":  # expansion terms, by collection frequency
            n_unique = np.bincount(d, minlength=n)
            n_exp = np.rint(n_unique * 0.5).astype(np.int64)
            exp_owner = np.repeat(np.arange(n, dtype=np.int64), n_exp)
            exp_terms = tokens[(rng.random(len(exp_owner)) * len(tokens)).astype(np.int64)]
            all_keys = np.concatenate([keys, exp_owner * n_terms + exp_terms])
            all_tf = np.concatenate([tf, np.zeros(len(exp_owner), tf.dtype)])
            by_key = np.argsort(all_keys, kind="stable")  # a document's own term sorts first
            all_keys, all_tf = all_keys[by_key], all_tf[by_key]
            first = np.ones(len(all_keys), dtype=bool)
            first[1:] = all_keys[1:] != all_keys[:-1]
            keys, tf = all_keys[first], all_tf[first]
            d, t = np.divmod(keys, n_terms)
        parts_t.append(t.astype(np.int32))
        parts_d.append((d + base).astype(np.int32))
        parts_tf.append(tf.astype(np.int32))
        all_dl.append(dl)
        base += n
        log(f"    generated {base:,} docs")
    term_ids = np.concatenate(parts_t)
    doc_ids = np.concatenate(parts_d)
    tfs = np.concatenate(parts_tf)
    del parts_t, parts_d, parts_tf
    dl = np.concatenate(all_dl)
    df = np.bincount(term_ids, minlength=n_terms)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    if kind == "bm25":
        weights = bm25_weights(tfs, dl[doc_ids], df[term_ids], n_docs, float(dl.mean()), 0.9, 0.4)
        batch = QueryBatch.from_lists(
            [q[0] for q in sci_queries], [q[1] for q in sci_queries], n_terms
        )
    else:
        z = np.where(
            tfs > 0,
            0.8 + 0.5 * np.log(np.maximum(tfs, 1)) + 0.25 * idf[term_ids],
            0.2 + 0.1 * idf[term_ids],
        ) + rng.normal(0, 0.3, len(tfs))
        weights = np.log1p(np.maximum(z, 0.0))
        keep = weights > 0
        term_ids, doc_ids, weights = term_ids[keep], doc_ids[keep], weights[keep]
        q_terms, q_weights = [], []
        for t, _ in sci_queries:
            exp = tokens[(rng.random(2 * len(t)) * len(tokens)).astype(np.int64)]
            exp = np.setdiff1d(np.unique(exp), t)
            w = np.log1p(np.maximum(1.0 + 0.3 * idf[t] + rng.normal(0, 0.3, len(t)), 0))
            we = np.log1p(np.maximum(rng.normal(0.3, 0.3, len(exp)), 0))
            q_terms.append(np.concatenate([t, exp]))
            q_weights.append(np.concatenate([w, we]))
        batch = QueryBatch.from_lists(q_terms, q_weights, n_terms)
    del tfs
    impacts, scale = quantize(weights.astype(np.float32), 8)
    del weights
    offsets, docs, impacts = term_major(term_ids, doc_ids, impacts, n_terms)
    return n_terms, offsets, docs, impacts, scale, batch


def synthetic(args, data) -> dict:
    out = {}
    nq_time = args.synthetic_queries
    for kind, order in [(k, o) for k in args.synthetic_kinds for o in args.orders]:
        log(f"Synthetic {kind}-like corpus, {order} order: {args.synthetic_docs:,} docs")
        t = time.perf_counter()
        n_terms, offsets, docs, impacts, scale, batch = synthetic_postings(
            data, args.synthetic_docs, kind, args.topical, args.seed, order
        )
        gen_s = time.perf_counter() - t
        per_query = [
            QueryBatch(
                batch.offsets[i : i + 2] - batch.offsets[i],
                batch.terms[batch.offsets[i] : batch.offsets[i + 1]],
                batch.weights[batch.offsets[i] : batch.offsets[i + 1]],
            )
            for i in range(len(batch))
        ]
        res = {
            "n_docs": args.synthetic_docs,
            "n_postings": int(len(docs)),
            "mean_query_terms": float(np.diff(batch.offsets).mean()),
            "generate_seconds": round(gen_s, 1),
            "block_sizes": {},
        }
        log(f"  {len(docs):,} postings, {res['mean_query_terms']:.1f} terms/query, {gen_s:.0f}s")
        for bs in args.synthetic_block_sizes:
            t = time.perf_counter()
            index = ImpactIndex.from_postings(
                args.synthetic_docs, offsets, docs, impacts, block_size=bs, scale=scale,
                meta={"encoder": kind},
            )  # fmt: skip
            build_s = time.perf_counter() - t
            s = ImpactSearcher(index, np.arange(index.n_docs), mode="bmp")
            row = {"block_max_seconds": round(build_s, 1), "index_bytes": index.nbytes(),
                   "block_table_bytes": int(index.block_ids.nbytes + index.block_max.nbytes
                                            + index.block_starts.nbytes + index.block_offsets.nbytes)}  # fmt: skip
            for k in (10, 100):
                s.mode, s.alpha = "exhaustive", 1.0
                ex = s.search_rows(batch, k)
                s.mode, s.alpha = "bmp", 1.0
                safe = s.search_rows(batch, k)
                safe_blocks = float(s.last_blocks_scored.mean())
                s.alpha = 0.9
                approx = s.search_rows(batch, k)
                approx_blocks = float(s.last_blocks_scored.mean())
                recall = np.mean([
                    len(set(approx[0][q, : approx[2][q]]) & set(safe[0][q, : safe[2][q]]))
                    / max(1, safe[2][q])
                    for q in range(len(batch))
                ])  # fmt: skip

                def mode_fn(mode, alpha, k=k, searcher=s, queries=per_query):
                    def fn(qi):
                        searcher.mode, searcher.alpha = mode, alpha
                        return searcher.search_rows(queries[qi], k)

                    return fn

                qps = interleaved_qps(
                    {
                        "exhaustive": mode_fn("exhaustive", 1.0),
                        "bmp_safe": mode_fn("bmp", 1.0),
                        "bmp_a0.9": mode_fn("bmp", 0.9),
                    },
                    nq_time,
                    args.repeats,
                )
                row[f"k{k}"] = {
                    "safe_equals_exhaustive": all(
                        np.array_equal(a, b) for a, b in zip(ex, safe, strict=True)
                    ),
                    "recall_a0.9_vs_safe": float(recall),
                    "blocks_scored_safe": safe_blocks,
                    "blocks_scored_a0.9": approx_blocks,
                    "n_blocks": index.n_blocks,
                    "qps": qps,
                }
                log(
                    f"  bs={bs} k={k}: QPS exhaustive {qps['exhaustive']['qps_best']:.0f}, "
                    f"safe {qps['bmp_safe']['qps_best']:.0f} "
                    f"({qps['bmp_safe']['qps_best'] / qps['exhaustive']['qps_best']:.1f}x), "
                    f"a=0.9 {qps['bmp_a0.9']['qps_best']:.0f}; recall@{k} a=0.9 vs safe {recall:.4f}; "
                    f"blocks scored {safe_blocks:.0f}/{index.n_blocks}; "
                    f"safe==exhaustive {row[f'k{k}']['safe_equals_exhaustive']}"
                )
            log(f"  bs={bs}: index {index.nbytes() / 2**20:.0f} MiB "
                f"(block-max table {row['block_table_bytes'] / 2**20:.0f} MiB)")  # fmt: skip
            res["block_sizes"][str(bs)] = row
            del index, s
        out[f"{kind}-{order}"] = res
        del offsets, docs, impacts
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument("--block-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic-docs", type=int, default=1_000_000)
    parser.add_argument("--synthetic-queries", type=int, default=300)
    parser.add_argument("--synthetic-block-sizes", type=int, nargs="+", default=[64])
    parser.add_argument("--synthetic-kinds", nargs="+", default=["bm25", "splade"])
    parser.add_argument("--orders", nargs="+", default=["random", "clustered"])
    parser.add_argument("--topical", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--pin-cpu", type=int, default=0, help="CPU to pin to; -1: no pinning")
    parser.add_argument("--out", type=Path, default=CACHE / "results.json")
    args = parser.parse_args()
    if args.pin_cpu >= 0:
        os.sched_setaffinity(0, {args.pin_cpu})
    CACHE.mkdir(parents=True, exist_ok=True)
    results = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_scifact:
        results["scifact"] = scifact(args)
    if not args.skip_synthetic:
        results["synthetic"] = synthetic(args, load_scifact(args.data))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    log(f"results written to {args.out}")


if __name__ == "__main__":
    main()
