"""Sparse retrieval benchmark: our impact index (exhaustive, BMP safe, BMP alpha) against
Lucene (Pyserini), bm25s and the authors' ``bmp`` package on SciFact, and ours alone on a
synthetic >= 1M-document corpus generated from SciFact's own term statistics (BM25 and
SPLADE-like impacts). One process, single-threaded (NUMBA/OMP threads = 1, pinned to one
CPU by default), the same queries for every system, timings interleaved over repeats.

    nice .venv/bin/python scripts/bench_sparse.py --out .cache/sparse/results.json

With ``--collection-dir DIR --queries FILE`` it measures instead a collection that
``specrag index`` built (exhaustive vs BMP safe vs alpha, the same figures as for a synthetic
corpus), its queries encoded by the index's own encoder: real SPLADE output in place of
the SPLADE-like generator, wherever the model can be downloaded (docs/benchmarks.md).

With ``--masks 0.5 0.05 0.005`` the synthetic corpora are searched filtered instead:
random masks keeping those shares of the documents, exhaustive vs BMP with its fallback
rules vs BMP with every fallback off, and the path the rules chose (``sparse_filtered``)::

    nice .venv/bin/python scripts/bench_sparse.py --skip-scifact --synthetic-docs 200000 \
        --synthetic-kinds bm25 --orders bp --synthetic-block-sizes 32 --masks 0.5 0.05 0.005

Synthetic generators (``synthetic_postings``; ``--generator``). Both draw from SciFact's
analyzed documents (title + text, our analyzer); each synthetic document picks a random
SciFact *seed* document (uniform over non-empty ones).

- ``dropout`` (default; the issue's "resampled documents with term dropout"): the seed's
  tokens, each kept with probability ``--keep`` (0.7), plus Binomial(len(seed), ``--noise``
  = 0.1) tokens drawn from SciFact's whole token stream (collection frequency). SPLADE-like
  documents also carry their seed's *expansion set*, fixed per seed as an encoder's would
  be: ``--expand`` (0.5) x the seed's distinct terms, each a uniform draw among the distinct
  terms of one of the seed's 10 nearest SciFact neighbours (tf-idf cosine), not already in
  the seed; a copy keeps each expansion with probability ``--keep``. Weight noise is fixed
  per (seed, term) (sd 0.3) plus a small per-copy part (sd 0.1). SPLADE-like queries add
  2 x (query terms) expansion terms drawn among the distinct terms of the query's top-3
  SciFact documents by tf-idf (pseudo-relevance feedback).
- ``mix`` (the first, harsher generator, kept as a pessimistic case): length
  ``len(seed) * U(0.5, 1.5)``, each token with probability ``--topical`` (0.5) a uniform
  draw from the seed's tokens, otherwise from the whole token stream; SPLADE-like
  expansions (document and query) drawn by collection frequency; independent weight noise
  (sd 0.3) per posting.

BM25 impacts use the generated collection's own df/avgdl (k1=0.9, b=0.4, 8 bits).
SPLADE-like weights are flatter and log-saturated: ``log1p(relu(0.8 + 0.5 ln tf + 0.25 idf
+ noise))`` for own terms, ``log1p(relu(0.2 + 0.1 idf + noise))`` for expansions; queries
keep the analyzed SciFact query terms (weights ~1.2-2) and expansion weights ~0-0.7.
Queries: the 300 SciFact test queries (exactness and recall over all 300, QPS over the
first ``--synthetic-queries``). Each corpus is generated once (cached under
.cache/sparse/synthetic/) and stored in three orders: ``random`` (generation order),
``bp`` (recursive graph bisection, ``indexing/reorder.py``, leaves of one block; its
permutation is cached with the seconds it took) and ``seed`` (documents sorted by seed: an
idealized clustering, for reference). The results of every order must be identical.
"""

from __future__ import annotations

import os

import bench_env

bench_env.offline_with_threads(1)

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
import bench_results  # noqa: E402
from scifact_cache import add_data_argument, load_scifact  # noqa: E402

