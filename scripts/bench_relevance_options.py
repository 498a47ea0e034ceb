"""Relevance options (issue #19 points 3 and 4) on every collection of bench_relevance.py.

Systems, each scored on every collection's *test* queries against the default it would
replace, with a paired test over the queries (``bench_retrieval.paired_test``):

- **bm25 RM3 PRF** (``"prf"``, ``retrieval/prf.py``; fb_docs 10, fb_terms 10,
  orig_weight 0.5, Anserini's defaults): alone against plain bm25, and in place of plain
  bm25 inside the shipped default hybrid (``recipe.py`` HYBRID, read at run time: convex
  min-max, equal weights, 1000 candidates each when measured) and inside plain RRF k=60;
  and the default with RM3 from its fused list (``"feedback": "fused"``, the list
  ``bench_relevance.py`` caches). Lists come from a bm25 index built here through
  ``VersionStore`` (the kind's builder) and ``pipeline.search_batch`` with the documents'
  texts, as the service runs it.
- **Calibrated fusion** (``fusion="calibrated"``): a calibrator per retriever
  (``fit_calibration``, bm25 alone and dense alone, their top 100) fitted on the
  collection's choosing queries; on the test queries each hit's score is the weighted mean
  of the two probabilities (``fusion.convex`` with ``normalization="none"``, what the
  pipeline's calibrated fusion runs), equal weights and 0.6 : 0.4, against the shipped default (and RRF).
- **MaxSim rerank depth** 20 / 50 / 100 on top of the shipped default, from the cached raw
  MaxSim of ``bench_relevance.py`` (the rerank's fusion, ``_maxsim_rerank``), against no
  rerank; its latency measured with the real reranker (``make_reranker`` over the colbert
  token store of a collection's version) per query.

And the **calibration transfer table** (point 4): the shipped default hybrid's fused scores
(the top 100 per query, the depth the relevance stage sees whatever ``k``), a calibrator
fitted on one collection's choosing split (or on the union of all of them, or of all but the
one it is applied to) and applied to every collection's test split: expected calibration error (10 equal-width bins, over the
top 100 hits of every query, unjudged = not relevant) and the precision of the hits kept
at ``min_relevance`` 0.5 (with how many are kept per query).

Reads the candidate lists ``bench_relevance.py`` cached (``--cache``); run that first.
Every collection with both splits cached is measured, the others are listed as missing.

    nice python scripts/bench_relevance_options.py [--collections scifact,cranfield,cisi,npl,...]
"""

from __future__ import annotations

import os

import bench_env

# One thread: on 2 cores shared by several processes, torch's second thread spin-waits and
# turned a 60 ms query encoding into more than a second.
bench_env.offline_with_threads(1)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_relevance as br  # noqa: E402
import bench_results  # noqa: E402
from bench_retrieval import paired_test  # noqa: E402
from scifact_cache import read_corpus  # noqa: E402

from specrag.retrieval.calibration import Calibrator, fit_calibration  # noqa: E402
from specrag.retrieval.fusion import convex  # noqa: E402
from specrag.retrieval.recipe import HYBRID  # noqa: E402
from specrag.retrieval.request import PrfSpec  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PRF = PrfSpec(fb_docs=10, fb_terms=10, orig_weight=0.5)
#: Hits per query a calibration is fitted on and applied to (the relevance stage's depth).
CAL_DEPTH = 100
MIN_RELEVANCE = 0.5
ECE_BINS = 10
MAXSIM_TOPS = (20, 50, 100)
#: The shipped default (``retrieval/recipe.py`` HYBRID) as a bench_relevance rule.
TODAY = br.recipe_rule(HYBRID)
_W_BM25 = HYBRID.weight("bm25") / (HYBRID.weight("bm25") + HYBRID.weight("dense"))
TODAY_RULE = br.fused(HYBRID.fusion, HYBRID.depth, _W_BM25, HYBRID.normalization, HYBRID.rrf_k)
RRF_PLAIN = br.RRF_PLAIN
RRF_RULE = br.fused("rrf", 100)
#: The default with bm25 RM3 from its fused list, as bench_relevance.py caches it (the
#: setting leave-one-collection-out chooses: 3 feedback documents, query weight 0.7).
FUSED_PRF_LIST = br.prf_list_name(3, 0.7)
FUSED_PRF = f"{TODAY}, bm25 RM3 from the fused list (3 docs, weight 0.7)"


