"""Relevance defaults chosen by leave-one-collection-out (issue #19).

A fusion default tuned on one collection may only win there. This benchmark chooses the
rule among candidates on the *choosing* queries of every collection but X, scores the
choice on X's *test* queries, for every X, and compares it with plain RRF k=60 and the
best single retriever, with paired tests over X's test queries.

Two phases:

1. **Cache** (slow, once): for each collection, an index version with bm25, dense (the
   default offline MiniLM, flat) and colbert (MiniLM int8 tokens), built through
   ``CollectionService.index`` (the code ``specrag index`` runs) in ``--index-home``, or an
   existing collection folder given by ``--collection-dir NAME=DIR``. Each list maker in
   ``LIST_MAKERS`` runs through ``pipeline.search_batch`` (the service's search code) for
   the choosing and the test queries, top ``CACHE_DEPTH`` (1000), and the raw MaxSim of
   every query against the union of the top ``MAXSIM_DEPTH`` (200) of bm25 and dense is
   read from the colbert token store (``MaxSimReranker.maxsim_scores``, what the rerank
   stage computes).
2. **Evaluate** (seconds): every rule in ``candidate_rules()`` turns the cached lists into
   a run with specrag's fusion functions (``retrieval/fusion.py``; rows as tie keys, as
   the pipeline fuses); metrics by ir-measures (nDCG@10, R@100); the LOO choice maximizes
   the mean over the other collections of their mean choosing-split nDCG@10 (each
   collection weighs the same); a second LOO table chooses for issue #19's target instead
   (``choose_ahead``: ahead of plain RRF on the most choosing splits, then the mean
   margin). Test queries never enter a choice.

Cached lists (``--cache``, default ``<repo>/.cache/relevance``), one JSON file per
collection and split, ``<cache>/<collection>/<split>.json``::

    {"collection": "cisi", "split": "dev", "version": "<index version id>",
     "query_ids": ["1", ...], "queries": {"1": "query text", ...},
     "lists": {"bm25":  {"1": {"ids": [...], "rows": [...], "scores": [...]}, ...},
               "dense": {...}},                       # best first, top 1000
     "maxsim": {"1": {"ids": [...], "scores": [...]}}}  # raw MaxSim, union of top 200s

``rows`` are the version's internal rows (the pipeline's tie-break). Besides bm25 and
dense, the lists include the default hybrid with bm25 RM3 from its fused list
(``hybrid-prf fbN oW``, the service's final fused list). To add a list, add a function ``(version, queries, depth, texts) -> list[list[Hit]]``
to ``LIST_MAKERS`` (the next run computes what a cache file lacks; ``--refresh-lists NAME``
computes it again).
To add a system, add a ``Rule(name, family, run)`` to ``candidate_rules()`` (or to
``extra_rules``) whose ``run(candidates) -> {qid: [(doc_id, score), ...]}`` reads a
``Candidates`` (one collection and split of the cache, with its qrels). A rule in
``candidate_rules()`` competes in the LOO choice; a rule in ``extra_rules`` is scored on
every test split (a row of the last table) but never chosen.

Run (a few minutes per collection to build and cache on 2 shared cores; evaluation is
seconds)::

    python scripts/fetch_collections.py --mirror /work/.mirror    # the collections
    nice python scripts/bench_relevance.py [--collections scifact,cranfield,cisi,npl,cacm,med,adi,lisa]
"""

from __future__ import annotations

import os

import bench_env

bench_env.offline_with_threads(2)

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import ir_measures  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adaptive_fusion  # noqa: E402
import bench_results  # noqa: E402
from bench_retrieval import paired_test  # noqa: E402
from scifact_cache import read_corpus, read_qrels, read_queries  # noqa: E402

from specrag.retrieval.fusion import RRF_K, convex, rrf, zscore  # noqa: E402
from specrag.retrieval.recipe import HYBRID, Recipe  # noqa: E402
from specrag.types import Hit  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CACHE_DEPTH = 1000
MAXSIM_DEPTH = 200
#: Candidates the MaxSim rerank reorders (the rerank stage's default ``top_n``).
RERANK_TOP = 100
MEASURES = {"nDCG@10": ir_measures.nDCG @ 10, "R@100": ir_measures.R @ 100}


@dataclass(frozen=True)
class CollectionSpec:
    """A BEIR folder and the split whose queries choose (the other is ``test``)."""

    name: str
    data: Path
    choose: str  # "train" or "dev"


def collection_specs(names: list[str], scifact: Path, collections_dir: Path) -> list:
    return [
        CollectionSpec(n, scifact, "train")
        if n == "scifact"
        else CollectionSpec(n, collections_dir / n, "dev")
        for n in names
    ]


# -- phase 1: lists from specrag's own indexes --------------------------------------------


def _search_kind(kind: str) -> Callable:
    def make(version, queries: list[str], depth: int, texts: Callable) -> list[list[Hit]]:
        from specrag.retrieval import pipeline
        from specrag.retrieval.request import SearchRequest

        request = SearchRequest(query="x", k=depth, retriever=kind, rerank=None)
        return pipeline.search_batch(version, queries, request).hits

    return make


#: bm25 RM3 with feedback from the fused list (``"prf": {"feedback": "fused"}``): feedback
#: documents and original-query weights tried (10 expansion terms, Anserini's default).
PRF_FB_DOCS = (3, 5, 10)
PRF_ORIG_WEIGHTS = (0.5, 0.7)