from specrag.indexing.kinds.bm25.analyzer import Analyzer  # noqa: E402
from specrag.indexing.kinds.bm25.build import analyze_corpus, bm25_weights, build_bm25  # noqa: E402
from specrag.indexing.kinds.bm25.config import BM25Config  # noqa: E402
from specrag.indexing.kinds.bm25.search import BM25Searcher  # noqa: E402
from specrag.indexing.kinds.impact.bmp import PATH_BMP, PATH_PROBE, PATH_UP_FRONT  # noqa: E402
from specrag.indexing.kinds.impact.config import ImpactConfig  # noqa: E402
from specrag.indexing.kinds.impact.index import ImpactIndex, quantize, term_major  # noqa: E402
from specrag.indexing.kinds.impact.reorder import apply_order, bp_order  # noqa: E402
from specrag.indexing.kinds.impact.search import ImpactSearcher, QueryBatch  # noqa: E402
from specrag.indexing.kinds.lucene.config import LuceneConfig  # noqa: E402
from specrag.retrieval.evaluation import evaluate  # noqa: E402
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
    load of the shared machine falls on all of them alike. The order rotates from repeat to
    repeat and each system waits a moment first: the systems timed right after Lucene ran
    ~2x slower while the JVM's background threads shared the pinned CPU."""
    for fn in fns.values():  # warm-up (JIT, caches)
        for i in range(min(n, 20)):
            fn(i)
    names = list(fns)
    secs: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        shift = r * len(names) // max(repeats, 1)
        for name in names[shift:] + names[:shift]:
            time.sleep(0.2)
            secs[name].append(time_loop(fns[name], n))
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
    """Ours, bm25s and Lucene on SciFact, in one process pinned to one CPU: quality from
    k=100 runs; batch throughput (all queries in one call, each system in its own runtime:
    our numba kernels, bm25s's numba backend, Lucene's ``batch_search`` inside the JVM with
    1 thread); and one query per call. Each row names the kernel that ran."""
    data = load_scifact(args.data)
    doc_ids = data.doc_ids
    queries = data.query_texts
    nq = len(queries)
    log(f"SciFact: {len(doc_ids)} docs, {nq} queries")

    bs = args.block_sizes[0]
    out = CACHE / f"scifact-bm25-bs{bs}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t = time.perf_counter()
    stats = build_bm25(data.docs, out, BM25Config(block_size=bs), lambda *a: None)
    log(f"  built bm25 bs={bs} in {time.perf_counter() - t:.1f}s: {stats['n_postings']} postings")
    s = BM25Searcher.load(out, BM25Config(block_size=bs), doc_ids)
    default_cfg = s.config
    n_blocks = s.index.n_blocks
    default_kernel = "bmp" if n_blocks >= default_cfg.bmp_min_blocks else "exhaustive"
    configs = {
        "exhaustive": default_cfg.with_changes(mode="exhaustive"),
        "default": default_cfg,
        "bmp": default_cfg.with_changes(bmp_min_blocks=0),  # the block kernel, forced
    }
    encoded = s.encode_queries(queries)

    # Exactness: the forced block kernel == exhaustive, ids and scores, top-10 and top-100.
    exact = {}
    for k in (10, 100):
        s.config = configs["exhaustive"]
        ex = s.search_rows(encoded, k)
        s.config = configs["bmp"]
        bm = s.search_rows(encoded, k)
        exact[k] = all(np.array_equal(a, b) for a, b in zip(ex, bm, strict=True))
    log(f"  BMP kernel == exhaustive (ids and scores): {exact}")

    def ours(name: str) -> System:
        def run(qs, k):
            s.config = configs[name]
            return s.search(qs, k)

        return run

    def ours_encoded(name: str):
        def run(k):
            s.config = configs[name]
            return s.search_rows(encoded, k)

        return run

    label = {
        "default": f"ours, default config ({default_kernel} kernel: {n_blocks} blocks of {bs}, "
        f"bmp_min_blocks {default_cfg.bmp_min_blocks})",
        "bmp": f"ours, BMP block kernel forced (bmp_min_blocks 0, block {bs})",
        "exhaustive": "ours, exhaustive kernel (mode exhaustive)",
    }
    systems: dict[str, System] = {label[n]: ours(n) for n in ("default", "bmp", "exhaustive")}
    bm25s_run, bm25s_parts = bm25s_system(data)
    if bm25s_run:
        systems["bm25s (numba backend, 1 thread)"] = bm25s_run
    lucene = lucene_searcher(data)
    if lucene is not None:
        systems["Lucene (Pyserini)"] = lucene.search

    quality = {}
    for name, fn in systems.items():
        run = fn(queries, 100)
        quality[name] = evaluate(dict(zip(data.query_ids, run, strict=True)), data.qrels)

    # Batch: every query in one call. Systems interleaved over repeats; best of repeats.
    batch: dict[str, tuple[str, Callable[[int], object]]] = {
        label["default"]: ("analysis + search", lambda k: ours("default")(queries, k)),
        label["bmp"]: ("analysis + search", lambda k: ours("bmp")(queries, k)),
        label["default"] + " ": ("search of analyzed queries", ours_encoded("default")),
        label["bmp"] + " ": ("search of analyzed queries", ours_encoded("bmp")),
    }
    if bm25s_run:
        tokenize, retrieve = bm25s_parts
        tokens = tokenize(queries)
        batch["bm25s (numba backend, 1 thread)"] = (
            "tokenize + retrieve",
            lambda k: bm25s_run(queries, k),
        )
        batch["bm25s (numba backend, 1 thread) "] = (
            "retrieve of tokenized queries",
            lambda k: retrieve(tokens, k),
        )
    if lucene is not None:
        batch["Lucene (Pyserini batch_search, 1 thread)"] = (
            "one JVM call: analysis + search inside the JVM",
            lambda k: lucene.batch_search_java(queries, k),
        )
        batch["Lucene (Pyserini batch_search, 1 thread) "] = (
            "the same + results read back through pyjnius",
            lambda k: lucene.search_batch(queries, k),
        )
    batch_qps = {}
    for k in (10, 100):
        fns = {name: (lambda i, fn=fn, k=k: fn(k)) for name, (_, fn) in batch.items()}
        secs = interleaved_seconds(fns, args.batch_repeats)
        batch_qps[k] = {name: nq / sec for name, sec in secs.items()}

    per_query = {}
    for k in (10, 100):
        fns = {name: (lambda i, fn=fn, k=k: fn([queries[i]], k)) for name, fn in systems.items()}
        per_query[k] = interleaved_qps(fns, nq, args.repeats)

    for name, q in quality.items():
        log(f"  {name:70s} nDCG@10 {q['nDCG@10']:.4f} R@100 {q['R@100']:.4f}")
    for name, qps in batch_qps[10].items():
        log(f"  batch {name:64s} {batch[name][0]:45s} QPS k=10 {qps:8.0f} k=100 "
            f"{batch_qps[100][name]:8.0f}")  # fmt: skip

    tables = [
        bench_results.table(
            "Quality (300 test queries, from k=100 runs)",
            ["system", "nDCG@10", "R@100"],
            [[n, q["nDCG@10"], q["R@100"]] for n, q in quality.items()],
        ),
        bench_results.table(
            "Batch: all 300 queries in one call, one CPU (queries per second, best of "
            f"{args.batch_repeats} interleaved repeats)",
            ["system", "what is timed", "QPS k=10", "QPS k=100"],
            [
                [n.strip(), what, batch_qps[10][n], batch_qps[100][n]]
                for n, (what, _) in batch.items()
            ],
        ),
        bench_results.table(
            "One query per call (a service's request path; Lucene: one Python-to-JVM call per "
            "query)",
            ["system", "QPS k=10", "QPS k=100"],
            [[n, per_query[10][n]["qps_best"], per_query[100][n]["qps_best"]] for n in systems],
        ),
        bench_results.table(
            "BMP block kernel (forced) == exhaustive kernel, ids and scores, 300 queries",
            ["k", "identical"],
            [[k, same] for k, same in exact.items()],
        ),
    ]
    return {
        "tables": tables,
        "data": {"quality": quality, "batch_qps": batch_qps, "per_query_qps": per_query},
        "n_blocks": n_blocks,
        "default_kernel": default_kernel,
    }