# -- PRF lists from a bm25 index built here ------------------------------------------------


def bm25_version(spec: br.CollectionSpec, home: Path):
    """A bm25-only version of the collection (built once under ``home``)."""
    from specrag.indexing.versions import VersionStore
    from specrag.retrieval.version import open_version

    store = VersionStore(home / spec.name)
    if store.current() is None:
        store.build(read_corpus(spec.data), {"bm25": {}})
    return open_version(store)


def prf_lists(spec: br.CollectionSpec, split: str, c: br.Candidates, home: Path, cache: Path):
    """qid -> {ids, rows, scores} of bm25 with RM3 PRF (top 1000), cached in ``cache``."""
    path = cache / spec.name / f"{split}.prf.json"
    key = {"prf": PRF.model_dump(), "query_ids": c.query_ids}
    if path.exists():
        data = json.loads(path.read_text())
        if data["key"] == key:
            return data["lists"]
    from specrag.retrieval import pipeline
    from specrag.retrieval.request import SearchRequest

    version = bm25_version(spec, home)
    text_of = {d.id: d.full_text() for d in read_corpus(spec.data)}
    texts = [c.queries[q] for q in c.query_ids]
    request = SearchRequest(query="-", k=min(br.CACHE_DEPTH, version.n_docs), retriever="bm25")
    plain = pipeline.search_batch(version, texts, request).hits
    hits = pipeline.search_batch(
        version, texts, request.model_copy(update={"prf": PRF}),
        texts=lambda v, ids: [text_of[i] for i in ids],
    ).hits  # fmt: skip
    # The same bm25 as bench_relevance's cached list (same builder and analyzer), so the
    # rows (corpus rows) and scores line up with the cached dense lists.
    for q, hs in zip(c.query_ids, plain, strict=True):
        cached = c.lists["bm25"][q]
        assert [h.doc_id for h in hs[:100]] == cached["ids"][:100], (spec.name, q)
    lists = {
        q: {"ids": [h.doc_id for h in hs], "rows": [version.row_of(h.doc_id) for h in hs],
            "scores": [float(h.score) for h in hs]}
        for q, hs in zip(c.query_ids, hits, strict=True)
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "lists": lists}))
    return lists


def prf_latency(spec: br.CollectionSpec, c: br.Candidates, home: Path) -> dict[str, float]:
    """Median ms per query of bm25 top 100 without and with PRF, one query per call (the
    service's path, texts from memory here instead of the store)."""
    from specrag.retrieval import pipeline
    from specrag.retrieval.request import SearchRequest

    version = bm25_version(spec, home)
    text_of = {d.id: d.full_text() for d in read_corpus(spec.data)}
    plain = SearchRequest(query="-", k=100, retriever="bm25")
    out = {}
    for name, request in (("bm25", plain), ("bm25 + PRF", plain.model_copy(update={"prf": PRF}))):
        times = []
        for q in c.query_ids:
            t0 = time.perf_counter()
            pipeline.search_batch(
                version, [c.queries[q]], request, texts=lambda v, ids: [text_of[i] for i in ids]
            )
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = float(np.median(times))
    return out


def with_bm25(c: br.Candidates, lists: dict) -> br.Candidates:
    """The candidates with bm25's lists replaced (PRF)."""
    return replace(c, lists={**c.lists, "bm25": lists})


# -- calibration from cached lists ---------------------------------------------------------


def top_run(run: br.Run, depth: int = CAL_DEPTH) -> br.Run:
    return {q: sorted(hits, key=lambda h: -h[1])[:depth] for q, hits in run.items()}


def fit(runs_and_qrels: list[tuple[br.Run, dict]], pipeline: dict) -> Calibrator:
    """One calibrator over the top ``CAL_DEPTH`` of several (run, qrels) pairs; query ids
    are prefixed per pair, so collections never share a query."""
    run, qrels = {}, {}
    for i, (r, qr) in enumerate(runs_and_qrels):
        run.update({f"{i}:{q}": hits for q, hits in top_run(r).items()})
        qrels.update({f"{i}:{q}": rel for q, rel in qr.items()})
    return fit_calibration(run, qrels, top_n=CAL_DEPTH, pipeline=pipeline)