def prf_list_name(fb_docs: int, orig_weight: float) -> str:
    return f"hybrid-prf fb{fb_docs} o{orig_weight}"


def _hybrid_prf(fb_docs: int, orig_weight: float) -> Callable:
    """The default hybrid (``recipe.HYBRID``) with bm25 RM3 from its fused list: the final
    fused list, as the service returns it."""

    def make(version, queries: list[str], depth: int, texts: Callable) -> list[list[Hit]]:
        from specrag.retrieval import pipeline
        from specrag.retrieval.request import PrfSpec, SearchRequest

        prf = PrfSpec(fb_docs=fb_docs, orig_weight=orig_weight, feedback="fused")
        request = SearchRequest(query="x", k=depth, rerank=None, prf=prf)
        return pipeline.search_batch(version, queries, request, texts=texts).hits

    return make


#: name -> (version, queries, depth, texts) -> hits per query, best first; ``texts`` maps
#: document ids to their texts (``pipeline.search_batch``'s text source, for PRF).
LIST_MAKERS: dict[str, Callable] = {
    "bm25": _search_kind("bm25"),
    "dense": _search_kind("dense"),
    **{prf_list_name(fb, w): _hybrid_prf(fb, w) for fb in PRF_FB_DOCS for w in PRF_ORIG_WEIGHTS},
}
KINDS = ["bm25", "dense", "colbert"]