def interleaved_seconds(fns: dict[str, Callable[[int], object]], repeats: int) -> dict[str, float]:
    """Best seconds of one call of each function, interleaved over repeats (after five
    warm-up calls each: JIT compilers, the JVM's included), so the load of a shared machine
    falls on all of them alike."""
    for fn in fns.values():
        for _ in range(5):
            fn(0)
    secs: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(0.2)
            t = time.perf_counter()
            fns[name](0)
            secs[name].append(time.perf_counter() - t)
    return {name: min(s) for name, s in secs.items()}


def bm25s_system(data):
    """bm25s over the same texts (its stemmer and stopwords, k1 0.9, b 0.4, numba backend,
    1 thread): ``(run, (tokenize, retrieve))`` or ``(None, None)`` when not installed."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        log("  bm25s not installed: skipped")
        return None, None
    stemmer = Stemmer.Stemmer("english")
    corpus_tokens = bm25s.tokenize(
        [d.full_text() for d in data.docs], stopwords="en", stemmer=stemmer, show_progress=False
    )
    retriever = bm25s.BM25(k1=0.9, b=0.4, backend="numba")
    retriever.index(corpus_tokens, show_progress=False)
    doc_ids = data.doc_ids

    def tokenize(qs):
        return bm25s.tokenize(qs, stopwords="en", stemmer=stemmer, show_progress=False)

    def retrieve(tokens, k):
        return retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)

    def run(qs, k):
        rows, scores = retrieve(tokenize(qs), k)
        return [hits_of(r, s, doc_ids, "bm25s") for r, s in zip(rows, scores, strict=True)]

    return run, (tokenize, retrieve)


def lucene_searcher(data):
    """Lucene BM25 through Pyserini (extra ``lucene``) over the same texts, searching with
    1 thread; None when Pyserini or its JVM is missing."""
    try:
        from specrag.indexing.kinds.lucene.build import build_lucene
        from specrag.indexing.kinds.lucene.search import LuceneSearcher
    except ImportError:
        return None
    out = CACHE / "scifact-lucene"
    try:
        if not (out / "index").exists():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            build_lucene(data.docs, out, LuceneConfig(), lambda *a: None)
        return LuceneSearcher.load(out, LuceneConfig(threads=1), data.doc_ids)
    except Exception as e:  # report and go on: Lucene is a comparison point
        log(f"  lucene unavailable: {type(e).__name__}: {e}")
        return None


# ---------------------------------------------------------------------------------------
# Synthetic corpus


# ---------------------------------------------------------------------------------------
# Synthetic corpus (see the module docstring for the generators)

GENERATOR_VERSION = 3  # part of the cache key: bump when a generator changes


class SciFactStats:
    """What the generators draw from: SciFact's analyzed token stream T (documents end to
    end), each document's span of T, its nearest SciFact neighbours (tf-idf cosine), the
    analyzed test queries and, per query, its top BM25-like SciFact documents."""

    def __init__(self, data, n_neighbours: int = 10, n_feedback: int = 3):
        import scipy.sparse as sp

        analyzer = Analyzer()
        vocab, term_ids, doc_ids, tfs, lengths = analyze_corpus(data.docs, analyzer)
        self.n_terms = len(vocab)
        self.doc_terms = term_ids  # each document's distinct terms (doc-major)
        self.doc_terms_offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc_ids, minlength=len(lengths)), out=self.doc_terms_offsets[1:])
        self.tokens = np.repeat(term_ids.astype(np.int32), tfs)
        self.lengths = lengths
        self.starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=self.starts[1:])
        n = len(lengths)
        df = np.bincount(term_ids, minlength=self.n_terms)
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5))
        x = sp.csr_matrix(
            (np.log1p(tfs) * self.idf[term_ids], (doc_ids, term_ids)), shape=(n, self.n_terms)
        )
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        x = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x
        sim = (x @ x.T).toarray()
        np.fill_diagonal(sim, -np.inf)
        sim[:, lengths == 0] = -np.inf
        self.neighbours = np.argsort(-sim, axis=1)[:, :n_neighbours]
        del sim
        term_of = {t: i for i, t in enumerate(vocab)}
        self.queries = []
        q_rows, q_cols = [], []
        for qi, q in enumerate(data.query_texts):
            c = Counter(t for t in analyzer(q) if t in term_of)
            t = np.array([term_of[w] for w in c], np.int64)
            self.queries.append((t, np.array(list(c.values()), np.float64)))
            q_rows += [qi] * len(t)
            q_cols += t.tolist()
        qm = sp.csr_matrix(
            (np.ones(len(q_rows)), (q_rows, q_cols)), shape=(len(self.queries), self.n_terms)
        )
        prf = (qm @ x.T).toarray()
        prf[:, lengths == 0] = -np.inf
        self.feedback = np.argsort(-prf, axis=1)[:, :n_feedback]

    def draw_stream(self, rng, n: int) -> np.ndarray:
        """n tokens by collection frequency."""
        return self.tokens[(rng.random(n) * len(self.tokens)).astype(np.int64)]

    def draw_distinct_from_docs(self, rng, docs: np.ndarray) -> np.ndarray:
        """One uniform draw among the distinct terms of each given SciFact document (a
        related term, not weighted by how often the document repeats it)."""
        lo = self.doc_terms_offsets[docs]
        n = self.doc_terms_offsets[docs + 1] - lo
        return self.doc_terms[lo + (rng.random(len(docs)) * n).astype(np.int64)].astype(np.int32)


def seed_expansions(st: SciFactStats, rng, expand: float):
    """SPLADE-like expansion terms of every SciFact document, fixed per document (as an
    encoder's would be): ``expand`` x its unique terms, each a token of one of its nearest
    neighbours, not already in it. Returns a CSR (offsets, terms) over SciFact docs."""
    n = len(st.lengths)
    owner_tok = np.repeat(np.arange(n, dtype=np.int64), st.lengths)
    own = np.unique(owner_tok * st.n_terms + st.tokens)
    n_unique = np.bincount(own // st.n_terms, minlength=n)
    n_exp = np.rint(n_unique * expand).astype(np.int64)
    owner = np.repeat(np.arange(n, dtype=np.int64), n_exp)
    nb = st.neighbours[owner, rng.integers(0, st.neighbours.shape[1], len(owner))]
    keys = np.unique(owner * st.n_terms + st.draw_distinct_from_docs(rng, nb))
    keys = keys[~np.isin(keys, own)]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // st.n_terms, minlength=n), out=offsets[1:])
    return offsets, (keys % st.n_terms).astype(np.int32)


def hash_normal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A standard normal draw that depends only on the pair (a, b): deterministic noise."""
    from scipy.special import ndtri

    h = (a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        b.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    )
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    u = ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return ndtri(u)


def generate_docs(st: SciFactStats, seeds, args, rng, chunk=100_000):
    """Yield (n, local doc of each token, term ids, doc lengths) chunks, doc-major."""
    for lo in range(0, len(seeds), chunk):
        s = seeds[lo : lo + chunk]
        n = len(s)
        if args.generator == "dropout":
            owner = np.repeat(np.arange(n, dtype=np.int64), st.lengths[s])
            first = np.repeat(st.starts[s], st.lengths[s])
            local = np.arange(len(owner)) - np.repeat(
                np.cumsum(st.lengths[s]) - st.lengths[s], st.lengths[s]
            )
            keep = rng.random(len(owner)) < args.keep
            owner, pos = owner[keep], (first + local)[keep]
            terms = st.tokens[pos]
            n_noise = rng.binomial(st.lengths[s], args.noise)
            noise_owner = np.repeat(np.arange(n, dtype=np.int64), n_noise)
            owner = np.concatenate([owner, noise_owner])
            terms = np.concatenate([terms, st.draw_stream(rng, len(noise_owner))])
            dl = np.bincount(owner, minlength=n)
        else:  # "mix": the harsher generator of the first runs
            dl = np.maximum(1, np.rint(st.lengths[s] * rng.uniform(0.5, 1.5, n))).astype(np.int64)
            owner = np.repeat(np.arange(n, dtype=np.int64), dl)
            topic = rng.random(len(owner)) < args.topical
            seed_pos = st.starts[s][owner] + (rng.random(len(owner)) * st.lengths[s][owner]).astype(
                np.int64
            )
            terms = np.where(topic, st.tokens[seed_pos], st.draw_stream(rng, len(owner)))
        yield n, owner, terms, dl


def synthetic_postings(st: SciFactStats, args, kind: str):
    """Doc-major (term_ids, doc_ids, impacts), scale, seeds and the query batch of one
    synthetic corpus, in generation (random) order."""
    rng = np.random.default_rng(args.seed)
    n_docs, n_terms = args.synthetic_docs, st.n_terms
    seeds = rng.choice(np.flatnonzero(st.lengths > 0), n_docs)
    seed_exp = (
        seed_expansions(st, rng, args.expand)
        if kind == "splade" and args.generator == "dropout"
        else None
    )
    parts_t, parts_d, parts_tf, all_dl = [], [], [], []
    base = 0
    for n, owner, terms, dl in generate_docs(st, seeds, args, rng):
        keys, tf = np.unique(owner * n_terms + terms, return_counts=True)
        d, t = np.divmod(keys, n_terms)
        if kind == "splade":  # expansion terms: topical (neighbours) or by collection freq.
            n_exp = np.rint(np.bincount(d, minlength=n) * args.expand).astype(np.int64)
            exp_owner = np.repeat(np.arange(n, dtype=np.int64), n_exp)
            if args.generator == "dropout":  # the seed's own expansions, with dropout
                exp_off, exp_terms_of_seed = seed_exp
                s = seeds[base : base + n]
                per_seed = exp_off[s + 1] - exp_off[s]
                exp_owner = np.repeat(np.arange(n, dtype=np.int64), per_seed)
                local = np.arange(len(exp_owner)) - np.repeat(
                    np.cumsum(per_seed) - per_seed, per_seed
                )
                exp_terms = exp_terms_of_seed[np.repeat(exp_off[s], per_seed) + local]
                kept = rng.random(len(exp_owner)) < args.keep
                exp_owner, exp_terms = exp_owner[kept], exp_terms[kept]
            else:
                exp_terms = st.draw_stream(rng, len(exp_owner))
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
        q_terms = [q[0] for q in st.queries]
        q_weights = [q[1] for q in st.queries]
    else:
        if args.generator == "dropout":  # noise fixed per (seed, term), small per copy
            noise = 0.3 * hash_normal(seeds[doc_ids], term_ids) + rng.normal(0, 0.1, len(tfs))
        else:
            noise = rng.normal(0, 0.3, len(tfs))
        z = (
            np.where(
                tfs > 0,
                0.8 + 0.5 * np.log(np.maximum(tfs, 1)) + 0.25 * idf[term_ids],
                0.2 + 0.1 * idf[term_ids],
            )
            + noise
        )
        weights = np.log1p(np.maximum(z, 0.0))
        keep = weights > 0
        term_ids, doc_ids, weights = term_ids[keep], doc_ids[keep], weights[keep]
        q_terms, q_weights = [], []
        for qi, (t, _) in enumerate(st.queries):
            if args.generator == "dropout":  # pseudo-relevance feedback: top SciFact docs
                exp = st.draw_distinct_from_docs(rng, rng.choice(st.feedback[qi], 2 * len(t)))
            else:
                exp = st.draw_stream(rng, 2 * len(t))
            exp = np.setdiff1d(np.unique(exp), t)
            w = np.log1p(np.maximum(1.0 + 0.3 * idf[t] + rng.normal(0, 0.3, len(t)), 0))
            we = np.log1p(np.maximum(rng.normal(0.3, 0.3, len(exp)), 0))
            q_terms.append(np.concatenate([t, exp]))
            q_weights.append(np.concatenate([w, we]))
    batch = QueryBatch.from_lists(q_terms, q_weights, n_terms)
    del tfs
    impacts, scale = quantize(weights.astype(np.float32), 8)
    return term_ids, doc_ids, impacts, scale, seeds, batch


def cached_synthetic(st: SciFactStats, args, kind: str):
    """``synthetic_postings`` through an npz cache under .cache/sparse/synthetic/."""
    key = (
        f"{kind}-{args.generator}-n{args.synthetic_docs}-keep{args.keep}-noise{args.noise}"
        f"-topical{args.topical}-expand{args.expand}-seed{args.seed}-v{GENERATOR_VERSION}"
    )
    args.cache_key = key
    path = CACHE / "synthetic" / f"{key}.npz"
    if path.exists():
        z = np.load(path)
        batch = QueryBatch(z["q_offsets"], z["q_terms"], z["q_weights"])
        return z["term_ids"], z["doc_ids"], z["impacts"], float(z["scale"]), z["seeds"], batch, 0.0
    t = time.perf_counter()
    term_ids, doc_ids, impacts, scale, seeds, batch = synthetic_postings(st, args, kind)
    gen_s = time.perf_counter() - t
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        term_ids=term_ids,
        doc_ids=doc_ids,
        impacts=impacts,
        scale=scale,
        seeds=seeds,
        q_offsets=batch.offsets,
        q_terms=batch.terms,
        q_weights=batch.weights,
    )
    os.replace(tmp, path)
    return term_ids, doc_ids, impacts, scale, seeds, batch, gen_s