def calibrated_fusion(cal: dict[str, Calibrator], w_bm25: float):
    """``fusion="calibrated"`` over the cached lists: each kind's top 100 as probabilities,
    their weighted mean (``convex`` with ``"none"``), rows as tie keys (the pipeline's)."""

    def run(c: br.Candidates) -> br.Run:
        out: br.Run = {}
        for q in c.query_ids:
            lists = []
            for kind in ("bm25", "dense"):
                pairs = c.pairs(kind, q, CAL_DEPTH)
                p = cal[kind].predict(np.array([s for _, s in pairs])) if pairs else []
                lists.append(list(zip([r for r, _ in pairs], np.asarray(p).tolist(), strict=True)))
            ranked = convex(lists, [w_bm25, 1 - w_bm25], "none", tie_key=int)
            ids = c.ids_of(q)
            out[q] = [(ids[row], score) for row, score in ranked]
        return out

    return run


def transfer_figures(cal: Calibrator, run: br.Run, qrels: dict) -> dict:
    """ECE and precision at MIN_RELEVANCE of ``cal`` on ``run``'s top CAL_DEPTH hits."""
    ps, ys = [], []
    for q, hits in top_run(run).items():
        if not hits:
            continue
        ps.append(cal.predict(np.array([s for _, s in hits])))
        ys.append(np.array([qrels.get(q, {}).get(d, 0) > 0 for d, _ in hits], dtype=float))
    p, y = np.concatenate(ps), np.concatenate(ys)
    bins = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = sum(
        (bins == b).mean() * abs(y[bins == b].mean() - p[bins == b].mean())
        for b in range(ECE_BINS)
        if (bins == b).any()
    )
    kept = p >= MIN_RELEVANCE
    return {
        "ece": float(ece),
        "precision": float(y[kept].mean()) if kept.any() else float("nan"),
        "kept_per_query": float(kept.sum() / len(ps)),
        "recall_kept": float(y[kept].sum() / max(y.sum(), 1)),
        "base_rate": float(y.mean()),
        "mean_p": float(p.mean()),
    }


# -- MaxSim depth --------------------------------------------------------------------------


def maxsim_at(top: int):
    """The shipped default, its top ``top`` reranked by MaxSim (the recipe's fusion)."""

    def run(c: br.Candidates) -> br.Run:
        out = {}
        for q, hits in TODAY_RULE(c).items():
            lists = [c.pairs("bm25", q, HYBRID.depth), c.pairs("dense", q, HYBRID.depth)]
            head = br._maxsim_rerank(c, q, hits[:top], lists, c.ids_of(q), HYBRID.maxsim_fusion)
            out[q] = head + hits[top:]
        return out

    return run


def version_folder(name: str, homes: list[Path], existing: dict[str, Path]) -> Path | None:
    """The folder of ``bench_relevance.py``'s version of a collection (with its colbert
    token store): given by ``--collection-dir``, else found in one of the index homes."""
    if name in existing:
        return existing[name]
    found = [f for home in homes for f in sorted((home / "collections").glob(f"{name}.*"))]
    return found[-1] if found else None


def maxsim_latency(spec: br.CollectionSpec, c: br.Candidates, folder: Path | None) -> dict:
    """Per-query ms of the MaxSim rerank (query encoding + MaxSim over the token store) of
    the shipped default top ``top`` hits, for each depth, and of the query encoding alone
    (``encode``); medians over the test queries."""
    from specrag.indexing.versions import VersionStore
    from specrag.rerank import make_reranker
    from specrag.retrieval.version import open_version
    from specrag.types import Hit

    if folder is None:
        return {}
    version = open_version(VersionStore(folder))
    if "colbert" not in version.searchers:
        return {}
    reranker = make_reranker("maxsim", None, version, HYBRID.maxsim_fusion)
    base = TODAY_RULE(c)
    encode = []
    for q in c.query_ids:
        t0 = time.perf_counter()
        reranker.encoder.encode_queries([c.queries[q]])
        encode.append((time.perf_counter() - t0) * 1000)
    out = {"encode": float(np.median(encode))}
    for top in MAXSIM_TOPS:
        times = []
        for q in c.query_ids:
            hits = [Hit(d, s, {}) for d, s in base[q][:top]]
            rows = np.array([version.row_of(h.doc_id) for h in hits], dtype=np.int64)
            t0 = time.perf_counter()
            reranker.rerank(c.queries[q], hits, rows=rows)
            times.append((time.perf_counter() - t0) * 1000)
        out[top] = float(np.median(times))
    return out