def open_collection(spec: CollectionSpec, home: Path, existing: dict[str, Path]):
    """The collection's current version: an existing collection folder, else built
    (once) through ``CollectionService.index`` in ``home``."""
    from specrag.indexing.versions import VersionStore
    from specrag.retrieval.version import open_version

    if spec.name in existing:
        return open_version(VersionStore(existing[spec.name]))
    from specrag.api.service import CollectionService
    from specrag.settings import Settings
    from specrag.storage.store import NotFound

    service = CollectionService(Settings(home=home))
    service.start()
    try:
        try:
            current = service.versions(spec.name).current()
        except NotFound:
            current = None
        if current is None:
            started = time.perf_counter()
            docs = read_corpus(spec.data)
            print(f"{spec.name}: building {len(docs)} documents ({KINDS})", file=sys.stderr)
            service.index(spec.name, docs, KINDS, progress_bar=True)
            print(f"{spec.name}: built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return open_version(service.versions(spec.name))
    finally:
        service.close()


def judged_queries(spec: CollectionSpec, split: str) -> tuple[dict[str, str], dict]:
    """The split's queries that have judgements (qid -> text), and its qrels."""
    qrels = read_qrels(spec.data, split)
    ids, texts = read_queries(spec.data)
    queries = {q: t for q, t in zip(ids, texts, strict=True) if q in qrels}
    return queries, qrels


def cache_lists(spec: CollectionSpec, version, cache: Path, refresh: set[str]) -> None:
    """Write (or complete) ``<cache>/<name>/<split>.json`` for the choosing and test splits."""
    reranker = None
    text_of: dict[str, str] = {}

    def texts(version, ids: list[str]) -> list[str]:
        if not text_of:
            text_of.update((d.id, d.full_text()) for d in read_corpus(spec.data))
        return [text_of[i] for i in ids]

    for split in (spec.choose, "test"):
        path = cache / spec.name / f"{split}.json"
        queries, _ = judged_queries(spec, split)
        data = json.loads(path.read_text()) if path.exists() else {}
        if data.get("version") != version.id or list(data.get("queries", {})) != list(queries):
            data = {"collection": spec.name, "split": split, "version": version.id,
                    "query_ids": list(queries), "queries": queries, "lists": {}}  # fmt: skip
        query_texts = list(queries.values())
        for name, make in LIST_MAKERS.items():
            if name in data["lists"] and name not in refresh:
                continue
            started = time.perf_counter()
            hits = make(version, query_texts, min(CACHE_DEPTH, version.n_docs), texts)
            data["lists"][name] = {
                q: {"ids": [h.doc_id for h in hs],
                    "rows": [version.row_of(h.doc_id) for h in hs],
                    "scores": [float(h.score) for h in hs]}
                for q, hs in zip(queries, hits, strict=True)
            }  # fmt: skip
            print(f"{spec.name}/{split}: {name} for {len(query_texts)} queries in "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)  # fmt: skip
        if "maxsim" not in data and "colbert" in version.searchers:
            from specrag.rerank import make_reranker

            reranker = reranker or make_reranker("maxsim", None, version)
            data["maxsim"] = {}
            for q, text in queries.items():
                ids = list(dict.fromkeys(
                    d for name in ("bm25", "dense") for d in data["lists"][name][q]["ids"][:MAXSIM_DEPTH]
                ))  # fmt: skip
                rows = np.array([version.row_of(d) for d in ids], dtype=np.int64)
                scores = reranker.maxsim_scores(text, rows=rows)
                data["maxsim"][q] = {"ids": ids, "scores": [float(s) for s in scores]}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


# -- phase 2: rules over the cached lists -------------------------------------------------

Run = dict[str, list[tuple[str, float]]]


@dataclass
class Candidates:
    """One collection and split of the cache, with its qrels."""

    collection: str
    split: str
    query_ids: list[str]
    queries: dict[str, str]
    lists: dict[str, dict[str, dict[str, list]]]  # retriever -> qid -> ids/rows/scores
    maxsim: dict[str, dict[str, float]]  # qid -> doc id -> raw MaxSim
    qrels: dict[str, dict[str, int]]
    version: str = ""

    def pairs(self, retriever: str, qid: str, depth: int) -> list[tuple[int, float]]:
        entry = self.lists[retriever][qid]
        return list(zip(entry["rows"][:depth], entry["scores"][:depth], strict=True))

    def ids_of(self, qid: str) -> dict[int, str]:
        """Internal row -> document id over every list of the query."""
        out: dict[int, str] = {}
        for lists in self.lists.values():
            out.update(zip(lists[qid]["rows"], lists[qid]["ids"], strict=True))
        return out


def load_candidates(spec: CollectionSpec, split: str, cache: Path) -> Candidates:
    data = json.loads((cache / spec.name / f"{split}.json").read_text())
    maxsim = {q: dict(zip(e["ids"], e["scores"], strict=True)) for q, e in data.get("maxsim", {}).items()}  # fmt: skip  # noqa: E501
    return Candidates(spec.name, split, data["query_ids"], data["queries"], data["lists"],
                      maxsim, read_qrels(spec.data, split), data["version"])  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """A way to turn the cached lists into one run; ``family`` groups it in the tables."""

    name: str
    family: str
    run: Callable[[Candidates], Run]
    params: dict = field(default_factory=dict)


def single(retriever: str) -> Callable[[Candidates], Run]:
    def run(c: Candidates) -> Run:
        return {q: list(zip(c.lists[retriever][q]["ids"], c.lists[retriever][q]["scores"], strict=True)) for q in c.query_ids}  # fmt: skip  # noqa: E501

    return run


def fused(
    method: str,
    depth: int,
    w_bm25: float = 0.5,
    normalization: str = "zscore",
    rrf_k: float = RRF_K,
    maxsim: dict[str, float] | None = None,
) -> Callable[[Candidates], Run]:
    """bm25 + dense fused as the pipeline fuses (rows as tie keys), ``depth`` candidates
    each; with ``maxsim`` (fusion weights by retriever name), the top ``RERANK_TOP`` fused
    hits reranked by ``z(maxsim) + sum w z(score)`` as ``MaxSimReranker`` does."""
    # RRF as a request asks for it, weights 1:1; a convex fusion scales weights to sum 1.
    weights = [2 * w_bm25, 2 * (1.0 - w_bm25)] if method == "rrf" else [w_bm25, 1.0 - w_bm25]

    def run(c: Candidates) -> Run:
        out: Run = {}
        for q in c.query_ids:
            lists = [c.pairs("bm25", q, depth), c.pairs("dense", q, depth)]
            if method == "rrf":
                ranked = rrf([[r for r, _ in p] for p in lists], weights, rrf_k, tie_key=int)
            else:
                ranked = convex(lists, weights, normalization, tie_key=int)
            ids = c.ids_of(q)
            hits = [(ids[row], score) for row, score in ranked]
            if maxsim is not None:
                hits = _maxsim_rerank(c, q, hits[:RERANK_TOP], lists, ids, maxsim) + hits[RERANK_TOP:]  # fmt: skip  # noqa: E501
            out[q] = hits
        return out

    return run


def _maxsim_rerank(c, q, hits, lists, ids, weights) -> list[tuple[str, float]]:
    """``rerank/maxsim.py``'s fusion over the cached raw MaxSim: a hit without a cached
    MaxSim (below both top-200s) gets the list's lowest, as a hit without tokens does."""
    table = c.maxsim[q]
    sims = np.array([table.get(d, np.nan) for d, _ in hits])
    sims = np.where(np.isnan(sims), np.nanmin(sims), sims)
    final = zscore(sims)
    raw = {name: dict(pairs) for name, pairs in zip(("bm25", "dense"), lists, strict=True)}
    rows = {doc: row for row, doc in ids.items()}
    for name, w in weights.items():
        values = np.array([raw[name].get(rows[d], np.nan) for d, _ in hits])
        floor = np.nanmin(values) if not np.isnan(values).all() else 0.0
        final = final + w * zscore(np.where(np.isnan(values), floor, values))
    order = sorted(range(len(hits)), key=lambda i: (-final[i], i))
    return [(hits[i][0], float(final[i])) for i in order]


def adaptive(fuse: Callable, depth: int) -> Callable[[Candidates], Run]:
    """bm25 + dense, ``depth`` candidates each, fused per query by ``fuse(lists)`` (a rule
    of ``adaptive_fusion.py``, rows in, rows out)."""

    def run(c: Candidates) -> Run:
        out: Run = {}
        for q in c.query_ids:
            ids = c.ids_of(q)
            ranked = fuse([c.pairs("bm25", q, depth), c.pairs("dense", q, depth)])
            out[q] = [(ids[row], score) for row, score in ranked]
        return out

    return run


def adaptive_rules() -> list[Rule]:
    """Query-adaptive rules without tuned weights (``adaptive_fusion.py``)."""
    af = adaptive_fusion
    specs = [
        ("combmnz d=100", 100, af.combmnz),
        ("combmnz d=1000", 1000, af.combmnz),
        ("minmax@100 0.5:0.5 d=1000", 1000, functools.partial(af.fuse, head=100)),
        ("zscore@100 0.5:0.5 d=1000", 1000, functools.partial(af.fuse, normalization="zscore", head=100)),
        ("minmax gap-weights d=100", 100, functools.partial(af.fuse, weighting="gap")),
        ("minmax gap-weights d=1000", 1000, functools.partial(af.fuse, weighting="gap")),
        ("zscore gap-weights d=1000", 1000, functools.partial(af.fuse, normalization="zscore", weighting="gap")),
        ("minmax@100 gap-weights d=1000", 1000, functools.partial(af.fuse, head=100, weighting="gap")),
        ("minmax topz-weights d=1000", 1000, functools.partial(af.fuse, weighting="topz")),
        ("zscore topz-weights d=1000", 1000, functools.partial(af.fuse, normalization="zscore", weighting="topz")),
        ("rank-biased minmax d=100", 100, af.rank_biased),
        ("rank-biased minmax d=1000", 1000, af.rank_biased),
    ]  # fmt: skip
    return [Rule(name, "adaptive", adaptive(fn, depth), {"rule": name, "depth": depth})
            for name, depth, fn in specs]  # fmt: skip


WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7)
DEPTHS = (100, 200, 1000)