def order_perm(order: str, term_ids, doc_ids, seeds, n_terms: int, block_size: int, args):
    """(perm or None, seconds): the storage order of the synthetic documents. A BP order is
    cached next to its corpus with the seconds its computation took."""
    if order == "bp":
        path = (
            CACHE / "synthetic" / f"{args.cache_key}-bp-leaf{block_size}-it{args.bp_iterations}.npz"
        )
        if path.exists():
            z = np.load(path)
            return z["perm"], float(z["seconds"])
    t = time.perf_counter()
    if order == "random":
        perm = None
    elif order == "seed":  # idealized: documents of one seed adjacent
        perm = np.argsort(seeds, kind="stable").astype(np.int32)
    elif order == "bp":
        perm = bp_order(
            term_ids,
            doc_ids,
            len(seeds),
            n_terms,
            leaf_size=block_size,
            iterations=args.bp_iterations,
        )
    else:
        raise ValueError(f"unknown order {order!r}")
    seconds = time.perf_counter() - t
    if order == "bp":
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, perm=perm, seconds=seconds)
        os.replace(tmp, path)
    return perm, seconds


def synthetic(args, data) -> dict:
    out = {}
    nq_time = args.synthetic_queries
    t = time.perf_counter()
    st = SciFactStats(data)
    log(f"SciFact statistics (tokens, neighbours, feedback docs) in {time.perf_counter() - t:.0f}s")
    for kind in args.synthetic_kinds:
        log(
            f"Synthetic {kind}-like corpus, generator {args.generator}: {args.synthetic_docs:,} docs"
        )
        term_ids, doc_ids, impacts, scale, seeds, batch, gen_s = cached_synthetic(st, args, kind)
        per_query = split_queries(batch)
        log(
            f"  {len(term_ids):,} postings, {np.diff(batch.offsets).mean():.1f} terms/query, "
            f"generated in {gen_s:.0f}s (0: cached)"
        )
        for bs in args.synthetic_block_sizes:
            first_results = {}
            for order in args.orders:
                perm, order_s = order_perm(order, term_ids, doc_ids, seeds, st.n_terms, bs, args)
                log(f"  order {order}, block {bs}: permutation in {order_s:.1f}s")
                tt, dd, vv = (
                    (term_ids, doc_ids, impacts)
                    if perm is None
                    else apply_order(perm, term_ids, doc_ids, impacts)
                )
                offsets, docs, imps = term_major(tt, dd, vv, st.n_terms)
                del tt, dd, vv
                index = ImpactIndex.from_postings(
                    args.synthetic_docs,
                    offsets,
                    docs,
                    imps,
                    block_size=bs,
                    scale=scale,
                    meta={"encoder": kind},
                    perm=perm,
                )
                del offsets, docs, imps
                if args.masks:
                    res = measure_masks(index, batch, per_query, nq_time, args)
                else:
                    res = measure_index(index, batch, per_query, nq_time, args, first_results)
                res.update(
                    {
                        "n_docs": args.synthetic_docs,
                        "n_postings": int(len(term_ids)),
                        "mean_query_terms": float(np.diff(batch.offsets).mean()),
                        "generate_seconds": round(gen_s, 1),
                        "order_seconds": round(order_s, 1),
                    }
                )
                out[f"{kind}-{args.generator}-{order}-bs{bs}"] = res
                del index
        del term_ids, doc_ids, impacts
    return out