# -- the run -------------------------------------------------------------------------------


def verdicts(comparisons, paired: dict, specs) -> list[str]:
    """One sentence per option: where it wins or loses significantly (p < 0.05)."""
    out = []
    for system, base in comparisons:
        tests = {s.name: paired.get(f"{system} vs {base} on {s.name}") for s in specs}
        tests = {n: t for n, t in tests.items() if t}
        if not tests:
            continue
        wins = [n for n, t in tests.items() if t["mean_diff"] > 0 and t["p_ttest"] < 0.05]
        losses = [n for n, t in tests.items() if t["mean_diff"] < 0 and t["p_ttest"] < 0.05]
        ahead = sum(t["mean_diff"] > 0 for t in tests.values())
        out.append(
            f"*{system}* vs *{base}*: ahead on {ahead} of {len(tests)}; significantly better "
            f"on {', '.join(wins) or 'none'}, worse on {', '.join(losses) or 'none'}."
        )
    return out


class Scores:
    """Per-query metrics of each system on each collection's test split."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def add(self, system: str, c: br.Candidates, run: br.Run) -> None:
        self.values[(system, c.collection)] = br.per_query(run, c.qrels, c.query_ids)

    def has(self, system: str, collection: str) -> bool:
        return (system, collection) in self.values

    def get(self, system: str, collection: str, measure: str = "nDCG@10") -> np.ndarray:
        return self.values[(system, collection)][measure]

    def mean(self, system: str, collection: str, measure: str = "nDCG@10") -> float:
        return float(self.get(system, collection, measure).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    br.add_collection_arguments(parser, "scifact,cranfield,cisi,npl,cacm,med,adi,lisa,nfcorpus")
    parser.add_argument(
        "--index-home",
        type=Path,
        action="append",
        default=[],
        help="bench_relevance's index homes (repeat; default <cache>/home)",
    )
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "relevance_options")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    homes = args.index_home or [args.cache / "home"]
    existing = {k: Path(v) for k, v in (item.split("=", 1) for item in args.collection_dir)}

    wanted = br.collection_specs(args.collections.split(","), args.scifact, args.collections_dir)
    specs = [
        s for s in wanted
        if all((args.cache / s.name / f"{x}.json").exists() for x in (s.choose, "test"))
    ]  # fmt: skip
    missing = [s.name for s in wanted if s not in specs]
    print(f"measuring {[s.name for s in specs]}; not cached: {missing}", file=sys.stderr)
    cands = {
        (s.name, split): br.load_candidates(s, split, args.cache)
        for s in specs
        for split in (s.choose, "test")
    }
    scores = Scores()
    prf_ms: dict[str, dict[str, float]] = {}
    cal_fits: dict[str, dict[str, Calibrator]] = {}
    for s in specs:
        choose, test = cands[(s.name, s.choose)], cands[(s.name, "test")]
        prf = prf_lists(s, "test", test, args.work / "home", args.work)
        prf_ms[s.name] = prf_latency(s, test, args.work / "home")
        prf_c = with_bm25(test, prf)
        kind_record = lambda k: {"retrievers": [{"kind": k}], "fusion": "none"}  # noqa: E731
        cal_fits[s.name] = {
            k: fit([(br.single(k)(choose), choose.qrels)], kind_record(k)) for k in ("bm25", "dense")
        }  # fmt: skip
        systems = {
            "bm25": br.single("bm25")(test),
            "bm25 + PRF": br.single("bm25")(prf_c),
            TODAY: TODAY_RULE(test),
            f"{TODAY}, bm25 + PRF": TODAY_RULE(prf_c),
            RRF_PLAIN: RRF_RULE(test),
            f"{RRF_PLAIN}, bm25 + PRF": RRF_RULE(prf_c),
            FUSED_PRF: br.single(FUSED_PRF_LIST)(test),
            "calibrated 0.5:0.5": calibrated_fusion(cal_fits[s.name], 0.5)(test),
            "calibrated 0.6:0.4": calibrated_fusion(cal_fits[s.name], 0.6)(test),
        }
        if test.maxsim:
            for top in MAXSIM_TOPS:
                systems[f"{TODAY} + MaxSim top {top}"] = maxsim_at(top)(test)
        for name, run in systems.items():
            scores.add(name, test, run)

    comparisons = [
        ("bm25 + PRF", "bm25"),
        (f"{TODAY}, bm25 + PRF", TODAY),
        (f"{RRF_PLAIN}, bm25 + PRF", RRF_PLAIN),
        (FUSED_PRF, TODAY),
        ("calibrated 0.5:0.5", TODAY),
        ("calibrated 0.6:0.4", TODAY),
        ("calibrated 0.5:0.5", RRF_PLAIN),
        *[(f"{TODAY} + MaxSim top {t}", TODAY) for t in MAXSIM_TOPS],
    ]
    rows, data = [], {"paired": {}, "prf_ms_per_query": prf_ms, "missing": missing}
    for system, base in comparisons:
        for s in specs:
            if not scores.has(system, s.name):
                continue
            t = paired_test(scores.get(system, s.name), scores.get(base, s.name))
            r = {m: (scores.mean(system, s.name, m), scores.mean(base, s.name, m))
                 for m in br.MEASURES}  # fmt: skip
            data["paired"][f"{system} vs {base} on {s.name}"] = {**t, **r}
            rows.append([system, base, s.name, r["nDCG@10"][0], r["nDCG@10"][1], t["mean_diff"],
                         br._ci(t), t["p_ttest"], r["R@100"][0], r["R@100"][1]])  # fmt: skip
    options = bench_results.table(
        "Each option against the default it would replace, on every collection's test "
        "queries: nDCG@10 and R@100, the paired difference of nDCG@10 (option - default) "
        "with its bootstrap 95% interval and paired t-test p",
        ["option", "against", "collection", "nDCG@10 option", "nDCG@10 default", "difference",
         "95% interval", "p (paired t)", "R@100 option", "R@100 default"],
        rows,
    )  # fmt: skip

    latency_rows = []
    for s in specs:
        ms = maxsim_latency(s, cands[(s.name, "test")], version_folder(s.name, homes, existing))
        data.setdefault("maxsim_ms", {})[s.name] = ms
        for top in MAXSIM_TOPS if ms else ():
            name = f"{TODAY} + MaxSim top {top}"
            latency_rows.append([s.name, top, ms[top], ms["encode"],
                                 scores.mean(name, s.name), scores.mean(TODAY, s.name)])  # fmt: skip
    latency = bench_results.table(
        "MaxSim rerank depth against its latency: median ms per query of the rerank alone "
        "(query encoding + MaxSim over the stored int8 tokens, `make_reranker`), and nDCG@10 "
        "with and without it on the test queries (one torch thread)",
        ["collection", "rerank depth", "rerank ms p50", "of which query encoding",
         "nDCG@10 reranked", "nDCG@10 without"],
        latency_rows,
    )  # fmt: skip

    # Calibration transfer: the shipped default, fitted on one choosing split or the union.
    hybrid_record = {
        "retrievers": [{"kind": k, "weight": HYBRID.weight(k), "k": None} for k in ("bm25", "dense")],
        "fusion": HYBRID.fusion, "normalization": HYBRID.normalization,
    }  # fmt: skip
    runs = {
        (s.name, split): (TODAY_RULE(cands[(s.name, split)]), cands[(s.name, split)].qrels)
        for s in specs
        for split in (s.choose, "test")
    }
    fitted = {s.name: fit([runs[(s.name, s.choose)]], hybrid_record) for s in specs}
    if len(specs) > 1:
        fitted["union"] = fit([runs[(s.name, s.choose)] for s in specs], hybrid_record)
    transfer, transfer_rows = {}, []
    targets = {fit_on: specs for fit_on in fitted}
    for s in specs if len(specs) > 2 else ():
        others = [o for o in specs if o is not s]
        name = "union of the others"
        fitted[f"{name} ({s.name})"] = fit(
            [runs[(o.name, o.choose)] for o in others], hybrid_record
        )
        targets[f"{name} ({s.name})"] = [s]
    for fit_on, cal in fitted.items():
        for s in targets[fit_on]:
            f = transfer_figures(cal, *runs[(s.name, "test")])
            transfer[f"{fit_on} -> {s.name}"] = f
            transfer_rows.append([fit_on, s.name, "yes" if fit_on == s.name else "",
                                  f["ece"], f["precision"], f["kept_per_query"], f["recall_kept"],
                                  f["base_rate"]])  # fmt: skip
    data["transfer"] = transfer
    own = [transfer[f"{s.name} -> {s.name}"]["ece"] for s in specs]
    cross = [f["ece"] for k, f in transfer.items() if k.split(" -> ")[0] in
             {o.name for o in specs} - {k.split(" -> ")[1]}]  # fmt: skip
    loo_union = [f["ece"] for k, f in transfer.items() if k.startswith("union of the others")]
    transfer_note = (
        f"Calibration transfer (ECE, lower is better): fitted on the same collection "
        f"{min(own):.3f}-{max(own):.3f}; on another one {min(cross, default=0):.3f}-"
        f"{max(cross, default=0):.3f}; on the union of the others "
        f"{min(loo_union, default=0):.3f}-{max(loo_union, default=0):.3f}. "
        "A calibration does not carry over to a collection whose share of relevant hits "
        "differs: calibrate on the collection's own training queries."
    )
    transfer_table = bench_results.table(
        "Calibration transfer: a calibrator of the shipped default hybrid (its fused scores, top "
        f"{CAL_DEPTH} per query) fitted on one collection's choosing queries, on the union "
        "of all, or on the union of all but the one it is applied to, applied to each "
        "collection's test queries: expected calibration error "
        f"({ECE_BINS} bins, over the top {CAL_DEPTH}), and at min_relevance {MIN_RELEVANCE}: "
        "precision of the kept hits, hits kept per query, share of the relevant hits in the "
        "top 100 that are kept; base rate = relevant share of the top 100",
        ["fitted on", "applied to", "same", "ECE", f"precision @ p>={MIN_RELEVANCE}",
         "kept / query", "recall of kept", "base rate"],
        transfer_rows,
    )  # fmt: skip
    load = os.getloadavg()
    notes = [
        f"Measured on {', '.join(s.name for s in specs)}"
        + (f"; not measured (no cached lists yet): {', '.join(missing)}" if missing else "")
        + ". Candidate lists: `scripts/bench_relevance.py`'s cache (bm25, dense MiniLM, raw "
        "MaxSim); PRF lists: a bm25 index built by this script, searched through "
        "`pipeline.search_batch` with the documents' texts (checked to give the cached bm25 "
        "top 100 without PRF).",
        transfer_note,
        "Options stay opt-in unless they win on every collection (`docs/design.md`). "
        + " ".join(verdicts(comparisons, data["paired"], specs)),
        "bm25 ms per query (median, one query a call, top 100) without / with PRF: "
        + ", ".join(f"{k} {v['bm25']:.1f} / {v['bm25 + PRF']:.1f}" for k, v in prf_ms.items())
        + f". Load average during the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(1/5/15 min; 2 cores shared by several engineers: latencies are noisy).",
    ]
    for table in (options, latency, transfer_table):
        for row in table["rows"]:
            print(" | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    if not args.no_write:
        bench_results.write_result(
            "relevance_options",
            "Relevance options across collections: bm25 PRF, calibrated fusion, MaxSim depth, "
            "calibration transfer",
            [options, latency, transfer_table],
            notes=notes,
            order=13,
            data=data,
        )


if __name__ == "__main__":
    main()