def candidate_rules() -> list[Rule]:
    """The rules the LOO choice picks from: plain RRF, convex z-score and min-max (bm25
    weight grid, 0.5 = equal), candidate depths, and the MaxSim rerank on top of the
    z-score rules (the recipe's MaxSim weights)."""
    rules = []
    for depth in DEPTHS:
        rules.append(Rule(f"rrf k=60 d={depth}", "rrf", fused("rrf", depth),
                          {"fusion": "rrf", "rrf_k": RRF_K, "depth": depth}))  # fmt: skip
        for norm in ("zscore", "minmax"):
            for w in WEIGHTS:
                params = {"fusion": "convex", "normalization": norm, "w_bm25": w, "depth": depth}
                rules.append(Rule(f"{norm} {w:.1f}:{1 - w:.1f} d={depth}", norm,
                                  fused("convex", depth, w, norm), params))  # fmt: skip
    for w in WEIGHTS:
        params = {"fusion": "convex", "normalization": "zscore", "w_bm25": w, "depth": 100,
                  "maxsim": dict(HYBRID.maxsim_fusion)}  # fmt: skip
        rules.append(Rule(f"zscore {w:.1f}:{1 - w:.1f} d=100 + MaxSim", "zscore+maxsim",
                          fused("convex", 100, w, "zscore", maxsim=HYBRID.maxsim_fusion), params))  # fmt: skip  # noqa: E501
    return rules + adaptive_rules() + prf_rules()


def prf_rules() -> list[Rule]:
    """The default hybrid with bm25 RM3 from its fused list (``LIST_MAKERS``' PRF lists,
    cached as the service returns them)."""
    names = [(prf_list_name(fb, w), fb, w) for fb in PRF_FB_DOCS for w in PRF_ORIG_WEIGHTS]
    return [Rule(f"{recipe_rule()} + {name.removeprefix('hybrid-')}", "prf", single(name),
                 {"recipe": recipe_rule(), "prf": {"fb_docs": fb, "orig_weight": w,
                                                   "feedback": "fused"}})
            for name, fb, w in names]  # fmt: skip


#: Systems scored on every collection but never chosen (other modules may append).
extra_rules: list[Rule] = []


def per_query(run: Run, qrels: dict[str, dict[str, int]], query_ids: list[str]) -> dict:
    """measure -> per-query values in ``query_ids`` order (0 for a query without hits).
    Rank-derived scores, so ir-measures sees exactly the run's order; the top 100 is all
    that nDCG@10 and R@100 read."""
    ranked = {q: {d: float(100 - i) for i, (d, _) in enumerate(hits[:100])} for q, hits in run.items() if hits}  # fmt: skip  # noqa: E501
    names = {m: n for n, m in MEASURES.items()}
    values: dict[str, dict[str, float]] = {n: {} for n in MEASURES}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), qrels, ranked):
        values[names[metric.measure]][metric.query_id] = metric.value
    return {n: np.array([values[n].get(q, 0.0) for q in query_ids]) for n in MEASURES}


def add_collection_arguments(parser: argparse.ArgumentParser, collections: str) -> None:
    """Which collections, where their data and cached lists are: the options every
    relevance script takes (``collections``: the default list)."""
    parser.add_argument("--collections", default=collections)
    parser.add_argument("--scifact", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    parser.add_argument("--collections-dir", type=Path, default=REPO / ".cache" / "collections")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "relevance")
    parser.add_argument("--collection-dir", action="append", default=[], metavar="NAME=DIR",
                        help="an existing collection folder (holds CURRENT) for NAME")  # fmt: skip