def split_queries(batch: QueryBatch) -> list[QueryBatch]:
    """One batch per query (the timed loops search one query at a time)."""
    o = batch.offsets
    return [
        QueryBatch(
            o[i : i + 2] - o[i], batch.terms[o[i] : o[i + 1]], batch.weights[o[i] : o[i + 1]]
        )
        for i in range(len(batch))
    ]


def built_collection(args) -> dict:
    """Exhaustive vs BMP on an impact index that ``specrag index`` built (``--collection-dir``),
    with its own query encoder: the check the synthetic SPLADE-like corpus stands in for,
    on real SPLADE output (e.g. naver/splade-v3 over >= 1M passages, where the model can be
    downloaded)."""
    from specrag.indexing.readers import read_queries
    from specrag.indexing.versions import VersionStore
    from specrag.retrieval.version import open_version

    version = open_version(VersionStore(args.collection_dir))
    searcher = version.searchers.get(args.kind)
    if not isinstance(searcher, ImpactSearcher):
        sys.exit(f"{args.collection_dir} has no {args.kind!r} impact index "
                 f"(its kinds: {', '.join(version.searchers)})")  # fmt: skip
    texts = list(read_queries(args.queries).values())
    t = time.perf_counter()
    batch = searcher.encode_queries(texts)
    encode_s = time.perf_counter() - t
    index = searcher.index
    log(f"{args.kind} index of {args.collection_dir} (version {version.id}): {index.n_docs:,} "
        f"docs, {len(index.postings):,} postings, block {index.block_size}, reordered "
        f"{index.perm is not None}; {len(batch)} queries, {np.diff(batch.offsets).mean():.1f} "
        f"terms/query, encoded in {encode_s:.1f}s")  # fmt: skip
    nq_time = min(args.synthetic_queries, len(batch))
    res = measure_index(index, batch, split_queries(batch), nq_time, args, {})
    res.update(
        {
            "n_docs": index.n_docs,
            "n_postings": int(len(index.postings)),
            "mean_query_terms": float(np.diff(batch.offsets).mean()),
            "version": version.id,
            "meta": index.meta,
        }
    )
    return {f"{args.kind}-{Path(args.collection_dir).name}-bs{index.block_size}": res}