def has_every_list(spec: CollectionSpec, cache: Path) -> bool:
    """Whether both splits' cache files hold every list of ``LIST_MAKERS``."""
    paths = [cache / spec.name / f"{split}.json" for split in (spec.choose, "test")]
    return all(
        path.exists() and set(LIST_MAKERS) <= set(json.loads(path.read_text())["lists"])
        for path in paths
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_collection_arguments(parser, "scifact,cranfield,cisi,npl,cacm,med,adi,lisa,nfcorpus")
    parser.add_argument("--index-home", type=Path, default=None, help="default <cache>/home")
    parser.add_argument("--refresh-lists", default="", help="list makers to run again")
    parser.add_argument("--cache-only", action="store_true")
    parser.add_argument("--rescore", action="store_true", help="ignore cached rule scores")
    parser.add_argument("--no-write", action="store_true", help="print, write no result file")
    args = parser.parse_args()

    specs = collection_specs(args.collections.split(","), args.scifact, args.collections_dir)
    existing = {k: Path(v) for k, v in (item.split("=", 1) for item in args.collection_dir)}
    refresh = set(filter(None, args.refresh_lists.split(",")))
    for spec in specs:
        if not has_every_list(spec, args.cache) or refresh:
            version = open_collection(spec, args.index_home or args.cache / "home", existing)
            cache_lists(spec, version, args.cache, refresh)
    if args.cache_only:
        return
    evaluate_all(specs, args)


class Scores:
    """Per-query metrics of the rules on every collection and split, computed on demand
    and kept in ``<cache>/<collection>/scores.<split>.json`` (keyed by rule name, for the
    lists' version; ``--rescore`` ignores them after a rule's code changed)."""

    def __init__(self, specs: list[CollectionSpec], rules: list[Rule], cache: Path | None,
                 rescore: bool = False):  # fmt: skip
        self.specs = {s.name: s for s in specs}
        self.rules = {r.name: r for r in rules}
        self.cache, self.rescore = cache, rescore
        self.values: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
        self._candidates: dict[tuple[str, str], Candidates] = {}
        self._stored: dict[tuple[str, str], dict] = {}

    def _file(self, collection: str, split: str) -> Path:
        return self.cache / collection / f"scores.{split}.json"

    def _store(self, collection: str, split: str) -> dict:
        key = (collection, split)
        if key not in self._stored:
            path = self._file(collection, split)
            version = self.candidates(collection, split).version
            stored = json.loads(path.read_text()) if path.exists() and not self.rescore else {}
            self._stored[key] = stored if stored.get("version") == version else {"version": version, "rules": {}}  # fmt: skip  # noqa: E501
        return self._stored[key]

    def candidates(self, collection: str, split: str) -> Candidates:
        key = (collection, split)
        if key not in self._candidates:
            self._candidates[key] = load_candidates(self.specs[collection], split, self.cache)
        return self._candidates[key]

    def has(self, rule: str, collection: str, split: str) -> bool:
        """Whether the rule can run there (a MaxSim rule needs cached MaxSim)."""
        return not self.rules[rule].family.endswith("maxsim") or bool(self.candidates(collection, split).maxsim)  # fmt: skip  # noqa: E501

    def get(self, rule: str, collection: str, split: str, measure: str = "nDCG@10") -> np.ndarray:
        key = (rule, collection, split)
        if key not in self.values:
            store = self._store(collection, split)
            if rule not in store["rules"]:
                c = self.candidates(collection, split)
                run = self.rules[rule].run(c)
                store["rules"][rule] = {m: v.tolist() for m, v in per_query(run, c.qrels, c.query_ids).items()}  # fmt: skip  # noqa: E501
            self.values[key] = {m: np.array(v) for m, v in store["rules"][rule].items()}
        return self.values[key][measure]

    def mean(self, rule: str, collection: str, split: str, measure: str = "nDCG@10") -> float:
        return float(self.get(rule, collection, split, measure).mean())

    def save(self) -> None:
        for (collection, split), stored in self._stored.items():
            tmp = self._file(collection, split).with_suffix(".tmp")
            tmp.write_text(json.dumps(stored))
            tmp.replace(self._file(collection, split))


def choose(scores: Scores, rules: list[Rule], specs: list[CollectionSpec]) -> Rule:
    """The rule with the best mean over ``specs`` of their choosing-split nDCG@10 (each
    collection counts once, whatever its query count); ties go to the earlier rule."""
    return max(rules, key=lambda r: np.mean([scores.mean(r.name, s.name, s.choose) for s in specs]))


def choose_ahead(scores: Scores, rules: list[Rule], specs: list[CollectionSpec]) -> Rule:
    """The choice aimed at issue #19's target (ahead of plain RRF on every collection): the
    rule ahead of RRF on the most choosing splits of ``specs``, then by the mean margin;
    ties go to the earlier rule."""

    def key(rule: Rule) -> tuple[int, float]:
        margins = [scores.mean(rule.name, s.name, s.choose) - scores.mean(RRF_PLAIN, s.name, s.choose)
                   for s in specs]  # fmt: skip
        return sum(m > 0 for m in margins), float(np.mean(margins))

    return max(rules, key=key)


def recipe_rule(recipe: Recipe = HYBRID) -> str:
    """The candidate rule a bm25 + dense ``retriever="hybrid"`` request runs under ``recipe``."""
    if recipe.fusion == "rrf":
        return f"rrf k={recipe.rrf_k:g} d={recipe.depth}"
    w = recipe.weight("bm25") / (recipe.weight("bm25") + recipe.weight("dense"))
    return f"{recipe.normalization} {w:.1f}:{1 - w:.1f} d={recipe.depth}"


def leave_one_out(scores: Scores, rules: list[Rule], specs: list, singles: list[Rule],
                  chooser: Callable = choose) -> dict:  # fmt: skip
    """For each collection: the rule ``chooser`` picks without it, scored on its test split
    against plain RRF, the previous default and the best single retriever (paired tests)."""
    loo = {}
    for spec in specs:
        picked = chooser(scores, rules, [s for s in specs if s is not spec])
        best_single = max(singles, key=lambda r: scores.mean(r.name, spec.name, "test"))
        names = (picked.name, RRF_PLAIN, TODAY, best_single.name)
        test = functools.partial(scores.get, collection=spec.name, split="test")
        loo[spec.name] = {
            "chosen": picked.name, "best_single": best_single.name,
            "test": {m: {n: scores.mean(n, spec.name, "test", m) for n in names} for m in MEASURES},
            "vs_rrf": paired_test(test(picked.name), test(RRF_PLAIN)),
            "vs_today": paired_test(test(picked.name), test(TODAY)),
            "n_test": len(test(RRF_PLAIN)),
        }  # fmt: skip
        print(f"LOO {spec.name}: {picked.name} {loo[spec.name]['vs_rrf']}", file=sys.stderr)
    return loo


def maxsim_wins_everywhere(scores: Scores, rules: list[Rule], specs: list) -> bool:
    """Whether every MaxSim rule beats its own first stage on every choosing split."""
    pairs = [(r.name, r.name.removesuffix(" + MaxSim")) for r in rules if r.family.endswith("maxsim")]  # fmt: skip  # noqa: E501
    return bool(pairs) and all(
        scores.mean(m, s.name, s.choose) > scores.mean(f, s.name, s.choose)
        for m, f in pairs for s in specs
    )  # fmt: skip


def weight_free(rule: Rule) -> bool:
    """Whether the rule has no weight to fit: RRF, equal-weight convex, the adaptive rules."""
    return rule.family in ("rrf", "adaptive") or (
        rule.family in ("zscore", "minmax") and rule.params.get("w_bm25") == 0.5
    )


RRF_PLAIN = "rrf k=60 d=100"
#: The default before issue #19 (convex z-score bm25 0.6 : dense 0.4, tuned on SciFact train).
TODAY = "zscore 0.6:0.4 d=100"


def evaluate_all(specs: list[CollectionSpec], args) -> dict:
    """Score every rule, choose leave-one-collection-out, write the result file."""
    rules = candidate_rules()
    singles = [Rule("bm25", "single", single("bm25")), Rule("dense", "single", single("dense"))]
    reported = singles + list(extra_rules)
    scores = Scores(specs, rules + reported, args.cache, args.rescore)
    info = {}
    for spec in specs:
        meta = spec.data / "collection.json"
        info[spec.name] = json.loads(meta.read_text()) if meta.exists() else {
            "name": spec.name, "domain": "biomedical claims (BEIR SciFact)",
            "documents": (spec.data / "corpus.jsonl").read_text().count("\n"),
        }  # fmt: skip
    usable = [r for r in rules if all(scores.has(r.name, s.name, s.choose) for s in specs)]
    # The default's first stage is chosen among rules without MaxSim; the MaxSim rerank is
    # a separate decision (issue #19: opt-in unless it wins everywhere), made on the
    # choosing splits by ``maxsim_wins_everywhere``; LOO with MaxSim allowed is reported.
    first_stage = [r for r in usable if not r.family.endswith("maxsim")]
    loo = leave_one_out(scores, first_stage, specs, singles)
    loo_any = leave_one_out(scores, usable, specs, singles)
    loo_free = leave_one_out(scores, [r for r in first_stage if weight_free(r)], specs, singles)
    loo_ahead = leave_one_out(scores, first_stage, specs, singles, choose_ahead)
    overall = choose(scores, first_stage, specs)
    pooled = {
        name: np.concatenate(
            [
                scores.get(loo[s.name]["chosen"] if name == "loo" else name, s.name, "test")
                for s in specs
            ]
        )  # fmt: skip  # noqa: E501
        for name in ("loo", RRF_PLAIN, TODAY)
    }
    fixed = {
        r.name: {s.name: paired_test(scores.get(r.name, s.name, "test"), scores.get(RRF_PLAIN, s.name, "test"))
                 for s in specs}
        for r in first_stage if (weight_free(r) or r.family == "prf") and r.name != RRF_PLAIN
    }  # fmt: skip
    shipped = recipe_rule(HYBRID)
    prf_vs_shipped = {
        r.name: {s.name: paired_test(scores.get(r.name, s.name, "test"), scores.get(shipped, s.name, "test"))
                 for s in specs}
        for r in first_stage if r.family == "prf"
    }  # fmt: skip
    result = {"loo": loo, "loo_with_maxsim": loo_any, "loo_weight_free": loo_free,
              "loo_ahead": loo_ahead, "overall_ahead": choose_ahead(scores, first_stage, specs).name,
              "prf_vs_shipped": prf_vs_shipped,
              "fixed_vs_rrf": fixed, "shipped": recipe_rule(HYBRID), "overall_choice": overall.name,
              "overall_params": overall.params,
              "overall_with_maxsim": choose(scores, usable, specs).name,
              "maxsim_on_every_choosing_split": maxsim_wins_everywhere(scores, usable, specs),
              "pooled_vs_rrf": paired_test(pooled["loo"], pooled[RRF_PLAIN]),
              "pooled_vs_today": paired_test(pooled["loo"], pooled[TODAY])}  # fmt: skip
    print(f"chosen on every collection: {overall.name} {overall.params}", file=sys.stderr)
    scores.save()
    if not args.no_write:
        write(specs, rules, reported, scores, info, result)
    return result


def _diff_cells(tests: dict[str, dict]) -> list[str]:
    """Per collection: a paired test's mean difference and p, as a table cell."""
    return [f"{t['mean_diff']:+.4f} (p {t['p_ttest']:.2f})" for t in tests.values()]


def _ci(t: dict) -> str:
    return f"[{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}]"


def _loo_table(caption: str, loo: dict, pooled: dict | None) -> dict:
    rows = []
    for name, e in loo.items():
        n, r = e["test"]["nDCG@10"], e["test"]["R@100"]
        rows.append([
            name, e["chosen"], n[e["chosen"]], n[RRF_PLAIN], f"{e['best_single']} {n[e['best_single']]:.4f}",
            r[e["chosen"]], r[RRF_PLAIN], f"{e['best_single']} {r[e['best_single']]:.4f}",
            e["vs_rrf"]["mean_diff"], _ci(e["vs_rrf"]), e["vs_rrf"]["p_ttest"],
        ])  # fmt: skip  # noqa: E501
    mean = float(np.mean([e["vs_rrf"]["mean_diff"] for e in loo.values()]))
    caption += f" Mean difference over collections: {mean:+.4f}"
    if pooled is not None:
        n_test = sum(e["n_test"] for e in loo.values())
        caption += (f"; pooled over all {n_test} test queries: {pooled['mean_diff']:+.4f} "
                    f"{_ci(pooled)}, p = {pooled['p_ttest']:.3g}")  # fmt: skip
    return bench_results.table(
        caption + ".",
        ["collection", "chosen without it", "nDCG@10 chosen", "nDCG@10 RRF", "nDCG@10 best single",
         "R@100 chosen", "R@100 RRF", "R@100 best single", "chosen - RRF", "95% interval", "p (paired t)"],
        rows,
    )  # fmt: skip


def write(specs, rules, reported, scores: Scores, info: dict, result: dict) -> None:
    loo = result["loo"]
    names = [s.name for s in specs]
    collections = bench_results.table(
        "Collections (choosing split: SciFact train, NFCorpus dev; the classic collections' "
        "judged queries split by a fixed hash, scripts/fetch_collections.py)",
        ["collection", "domain", "documents", "choosing queries", "test queries"],
        [[s.name, info[s.name].get("domain", ""), info[s.name].get("documents"),
          len(scores.get(RRF_PLAIN, s.name, s.choose)), loo[s.name]["n_test"]]
         for s in specs],
    )  # fmt: skip
    main = _loo_table(
        "Leave-one-collection-out, the default's first stage (rules without MaxSim): the rule "
        "chosen on the choosing queries of the *other* collections, scored on this "
        "collection's test queries, against plain RRF k=60 (100 candidates each) and the best "
        "single retriever on that test split. Paired t-test and bootstrap 95% interval of the "
        "nDCG@10 difference (chosen - RRF) over the test queries.",
        loo, result["pooled_vs_rrf"],
    )  # fmt: skip
    free = _loo_table(
        "Leave-one-collection-out among the rules with no weight to fit only (RRF k=60, convex "
        "z-score and min-max with equal weights, the query-adaptive rules of "
        "`scripts/adaptive_fusion.py`; every depth), same protocol and columns.",
        result["loo_weight_free"], None,
    )  # fmt: skip
    fixed_rows = []
    for rule, tests in result["fixed_vs_rrf"].items():
        diffs = [t["mean_diff"] for t in tests.values()]
        fixed_rows.append([rule, *_diff_cells(tests), float(np.mean(diffs)), sum(d > 0 for d in diffs)])  # fmt: skip  # noqa: E501
    fixed = bench_results.table(
        "Every rule with no weight to fit, and the default with bm25 RM3 from its fused list "
        "(`+ prf fbN oW`: N feedback documents, original-query weight W), fixed (not "
        "selected), on each test split: nDCG@10 "
        "difference to plain RRF k=60 d=100 (paired t-test p); mean over collections and the "
        "number of collections where it is ahead. A fixed rule has nothing to choose, so these "
        "are out of sample once the rule is fixed; picking the best row afterwards is not",
        ["rule", *names, "mean", "ahead on"],
        fixed_rows,
    )  # fmt: skip
    shipped_rows = []
    for s in names:
        ship = scores.get(result["shipped"], s, "test")
        vs_rrf = paired_test(ship, scores.get(RRF_PLAIN, s, "test"))
        vs_prev = paired_test(ship, scores.get(TODAY, s, "test"))
        shipped_rows.append([s, float(ship.mean()), vs_rrf["mean_diff"], _ci(vs_rrf), vs_rrf["p_ttest"],
                             vs_prev["mean_diff"], _ci(vs_prev), vs_prev["p_ttest"]])  # fmt: skip  # noqa: E501
    shipped = bench_results.table(
        f"The shipped default (`{result['shipped']}`, `retrieval/recipe.py` HYBRID; not chosen "
        "on any test split) on each test split, against plain RRF k=60 and the previous default "
        "(paired t-tests over test queries)",
        ["collection", "nDCG@10", "- RRF", "95% interval", "p", "- previous", "95% interval", "p"],
        shipped_rows,
    )  # fmt: skip
    ahead = _loo_table(
        "Leave-one-collection-out with the choice aimed at the target (`choose_ahead`: the "
        "rule ahead of plain RRF on the most choosing splits of the other collections, then "
        "by its mean margin), rules without MaxSim; same protocol and columns",
        result["loo_ahead"], None,
    )  # fmt: skip
    prf_rows = []
    for rule, tests in result["prf_vs_shipped"].items():
        prf_rows.append([rule, *_diff_cells(tests), sum(t["mean_diff"] > 0 for t in tests.values())])  # fmt: skip  # noqa: E501
    prf_table = bench_results.table(
        f"The default with bm25 RM3 from its fused list against the shipped default "
        f"(`{result['shipped']}`) on each test split: nDCG@10 difference (paired t-test p), "
        "and the number of collections where it is ahead (its latency: `bench_retrieval.py`)",
        ["rule", *names, "ahead on"],
        prf_rows,
    )  # fmt: skip
    with_maxsim = _loo_table(
        "Leave-one-collection-out with the MaxSim rerank among the rules (not the default: "
        "MaxSim is opt-in unless it wins everywhere, and it does not beat its own first stage "
        "on every choosing split)",
        result["loo_with_maxsim"], None,
    )  # fmt: skip
    today = bench_results.table(
        f"The previous default ({TODAY}: convex z-score bm25 0.6 : dense 0.4, tuned on SciFact "
        "train) on each test split, against the LOO choice (paired t-test, chosen - previous)",
        ["collection", "nDCG@10 previous", "nDCG@10 chosen", "chosen - previous", "95% interval", "p"],
        [[s, loo[s]["test"]["nDCG@10"][TODAY], loo[s]["test"]["nDCG@10"][loo[s]["chosen"]],
          loo[s]["vs_today"]["mean_diff"], _ci(loo[s]["vs_today"]), loo[s]["vs_today"]["p_ttest"]]
         for s in names],
    )  # fmt: skip
    usable = [r for r in rules if all(scores.has(r.name, s.name, s.choose) for s in specs)]
    ranked = sorted(
        usable, key=lambda r: -np.mean([scores.mean(r.name, s.name, s.choose) for s in specs])
    )
    shown = ranked[:12] + [
        r for r in usable if r.name in (RRF_PLAIN, TODAY) and r not in ranked[:12]
    ]
    grid = bench_results.table(
        "Choosing splits (never test): nDCG@10 of the best rules by their mean over collections, "
        f"plus RRF and the previous default ({len(usable)} rules tried: RRF k=60; convex z-score and "
        f"min-max with bm25 weight {', '.join(map(str, WEIGHTS))}; depth {', '.join(map(str, DEPTHS))}; "
        "z-score + MaxSim rerank of the top 100; the query-adaptive rules; the default with "
        f"bm25 RM3 from its fused list, {len(PRF_FB_DOCS)} x {len(PRF_ORIG_WEIGHTS)} settings)",
        ["rule", "mean", *names],
        [[r.name, float(np.mean([scores.mean(r.name, s.name, s.choose) for s in specs])),
          *[scores.mean(r.name, s.name, s.choose) for s in specs]] for r in shown],
    )  # fmt: skip
    maxsim_rows = []
    for s in names:
        for w in (0.5, 0.6):
            base = f"zscore {w:.1f}:{1 - w:.1f} d=100"
            if not scores.has(f"{base} + MaxSim", s, "test"):
                continue
            t = paired_test(scores.get(f"{base} + MaxSim", s, "test"), scores.get(base, s, "test"))
            maxsim_rows.append([s, base, scores.mean(base, s, "test"),
                                scores.mean(f"{base} + MaxSim", s, "test"),
                                t["mean_diff"], _ci(t), t["p_ttest"]])  # fmt: skip
    maxsim = bench_results.table(
        "MaxSim rerank of the top 100 on/off, test splits (z(maxsim) + 0.4 z(dense) + 0.8 "
        "z(bm25), the recipe's weights; paired t-test, with - without)",
        ["collection", "first stage", "nDCG@10 without", "nDCG@10 with MaxSim",
         "difference", "95% interval", "p"],
        maxsim_rows,
    )  # fmt: skip
    report_rows = []
    for r in reported:
        report_rows.append([r.name, *[scores.mean(r.name, s.name, "test") for s in specs]])
    extra = bench_results.table(
        "Single retrievers and report-only systems, nDCG@10 on each test split",
        ["system", *names], report_rows,
    )  # fmt: skip
    bench_results.write_result(
        "relevance",
        f"Relevance defaults chosen leave-one-collection-out ({', '.join(names)})",
        [
            main,
            ahead,
            free,
            fixed,
            prf_table,
            shipped,
            today,
            with_maxsim,
            maxsim,
            collections,
            grid,
            extra,
        ],
        notes=[
            "Candidate lists (bm25 and dense MiniLM flat, top 1000; raw MaxSim from the colbert "
            "token store for the union of both top 200s) come from specrag's own indexes through "
            "`pipeline.search_batch`, cached once; every rule fuses them with "
            "`retrieval/fusion.py` as the pipeline does. Test queries never enter a choice.",
            f"The shipped default (`retrieval/recipe.py`) runs `{result['shipped']}`; chosen on "
            f"the choosing splits of all {len(names)} collections now: "
            f"`{result['overall_choice']}` ({result['overall_params']}), which replaces the "
            "default only if the leave-one-out table meets the target (ahead of RRF on every "
            "collection, by >= 0.01 on average); "
            f"with MaxSim among the rules it would be `{result['overall_with_maxsim']}`; with "
            f"the choice aimed at the target (`choose_ahead`), `{result['overall_ahead']}`. MaxSim "
            f"beats its first stage on every choosing split: "
            + ("yes." if result["maxsim_on_every_choosing_split"] else "no, so it stays opt-in."),
            f"Load average when the tables were computed: {os.getloadavg()[0]:.1f} "
            "(quality figures do not depend on it).",
        ],
        order=12,
        data={k: v for k, v in result.items()},
    )


if __name__ == "__main__":
    main()