#: BMP with every fallback to the exhaustive pass switched off (the pruned path always).
NO_FALLBACK = {
    "fallback_fraction": 2.0,
    "term_block_cost": 0.0,
    "early_probe_blocks": None,
    "blocks_per_hit": 0.0,
}


def measure_masks(index, batch, per_query, nq_time, args) -> dict:
    """Filtered search (``--masks``): for each share of documents kept (a seeded random
    mask over corpus rows) and each k, the exhaustive pass vs BMP with its fallback rules
    (the default config) vs BMP with every fallback off, one query per call, interleaved.
    Every path must return exactly the exhaustive top-k; the share of queries where BMP's
    rule chose the exhaustive pass is recorded (the path that ran)."""
    s = ImpactSearcher(index, np.arange(index.n_docs), ImpactConfig())
    paths = {
        "exhaustive": ImpactConfig(mode="exhaustive"),
        "bmp_rule": ImpactConfig(mode="bmp"),
        "bmp_no_fallback": ImpactConfig(mode="bmp", **NO_FALLBACK),
    }
    rng = np.random.default_rng(args.seed)
    row = {"index_bytes": index.nbytes(), "n_blocks": index.n_blocks}
    for share in args.masks:
        mask = rng.random(index.n_docs) < share
        mask.setflags(write=False)  # as the service's cached masks (ImpactSearcher keeps its
        # internal order and per-block counts for the last read-only mask)
        for k in args.ks:
            results, fell_back, blocks, taken = {}, {}, {}, {}
            for name, config in paths.items():
                s.config = config
                results[name] = s.search_rows(batch, k, mask)
                if config.mode == "bmp":
                    fell_back[name] = float((s.last_blocks_scored >= index.n_blocks).mean())
                    blocks[name] = float(s.last_blocks_scored.mean())
                    taken[name] = {
                        path: float((s.last_paths == code).mean())
                        for path, code in (("pruned", PATH_BMP), ("probe", PATH_PROBE),
                                           ("up_front", PATH_UP_FRONT))
                    }  # fmt: skip
            exact = all(
                np.array_equal(a, b)
                for name in ("bmp_rule", "bmp_no_fallback")
                for a, b in zip(results["exhaustive"], results[name], strict=True)
            )

            def path_fn(config, k=k, mask=mask, searcher=s, queries=per_query):
                def fn(qi):
                    searcher.config = config
                    return searcher.search_rows(queries[qi], k, mask)

                return fn

            qps = interleaved_qps(
                {name: path_fn(config) for name, config in paths.items()}, nq_time, args.repeats
            )
            row[f"mask{share:g}-k{k}"] = {
                "share": share,
                "kept": int(mask.sum()),
                "k": k,
                "exact": exact,
                "fell_back": fell_back,
                "paths": taken,
                "blocks_scored": blocks,
                "load_1min": os.getloadavg()[0],
                "qps": qps,
            }
            log(
                f"    mask {share:.1%} k={k}: QPS exhaustive {qps['exhaustive']['qps_best']:.0f}, "
                f"BMP+rule {qps['bmp_rule']['qps_best']:.0f} (up front "
                f"{taken['bmp_rule']['up_front']:.0%}, at the probe "
                f"{taken['bmp_rule']['probe']:.0%}, blocks {blocks['bmp_rule']:.0f}), BMP no "
                f"fallback {qps['bmp_no_fallback']['qps_best']:.0f} (blocks "
                f"{blocks['bmp_no_fallback']:.0f}) / {index.n_blocks}; exact {exact}"
            )
    return row


def measure_index(index, batch, per_query, nq_time, args, first_results) -> dict:
    """Exactness, recall and interleaved QPS of one index. ``first_results`` holds the
    exhaustive top-k of the first order measured: every order must equal it."""
    s = ImpactSearcher(index, np.arange(index.n_docs), ImpactConfig(mode="bmp"))
    row = {"index_bytes": index.nbytes(), "block_table_bytes": index.block_table_bytes()}
    for k in args.ks:
        s.config = s.config.with_changes(mode="exhaustive", alpha=1.0)
        ex = s.search_rows(batch, k)
        if k not in first_results:
            first_results[k] = ex
        s.config = s.config.with_changes(mode="bmp", alpha=1.0)
        safe = s.search_rows(batch, k)
        safe_blocks = float(s.last_blocks_scored.mean())
        # a query that fell back to the exhaustive pass counts as all blocks in the mean
        fell_back = s.last_blocks_scored >= index.n_blocks
        rest = s.last_blocks_scored[~fell_back]
        safe_block_median = float(np.median(rest)) if len(rest) else 0.0
        s.config = s.config.with_changes(alpha=0.9)
        approx = s.search_rows(batch, k)
        approx_blocks = float(s.last_blocks_scored.mean())
        recall = np.mean([
            len(set(approx[0][q, : approx[2][q]]) & set(safe[0][q, : safe[2][q]]))
            / max(1, safe[2][q])
            for q in range(len(batch))
        ])  # fmt: skip

        def mode_fn(mode, alpha, k=k, searcher=s, queries=per_query):
            config = searcher.config.with_changes(mode=mode, alpha=alpha)

            def fn(qi):
                searcher.config = config
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
        same = all(np.array_equal(a, b) for a, b in zip(ex, safe, strict=True))
        same_order = all(np.array_equal(a, b) for a, b in zip(ex, first_results[k], strict=True))
        row[f"k{k}"] = {
            "safe_equals_exhaustive": same,
            "equals_first_order": same_order,
            "recall_a0.9_vs_safe": float(recall),
            "blocks_scored_safe": safe_blocks,
            "fallback_share_safe": float(fell_back.mean()),
            "blocks_scored_safe_median_without_fallbacks": safe_block_median,
            "blocks_scored_a0.9": approx_blocks,
            "n_blocks": index.n_blocks,
            "qps": qps,
        }
        log(
            f"    k={k}: QPS exhaustive {qps['exhaustive']['qps_best']:.0f}, "
            f"safe {qps['bmp_safe']['qps_best']:.0f} "
            f"({qps['bmp_safe']['qps_best'] / qps['exhaustive']['qps_best']:.1f}x), "
            f"a=0.9 {qps['bmp_a0.9']['qps_best']:.0f} "
            f"({qps['bmp_a0.9']['qps_best'] / qps['exhaustive']['qps_best']:.1f}x); "
            f"recall@{k} a=0.9 vs safe {recall:.4f}; "
            f"blocks scored {safe_blocks:.0f} (a=0.9 {approx_blocks:.0f})/{index.n_blocks}, "
            f"safe: {fell_back.mean():.0%} fell back, median of the rest {safe_block_median:.0f}; "
            f"safe==exhaustive {same}; same as first order {same_order}"
        )
    log(f"    index {index.nbytes() / 2**20:.0f} MiB "
        f"(block-max table {row['block_table_bytes'] / 2**20:.0f} MiB)")  # fmt: skip
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument(
        "--block-sizes", type=int, nargs="+", default=[32], help="SciFact: the first is timed"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--batch-repeats", type=int, default=20, help="SciFact batch calls timed per system"
    )
    parser.add_argument("--synthetic-docs", type=int, default=1_000_000)
    parser.add_argument(
        "--synthetic-queries",
        type=int,
        default=300,
        help="queries timed (synthetic corpora, and --collection-dir)",
    )
    parser.add_argument("--synthetic-block-sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--synthetic-kinds", nargs="+", default=["bm25", "splade"])
    parser.add_argument(
        "--orders", nargs="+", default=["random", "bp", "seed"], choices=["random", "bp", "seed"]
    )
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    parser.add_argument(
        "--masks",
        type=float,
        nargs="+",
        default=[],
        help="synthetic corpora: time filtered search instead, with random masks keeping "
        "these shares of the documents (e.g. 0.5 0.05 0.005); writes sparse_filtered",
    )
    parser.add_argument(
        "--generator",
        choices=["dropout", "mix"],
        default="dropout",
        help="dropout: resampled seed documents with term dropout (default); "
        "mix: the harsher collection-frequency mixture of the first runs",
    )
    parser.add_argument(
        "--keep", type=float, default=0.7, help="dropout: probability of keeping each seed token"
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=0.1,
        help="dropout: collection-frequency noise tokens per seed token",
    )
    parser.add_argument(
        "--expand",
        type=float,
        default=0.5,
        help="SPLADE-like: expansion terms per unique document term",
    )
    parser.add_argument(
        "--topical",
        type=float,
        default=0.5,
        help="mix: probability that a token comes from the seed document",
    )
    parser.add_argument("--bp-iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--collection-dir",
        type=Path,
        default=None,
        help="instead of SciFact and the synthetic corpora: a collection built by `specrag "
        "index` (e.g. .specrag/collections/NAME) whose --kind index is measured on --queries",
    )
    parser.add_argument("--kind", default="splade", choices=["splade", "bm25"])
    parser.add_argument("--queries", type=Path, help="with --collection-dir: BEIR queries.jsonl")
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--pin-cpu", type=int, default=0, help="CPU to pin to; -1: no pinning")
    parser.add_argument("--out", type=Path, default=CACHE / "results.json")
    args = parser.parse_args()
    if args.pin_cpu >= 0:
        os.sched_setaffinity(0, {args.pin_cpu})
    CACHE.mkdir(parents=True, exist_ok=True)
    results = {"args": {k: str(v) for k, v in vars(args).items()}}
    if args.collection_dir is not None:
        if args.queries is None:
            parser.error("--collection-dir needs --queries")
        results["collection"] = built_collection(args)
        write_impact_result("sparse_collection", "Sparse: exhaustive vs BMP on a built "
                            "collection", results["collection"], order=31)  # fmt: skip
    else:
        if not args.skip_scifact:
            sci = scifact(args)
            results["scifact"] = sci["data"]
            bench_results.write_result(
                "sparse_scifact",
                "Sparse on SciFact: ours, bm25s and Lucene, batch and per query",
                sci["tables"],
                notes=[
                    "One process pinned to one CPU (NUMBA/OMP threads 1; Lucene "
                    "`batch_search` with 1 thread, its JVM pinned to the same CPU). SciFact "
                    f"has {sci['n_blocks']} blocks, fewer than `bmp_min_blocks`, so our "
                    f"default config runs the **{sci['default_kernel']}** kernel; the forced "
                    "BMP kernel is shown beside it. Batch rows time one call over all 300 "
                    "queries inside each system's own runtime; the per-query table is a "
                    "service's request path, where Lucene pays one Python-to-JVM call per "
                    "query. Anserini's search reads every hit's stored document (for its id) "
                    "inside the JVM, a cost that grows with k. The three analyzers differ (ours: Snowball stemmer and stopwords; "
                    "Lucene: its English analyzer; bm25s: its own stemmer and stopword "
                    "list), hence small differences in quality.",
                ],
                order=30,
                data=sci["data"],
            )
        if not args.skip_synthetic and args.masks:
            results["synthetic"] = synthetic(args, load_scifact(args.data))
            write_filtered_result(results["synthetic"], args)
        elif not args.skip_synthetic:
            results["synthetic"] = synthetic(args, load_scifact(args.data))
            write_impact_result("sparse_synthetic", "Sparse: exhaustive vs BMP on "
                                f"{args.synthetic_docs:,} synthetic documents",
                                results["synthetic"], order=32)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    log(f"raw results written to {args.out}")


def rule_paths(shares: dict[str, float]) -> str:
    """The paths BMP's rules chose, e.g. "61% up front, 7% probe, 32% pruned"."""
    names = {"up_front": "exhaustive up front", "probe": "exhaustive at the probe"}
    pct = lambda v: f"{v:.0%}" if v >= 0.005 else "<1%"  # noqa: E731
    parts = [f"{pct(v)} {names.get(p, p)}" for p, v in shares.items() if v > 0]
    return ", ".join(parts) if len(parts) > 1 else parts[0].split(" ", 1)[1]


def write_filtered_result(runs: dict, args) -> None:
    """One row per index, mask and k: exhaustive vs BMP with its rule vs BMP without
    fallback, the path the rule chose, and whether every path was exact."""
    rows = []
    for index_name, res in runs.items():
        for key, r in res.items():
            if not (key.startswith("mask") and isinstance(r, dict)):
                continue
            q = {name: v["qps_best"] for name, v in r["qps"].items()}
            path = rule_paths(r["paths"]["bmp_rule"])
            rows.append([
                index_name, f"{r['share']:.1%}", r["k"], q["exhaustive"], q["bmp_rule"],
                q["bmp_rule"] / q["exhaustive"], path, q["bmp_no_fallback"],
                round(r["blocks_scored"]["bmp_no_fallback"]), res["n_blocks"], r["exact"],
            ])  # fmt: skip
    columns = ["index", "mask keeps", "k", "exhaustive QPS", "BMP + rule QPS",
               "rule / exhaustive", "path the rule chose", "BMP no fallback QPS",
               "blocks scored (no fallback)", "blocks", "all paths exact"]  # fmt: skip
    bench_results.write_result(
        "sparse_filtered",
        f"Sparse, filtered: exhaustive vs BMP under masks at {args.synthetic_docs:,} documents",
        [
            bench_results.table(
                f"One query per call, one CPU, best of {args.repeats} interleaved runs",
                columns,
                rows,
            )
        ],  # fmt: skip
        notes=[
            "A mask keeps a random share of the documents (seeded), applied inside each "
            "search. `BMP + rule` is the default config: BMP, with the rules that send a "
            "query to the exhaustive pass when its bounds prune too little "
            "(`impact/config.py`: exhaustive up front when the query's expected BMP work, "
            "`blocks_per_hit`, is at least its postings; exhaustive at the probe when the "
            "blocks still admitted cost more); `BMP no fallback` switches every such rule off "
            "(always the pruned path). The path column says which code path the rule ran "
            "on what share of the queries (a row all exhaustive up front runs the "
            "exhaustive kernel itself: its ratio is 1 up to timing noise). Every "
            "path returned exactly the exhaustive top-k on every query when the last column "
            "says True.",
            "Load average (1 min) after each cell: "
            + ", ".join(
                f"{r['load_1min']:.1f}"
                for res in runs.values()
                for key, r in res.items()
                if key.startswith("mask") and isinstance(r, dict)
            )
            + f"; when the run ended: {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores shared with other work.",
        ],
        order=33,
        data=runs,
    )


def write_impact_result(name: str, title: str, runs: dict, order: int) -> None:
    """One table row per index and k: exhaustive, safe BMP and alpha 0.9 QPS (one query
    per call), and what the bounds did."""
    rows = []
    for index_name, res in runs.items():
        for key, r in res.items():
            if not (key.startswith("k") and isinstance(r, dict)):
                continue
            q = r["qps"]
            ex = q["exhaustive"]["qps_best"]
            rows.append([
                index_name, int(key[1:]), ex, q["bmp_safe"]["qps_best"],
                q["bmp_safe"]["qps_best"] / ex, q["bmp_a0.9"]["qps_best"],
                r["recall_a0.9_vs_safe"], r["fallback_share_safe"], r["safe_equals_exhaustive"],
            ])  # fmt: skip
    columns = ["index", "k", "exhaustive QPS", "BMP safe QPS", "safe / exhaustive",
               "BMP a=0.9 QPS", "recall a=0.9 vs safe", "fallback share", "safe == exhaustive"]  # fmt: skip
    bench_results.write_result(
        name, title, [bench_results.table("One query per call, one CPU", columns, rows)],
        order=order, data=runs,
    )  # fmt: skip


if __name__ == "__main__":
    main()
