"""Late interaction, reranking and calibrated relevance on SciFact (full corpus, test
queries; every weight tuned on the train queries only).

1. First stages: bm25 (the ``bm25`` kind), dense (exact cosine over MiniLM's pooled
   embeddings, the ``dense`` kind's flat index) and their RRF ("hybrid" here).
2. MaxSim rerank of the dense and hybrid top-100 over MiniLM's own token embeddings with
   fp32, int8 and 1-bit token codes (``indexing/kinds/colbert/token_store.py``), alone and
   fused with first-stage scores (weights from a train grid); the codecs' agreement with
   fp32 MaxSim.
3. Calibrated ``min_relevance`` vs raw score thresholds at matched recall (dense, and the
   reranked pipeline), fitted on train.
4. The offline default pipeline through the service's code: ``retrieval.pipeline`` with the
   ``HYBRID`` recipe (live query encoding) and a ``RerankStage`` of ``MaxSimReranker`` over
   the int8 token store with the recipe's ``maxsim_fusion`` weights; the weights a train
   grid would pick (shown, not adopted); the cross-encoder reranker over the top 20 when
   ``scripts/train_cross_encoder.py`` has trained one.
5. The ``colbert`` kind as a first stage (``--skip-colbert`` leaves it out).

The MiniLM token embeddings of every document and query are encoded once and cached (fp16)
under ``.cache/late_interaction/`` keyed by model + text hash; the same forward pass gives
the pooled (dense) embeddings. One thread. Writes ``benchmarks/results/
late_interaction_scifact.json``.

Run: nice .venv/bin/python scripts/late_interaction.py [--data ../shared/data/scifact]
Check on a slice: python scripts/scifact_cache.py --write-slice /tmp/sf --slice-docs 200,
then ``--data /tmp/sf --results-dir /tmp/results``.
"""

from __future__ import annotations

import os

import bench_env

bench_env.offline_with_threads(1)  # single-thread figures on a shared machine

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_results  # noqa: E402
from scifact_cache import add_data_argument, read_corpus, read_qrels, read_queries  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "late_interaction"
MODEL = "all-MiniLM-L6-v2"


@dataclass
class SciFact:
    docs: list  # specrag.types.Document, corpus order
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, dict[str, int]]]  # split -> qid -> doc_id -> rel

    def queries_of(self, split: str) -> tuple[list[str], list[str]]:
        index = {q: i for i, q in enumerate(self.query_ids)}
        qids = [q for q in self.query_ids if q in self.qrels[split]]
        return qids, [self.query_texts[index[q]] for q in qids]


def load_scifact(data: Path) -> SciFact:
    """BEIR SciFact, every query and the train and test qrels (scifact_cache's readers);
    documents encoded as ``Document.full_text()``."""
    docs = read_corpus(data)
    query_ids, query_texts = read_queries(data)
    qrels = {split: read_qrels(data, split) for split in ("train", "test")}
    return SciFact(
        docs, [d.id for d in docs], [d.full_text() for d in docs], query_ids, query_texts, qrels
    )


@dataclass
class TokenCache:
    """Concatenated fp16 token vectors with offsets, plus pooled (dense) embeddings."""

    tokens: np.ndarray  # (n_tokens, dim) float16
    offsets: np.ndarray  # (n + 1,) int64
    pooled: np.ndarray  # (n, dim) float32
    key: str  # model + text hash: names what is built from these tokens

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def item(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]].astype(np.float32)


def _text_key(model: str, texts: list[str]) -> str:
    h = hashlib.sha256(model.encode())
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def token_cache(texts: list[str], name: str, model: str = MODEL, batch: int = 256) -> TokenCache:
    """Token + pooled embeddings of ``texts``, encoded once and cached on disk."""
    from specrag.indexing.encoders.tokens import TokenEncoder

    key = _text_key(model, texts)
    folder = CACHE / f"{name}-{key}"
    if (folder / "offsets.npy").exists():
        return TokenCache(
            np.load(folder / "tokens.npy", mmap_mode="r"),
            np.load(folder / "offsets.npy"),
            np.load(folder / "pooled.npy"),
            key,
        )
    encoder = TokenEncoder(model, batch_size=32)
    chunks, pooled, lengths = [], [], []
    started = time.time()
    for start in range(0, len(texts), batch):
        toks, pool = encoder.encode_with_pooled(texts[start : start + batch])
        chunks.extend(t.astype(np.float16) for t in toks)
        lengths.extend(len(t) for t in toks)
        pooled.append(pool)
        print(
            f"  {name}: {start + len(toks)}/{len(texts)} encoded, {time.time() - started:.0f}s",
            file=sys.stderr,
            flush=True,
        )
    folder.mkdir(parents=True, exist_ok=True)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    np.save(folder / "tokens.npy", np.concatenate(chunks))
    np.save(folder / "pooled.npy", np.concatenate(pooled))
    np.save(folder / "offsets.npy", offsets)  # written last: marks the cache complete
    return token_cache(texts, name, model, batch)


# -- first stages -------------------------------------------------------------------------

Ranked = dict[str, list[tuple[int, float]]]  # qid -> [(doc row, score)] best first


def dense_run(docs: TokenCache, queries: TokenCache, q_index: dict[str, int], qids, depth=100):
    """Exact cosine top-``depth`` over the pooled MiniLM embeddings (the dense kind, flat)."""
    out: Ranked = {}
    for qid in qids:
        s = docs.pooled @ queries.pooled[q_index[qid]]
        top = np.argsort(-s, kind="stable")[:depth]
        out[qid] = [(int(r), float(s[r])) for r in top]
    return out


def bm25_run(data: SciFact, qids, texts, depth=100) -> Ranked:
    """The ``bm25`` kind, built once under .cache."""
    from specrag.indexing.versions import VersionStore
    from specrag.retrieval.version import open_version

    store = VersionStore(CACHE / f"bm25-{_text_key('bm25', data.doc_texts)}")
    if store.current() is None:
        store.build(data.docs, {"bm25": {}})
    version = open_version(store)
    hits = version.searchers["bm25"].search(list(texts), min(depth, version.n_docs))
    return {
        qid: [(version.row_of(h.doc_id), h.score) for h in hs]
        for qid, hs in zip(qids, hits, strict=True)
    }


def rrf_run(a: Ranked, b: Ranked, depth=100, k=60.0) -> Ranked:
    from specrag.retrieval.fusion import rrf

    out = {}
    for qid in a:
        fused = rrf([[r for r, _ in a[qid]], [r for r, _ in b[qid]]], k=k, tie_key=lambda r: r)
        out[qid] = [(int(r), float(s)) for r, s in fused[:depth]]
    return out


# -- metrics --------------------------------------------------------------------------------


def evaluate_run(run: Ranked, data: SciFact, split: str) -> dict[str, float]:
    from specrag.retrieval.evaluation import evaluate
    from specrag.types import Hit

    hits = {q: [Hit(data.doc_ids[r], s) for r, s in lst] for q, lst in run.items()}
    return evaluate(hits, data.qrels[split])


# -- MaxSim rerank --------------------------------------------------------------------------


def codec_store(docs: TokenCache, codec_name: str, sample: int = 131072):
    """A token store of the cached tokens under ``codec_name`` (built once under .cache)."""
    from specrag.indexing.kinds.colbert.token_store import TokenStore, TokenStoreWriter, make_codec

    folder = CACHE / "stores" / f"{codec_name}-{docs.key}"
    if (folder / "store.json").exists():
        return TokenStore.open(folder)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(docs.tokens), size=min(sample, len(docs.tokens)), replace=False))
    codec = make_codec(codec_name, docs.tokens.shape[1]).fit(docs.tokens[rows].astype(np.float32))
    writer = TokenStoreWriter(folder, codec)
    for start in range(0, len(docs.tokens), 65536):
        writer.append_rows(np.asarray(docs.tokens[start : start + 65536], dtype=np.float32))
    return writer.close(np.diff(docs.offsets))


def maxsim_run(first: Ranked, queries: TokenCache, q_index, docs: TokenCache, store=None):
    """MaxSim of every first-stage candidate: fp32 over the cache, or over a codec store.
    Returns (qid -> maxsim scores aligned with first[qid], seconds per query)."""
    from specrag.indexing.kinds.colbert.maxsim import maxsim_dense, maxsim_store

    out, started = {}, time.perf_counter()
    for qid, lst in first.items():
        rows = np.array([r for r, _ in lst], dtype=np.int64)
        q = queries.item(q_index[qid])
        if store is None:
            toks = [docs.item(r) for r in rows]
            offsets = np.concatenate([[0], np.cumsum([len(t) for t in toks])])
            out[qid] = maxsim_dense(q, np.concatenate(toks), offsets)
        else:
            out[qid] = maxsim_store(q, store, rows)
    return out, (time.perf_counter() - started) / max(len(first), 1)


def fuse(first: Ranked, maxsim: dict, weights: dict[str, float], extra: dict | None = None):
    """Rerank: z(maxsim) + w_first * z(first-stage score) [+ w_name * z(extra[name])], with
    the z-score the MaxSim reranker uses."""
    from specrag.retrieval.fusion import zscore as z

    out = {}
    for qid, lst in first.items():
        score = z(maxsim[qid].astype(np.float64))
        if weights.get("first"):
            score = score + weights["first"] * z(np.array([s for _, s in lst]))
        for name, w in weights.items():
            if name != "first" and w:
                score = score + w * z(extra[name][qid])
        order = np.lexsort((np.arange(len(lst)), -score))
        out[qid] = [(lst[i][0], float(score[i])) for i in order]
    return out


def component_scores(first: Ranked, runs: dict[str, Ranked]) -> dict[str, dict]:
    """Each candidate's raw score in each first-stage run, the run's lowest score where it
    did not return the candidate: exactly what MaxSimReranker's fusion sees in a hybrid
    search (``hit.scores`` holds only the retrievers that returned the hit)."""
    out: dict[str, dict] = {name: {} for name in runs}
    for name, run in runs.items():
        for qid, lst in first.items():
            got = dict(run[qid])
            floor = min(got.values(), default=0.0)
            out[name][qid] = np.array([got.get(int(r), floor) for r, _ in lst], dtype=np.float64)
    return out


def tune(first_train, maxsim_train, data, grid, extra=None) -> tuple[dict, float]:
    """The weights with the best TRAIN nDCG@10 (never looks at test)."""
    best, best_ndcg = None, -1.0
    for weights in grid:
        ndcg = evaluate_run(fuse(first_train, maxsim_train, weights, extra), data, "train")[
            "nDCG@10"
        ]
        if ndcg > best_ndcg + 1e-9:
            best, best_ndcg = weights, ndcg
    return best, best_ndcg


# -- calibration ----------------------------------------------------------------------------


def threshold_table(run_test: Ranked, calibrator, data, recalls=(0.3, 0.5, 0.6, 0.7, 0.8)):
    """Precision at matched recall: one global raw-score threshold vs one probability
    threshold, over all (query, hit) pairs of the test run (recall over all test qrels)."""
    qrels = data.qrels["test"]
    n_rel = sum(sum(1 for g in r.values() if g > 0) for r in qrels.values())
    raw, prob, label = [], [], []
    for qid, lst in run_test.items():
        s = np.array([x for _, x in lst])
        raw.append(s)
        prob.append(calibrator.predict(s))
        label.append(np.array([qrels.get(qid, {}).get(data.doc_ids[r], 0) > 0 for r, _ in lst]))
    raw, prob, label = np.concatenate(raw), np.concatenate(prob), np.concatenate(label)

    def curve(score):
        order = np.argsort(-score, kind="stable")
        tp = np.cumsum(label[order])
        return tp / np.arange(1, len(tp) + 1), tp / n_rel, score[order]

    p_raw, r_raw, t_raw = curve(raw)
    p_cal, r_cal, t_cal = curve(prob)
    f1 = 2 * p_raw * r_raw / np.maximum(p_raw + r_raw, 1e-12)
    best = int(np.argmax(f1))
    rows = []
    for target in (float(r_raw[best]), *recalls):
        i = int(np.searchsorted(r_raw, target))
        j = int(np.searchsorted(r_cal, target))
        if i >= len(r_raw) or j >= len(r_cal):
            continue
        rows.append(
            {
                "recall": target,
                "raw_threshold": float(t_raw[i]),
                "raw_precision": float(p_raw[i]),
                "min_relevance": float(t_cal[j]),
                "calibrated_precision": float(p_cal[j]),
                "calibrated_recall": float(r_cal[j]),
                "best_raw_f1": i == best,
            }
        )
    return rows


# -- colbert kind ---------------------------------------------------------------------------


def colbert_first_stage(docs: TokenCache, queries: TokenCache, q_index, qids, data, **cfg):
    """Build the colbert kind from the cached tokens (once) and search the test queries
    with cached query tokens (QPS excludes query encoding)."""
    from specrag.indexing.kinds.colbert.build import build_token_index
    from specrag.indexing.kinds.colbert.config import ColbertConfig
    from specrag.indexing.kinds.colbert.search import ColbertSearcher

    build_cfg = {k: v for k, v in cfg.items() if k in ("compression", "n_centroids")}
    name = "-".join(f"{k}={v}" for k, v in sorted(build_cfg.items()))
    folder = CACHE / "colbert" / f"{name}-{docs.key}"
    config = ColbertConfig(exhaustive_max_docs=0, **cfg)
    stats_file = folder / "stats.json"
    if not stats_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        started = time.time()
        batches = (
            [docs.item(i) for i in range(s, min(s + 512, len(docs)))]
            for s in range(0, len(docs), 512)
        )
        stats = build_token_index(batches, folder, config)
        stats["build_seconds"] = round(time.time() - started, 1)
        stats_file.write_text(json.dumps(stats))
    stats = json.loads(stats_file.read_text())
    searcher = ColbertSearcher(folder, config, np.array(data.doc_ids), encoder=None)
    qtoks = [queries.item(q_index[q]) for q in qids]
    started = time.perf_counter()
    results = searcher.search_encoded(qtoks, 100)
    seconds = time.perf_counter() - started
    row_of = {d: i for i, d in enumerate(data.doc_ids)}
    run = {
        q: [(row_of[h.doc_id], h.score) for h in hs] for q, hs in zip(qids, results, strict=True)
    }
    return run, len(qids) / seconds, stats


def run_all(data: SciFact, queries: TokenCache, docs: TokenCache, skip_colbert=False) -> dict:
    q_index = {q: i for i, q in enumerate(data.query_ids)}
    splits = {s: data.queries_of(s) for s in ("train", "test")}
    results: dict = {
        "n_docs": len(docs),
        "n_tokens": int(len(docs.tokens)),
        "n_test_queries": len(splits["test"][0]),
        "n_train_queries": len(splits["train"][0]),
    }

    first: dict[str, dict[str, Ranked]] = {}
    bm25 = {}
    for split, (qids, texts) in splits.items():
        dense = dense_run(docs, queries, q_index, qids)
        bm25[split] = bm25_run(data, qids, texts)
        first[split] = {"dense": dense, "hybrid": rrf_run(bm25[split], dense)}
        results.setdefault("first_stage", {})[split] = {
            name: evaluate_run(run, data, split)
            for name, run in {**first[split], "bm25": bm25[split]}.items()
        }
    log(json.dumps(results["first_stage"], indent=1))

    stores = {"fp32": None, **{c: codec_store(docs, c) for c in ("int8", "binary")}}
    results["bytes_per_doc"] = {
        "fp32": 4 * docs.tokens.shape[1] * len(docs.tokens) / len(docs),
        **{c: st.nbytes() / len(docs) for c, st in stores.items() if st is not None},
    }
    maxsim: dict = {}
    rerank: dict = {}
    for codec, store in stores.items():
        for fs in ("dense", "hybrid"):
            for split in splits:
                maxsim[codec, fs, split], secs = maxsim_run(
                    first[split][fs], queries, q_index, docs, store
                )
            test_run = fuse(first["test"][fs], maxsim[codec, fs, "test"], {})
            rerank[f"{fs}>maxsim[{codec}]"] = {
                **evaluate_run(test_run, data, "test"),
                "ms_per_query": 1000 * secs,
            }
            log(f"{fs}>maxsim[{codec}] {rerank[f'{fs}>maxsim[{codec}]']}")
    # agreement of compressed MaxSim with fp32 MaxSim on the same candidates
    agreement = {}
    for codec in ("int8", "binary"):
        diffs, top10 = [], []
        for qid in first["test"]["dense"]:
            a, b = maxsim["fp32", "dense", "test"][qid], maxsim[codec, "dense", "test"][qid]
            diffs.append(np.abs(a - b).mean() / np.abs(a).mean())
            top10.append(len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10)
        agreement[codec] = {
            "mean_rel_score_error": float(np.mean(diffs)),
            "top10_overlap_with_fp32": float(np.mean(top10)),
        }
    results["codec_agreement"] = agreement
    log(json.dumps(agreement))

    # fusion with the first stage, tuned on TRAIN only, for the default codec
    codec = "int8"
    grid_first = [{"first": w} for w in np.round(np.arange(0, 2.01, 0.1), 2).tolist()]
    extra = {
        s: component_scores(first[s]["hybrid"], {"dense": first[s]["dense"], "bm25": bm25[s]})
        for s in splits
    }
    grid_comp = [
        {"dense": a, "bm25": b}
        for a in np.arange(0, 1.01, 0.1).round(2).tolist()
        for b in np.arange(0, 1.01, 0.1).round(2).tolist()
    ]
    for fs in ("dense", "hybrid"):
        w, train_ndcg = tune(first["train"][fs], maxsim[codec, fs, "train"], data, grid_first)
        test_run = fuse(first["test"][fs], maxsim[codec, fs, "test"], w)
        rerank[f"{fs}>maxsim[{codec}]+first(w={w['first']})"] = {
            **evaluate_run(test_run, data, "test"),
            "train_nDCG@10": train_ndcg,
        }
    w, train_ndcg = tune(
        first["train"]["hybrid"], maxsim[codec, "hybrid", "train"], data, grid_comp, extra["train"]
    )
    test_run = fuse(first["test"]["hybrid"], maxsim[codec, "hybrid", "test"], w, extra["test"])
    rerank[f"hybrid>maxsim[{codec}]+dense({w['dense']})+bm25({w['bm25']})"] = {
        **evaluate_run(test_run, data, "test"),
        "train_nDCG@10": train_ndcg,
    }
    results["rerank"] = rerank
    results["pipeline_weights"] = w
    log(json.dumps(rerank, indent=1))

    # calibration: fitted on TRAIN runs, thresholds compared on TEST
    from specrag.retrieval.calibration import fit_calibration

    def run_for_fit(run: Ranked) -> dict:
        return {q: [(data.doc_ids[r], s) for r, s in lst] for q, lst in run.items()}

    final = {s: fuse(first[s]["hybrid"], maxsim[codec, "hybrid", s], w, extra[s]) for s in splits}
    calib = {}
    for name, runs in (("dense", {s: first[s]["dense"] for s in splits}), ("pipeline", final)):
        started = time.perf_counter()
        calibrator = fit_calibration(run_for_fit(runs["train"]), data.qrels["train"], top_n=100)
        calib[name] = {
            "fit_seconds": time.perf_counter() - started,
            "table": threshold_table(runs["test"], calibrator, data),
        }
    results["calibration"] = calib
    log(json.dumps(calib, indent=1))

    if not skip_colbert:
        colbert = {}
        qids = splits["test"][0]
        for cfg in (
            {"compression": "int8", "nprobe": 4, "candidates": 1024},
            {"compression": "int8", "nprobe": 2, "candidates": 256},
            {"compression": "binary", "nprobe": 2, "candidates": 256},
        ):
            run, qps, stats = colbert_first_stage(docs, queries, q_index, qids, data, **cfg)
            name = ",".join(f"{k}={v}" for k, v in cfg.items())
            colbert[name] = {
                **evaluate_run(run, data, "test"),
                "QPS": qps,
                "bytes_per_doc": stats["bytes_per_doc"],
                "n_centroids": stats["n_centroids"],
                "build_seconds": stats["build_seconds"],
            }
            log(f"colbert {name}: {colbert[name]}")
        results["colbert"] = colbert
        results["query_encode_ms"] = query_encode_ms(splits["test"][1][:100])
    return results


# -- the default pipeline, as the service runs it -------------------------------------------


class _MemoEncoder:
    """A TokenEncoder whose query encodings are kept, so a weight grid encodes each query once."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.memo: dict[str, np.ndarray] = {}

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        for t in texts:
            if t not in self.memo:
                self.memo[t] = self.encoder.encode_queries([t])[0]
        return [self.memo[t] for t in texts]


def scifact_version(data: SciFact):
    """A bm25 + dense (flat MiniLM) version of SciFact, built once under .cache."""
    from specrag.indexing.versions import VersionStore
    from specrag.retrieval.version import open_version

    # scripts/bench_retrieval.py builds the same collection; reuse it when it is there.
    for folder in (
        REPO / ".cache" / "bench_retrieval_home" / "collections" / "scifact",
        CACHE / f"bm25-dense-{_text_key('bm25+dense', data.doc_texts)}",
    ):
        store = VersionStore(folder)
        if store.current() is not None:
            version = open_version(store)
            if list(version.doc_ids) == data.doc_ids:  # rows in corpus order
                return version
    log("building bm25 + dense over SciFact (MiniLM encoding: minutes) ...")
    store.build(data.docs, {"bm25": {}, "dense": {}})
    return open_version(store)


def served_pipeline(data: SciFact, docs: TokenCache, cross_encoder: Path) -> dict:
    """The offline default pipeline through the service's code: ``retrieval.pipeline`` with
    the HYBRID recipe (live query encoding), then a ``RerankStage`` of ``MaxSimReranker``
    over the int8 token store with the recipe's ``maxsim_fusion`` weights; plus the
    weights a train grid picks for this first stage (shown, not silently adopted)."""
    from specrag.indexing.encoders.tokens import TokenEncoder
    from specrag.rerank.maxsim import MaxSimReranker
    from specrag.rerank.stage import RerankStage
    from specrag.retrieval.evaluation import evaluate
    from specrag.retrieval.pipeline import search_batch
    from specrag.retrieval.recipe import HYBRID
    from specrag.retrieval.request import SearchRequest

    version = scifact_version(data)
    encoder = _MemoEncoder(TokenEncoder(MODEL))
    store = codec_store(docs, "int8")
    top_n = HYBRID.rerank.top_n
    shipped = dict(HYBRID.maxsim_fusion)

    def stage(weights: dict[str, float]) -> RerankStage:
        return RerankStage(MaxSimReranker(encoder, store, weights), top_n)

    first = SearchRequest(query="x", k=100, rerank=None)
    full = SearchRequest(query="x", k=100, rerank=HYBRID.rerank)
    out: dict = {"default_weights": shipped}
    runs: dict[tuple[str, str], dict] = {}
    for split in ("train", "test"):
        qids, texts = data.queries_of(split)
        started = time.perf_counter()
        hits = search_batch(version, list(texts), first).hits
        runs["first", split] = dict(zip(qids, hits, strict=True))
        out[f"first_stage_ms_per_query_{split}"] = (
            1000 * (time.perf_counter() - started) / len(qids)
        )

    def evaluate_hits(run: dict, split: str) -> dict[str, float]:
        return evaluate(run, data.qrels[split])

    def reranked(split: str, weights: dict[str, float]) -> dict:
        """The rerank stage over the cached first-stage hits (what search_batch runs next)."""
        qids, texts = data.queries_of(split)
        first_hits = [runs["first", split][q] for q in qids]
        return dict(zip(qids, stage(weights)(version, list(texts), first_hits), strict=True))

    out["hybrid (served HYBRID recipe)"] = evaluate_hits(runs["first", "test"], "test")
    qids, texts = data.queries_of("test")
    started = time.perf_counter()
    hits = search_batch(version, list(texts), full, stages=[stage(shipped)]).hits
    secs = time.perf_counter() - started
    test_run = dict(zip(qids, hits, strict=True))
    if any(
        [h.doc_id for h in test_run[q]] != [h.doc_id for h in got]
        for q, got in reranked("test", shipped).items()
    ):
        raise RuntimeError("reranking cached first-stage hits differs from the full pipeline")
    out["hybrid>maxsim[int8] default weights"] = {
        **evaluate_hits(test_run, "test"),
        "ms_per_query_end_to_end": 1000 * secs / len(test_run),
    }
    best, best_train = None, -1.0
    for wd in (0.0, 0.2, 0.4, 0.6, 0.8):
        for wb in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2):
            weights = {"dense": wd, "bm25": wb}
            ndcg = evaluate_hits(reranked("train", weights), "train")["nDCG@10"]
            if ndcg > best_train + 1e-9:
                best, best_train = weights, ndcg
    out.update(cross_encoder_rows(data, runs["first", "test"], evaluate_hits, cross_encoder))
    out["train_best_weights"] = best
    out["train_best_nDCG@10"] = best_train
    out["train_default_nDCG@10"] = evaluate_hits(reranked("train", shipped), "train")["nDCG@10"]
    out["hybrid>maxsim[int8] train-best weights"] = evaluate_hits(reranked("test", best), "test")
    return out


#: Trained by scripts/train_cross_encoder.py on the train qrels (no checkpoint downloads here).
CROSS_ENCODER = REPO / ".cache" / "cross-encoder" / "minilm-scifact-train"


#: Candidates the cross-encoder rescores: at ~256 tokens per pair it scores ~30 pairs/s on
#: this 2-core CPU (measured), so 100 per query would take ~17 minutes for the 300 test
#: queries; the rest of each list keeps its first-stage order.
CROSS_ENCODER_TOP_N = 20


def cross_encoder_rows(data: SciFact, first_test: dict, evaluate_hits, model: Path) -> dict:
    """The cross-encoder reranker (``rerank.cross_encoder``) over the served hybrid's test
    top-``CROSS_ENCODER_TOP_N``, when scripts/train_cross_encoder.py has produced ``model``.
    Runs with 2 threads (its ms/query is not comparable to the 1-thread rows)."""
    if not (Path(model) / "config.json").exists():
        log(f"no cross-encoder at {model}: run scripts/train_cross_encoder.py")
        return {}
    import torch

    from specrag.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(model))
    texts_of = dict(zip(data.doc_ids, data.doc_texts, strict=True))
    qids, queries = data.queries_of("test")
    n = CROSS_ENCODER_TOP_N
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        started = time.perf_counter()
        run = {}
        for q, text in zip(qids, queries, strict=True):
            head = first_test[q][:n]
            run[q] = reranker.rerank(text, head, texts=[texts_of[h.doc_id] for h in head])
            run[q] += first_test[q][n:]
        ms = 1000 * (time.perf_counter() - started) / len(qids)
    finally:
        torch.set_num_threads(threads)
    return {
        f"hybrid>cross-encoder top-{n} (MiniLM trained on SciFact train)": {
            **evaluate_hits(run, "test"),
            "ms_per_query": ms,
        }
    }


def query_encode_ms(texts: list[str]) -> float:
    """Per-query time of encoding query tokens (not cached: what a live search pays)."""
    from specrag.indexing.encoders.tokens import TokenEncoder

    encoder = TokenEncoder(MODEL)
    encoder.encode_queries(texts[:4])  # warm-up
    started = time.perf_counter()
    for t in texts:
        encoder.encode_queries([t])
    return 1000 * (time.perf_counter() - started) / len(texts)


def _weights(weights: dict[str, float]) -> str:
    return ", ".join(f"{name} {w:g}" for name, w in weights.items())


def tables(r: dict) -> list[dict]:
    """The result tables (docs/benchmarks.md)."""
    table = bench_results.table
    n_test = r["n_test_queries"]
    out = [
        table(
            f"First stages ({n_test} test queries)",
            ["first stage", "nDCG@10", "R@100", "MRR@10"],
            [
                [name, m["nDCG@10"], m["R@100"], m["MRR@10"]]
                for name, m in r["first_stage"]["test"].items()
            ],
        ),
        table(
            "MaxSim rerank of the top-100 (test; fused weights tuned on train)",
            ["pipeline", "nDCG@10", "R@100", "MRR@10", "rerank ms/query", "train nDCG@10"],
            [
                [
                    name,
                    m["nDCG@10"],
                    m["R@100"],
                    m["MRR@10"],
                    m.get("ms_per_query"),
                    m.get("train_nDCG@10"),
                ]
                for name, m in r["rerank"].items()
            ],
        ),
        table(
            "Token codecs vs fp32 MaxSim (dense top-100 candidates, test)",
            ["codec", "bytes/doc", "mean relative score error", "top-10 overlap with fp32"],
            [["fp32", r["bytes_per_doc"]["fp32"], 0.0, 1.0]]
            + [
                [
                    codec,
                    r["bytes_per_doc"][codec],
                    a["mean_rel_score_error"],
                    a["top10_overlap_with_fp32"],
                ]
                for codec, a in r["codec_agreement"].items()
            ],
        ),
    ]
    for name, c in r["calibration"].items():
        out.append(
            table(
                f"Thresholds at matched recall: {name} scores (calibrator fitted on train; "
                "test hits)",
                [
                    "recall",
                    "raw threshold",
                    "raw precision",
                    "min_relevance",
                    "calibrated precision",
                    "calibrated recall",
                ],
                [
                    [
                        f"{row['recall']:.3f}" + (" (best raw F1)" if row["best_raw_f1"] else ""),
                        row["raw_threshold"],
                        row["raw_precision"],
                        row["min_relevance"],
                        row["calibrated_precision"],
                        row["calibrated_recall"],
                    ]
                    for row in c["table"]
                ],
            )
        )
    if "served" in r:
        sv = r["served"]
        names = [
            "hybrid (served HYBRID recipe)",
            "hybrid>maxsim[int8] default weights",
            "hybrid>maxsim[int8] train-best weights",
            *[n for n in sv if n.startswith("hybrid>cross-encoder")],
        ]
        end_to_end = sv["hybrid>maxsim[int8] default weights"]["ms_per_query_end_to_end"]
        out.append(
            table(
                "The offline default pipeline through the service code (test): "
                f"recipe MaxSim weights {_weights(sv['default_weights'])} (train nDCG@10 "
                f"{sv['train_default_nDCG@10']:.4f}), train grid best "
                f"{_weights(sv['train_best_weights'])} (train {sv['train_best_nDCG@10']:.4f}); "
                f"end to end with live query encoding {end_to_end:.1f} ms/query",
                ["pipeline", "nDCG@10", "R@100", "MRR@10", "rerank ms/query"],
                [
                    [
                        n,
                        sv[n]["nDCG@10"],
                        sv[n]["R@100"],
                        sv[n]["MRR@10"],
                        sv[n].get("ms_per_query"),
                    ]
                    for n in names
                ],
            )
        )
    if "colbert" in r:
        out.append(
            table(
                "colbert kind as the first stage (test; QPS excludes query encoding, "
                f"{r['query_encode_ms']:.1f} ms/query)",
                ["config", "nDCG@10", "R@100", "QPS", "bytes/doc", "centroids", "build s"],
                [
                    [
                        name,
                        m["nDCG@10"],
                        m["R@100"],
                        m["QPS"],
                        m["bytes_per_doc"],
                        m["n_centroids"],
                        m["build_seconds"],
                    ]
                    for name, m in r["colbert"].items()
                ],
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--skip-colbert", action="store_true", help="no colbert first-stage rows")
    parser.add_argument(
        "--cross-encoder",
        type=Path,
        default=CROSS_ENCODER,
        help="a model trained by scripts/train_cross_encoder.py (its rows are left out when "
        "there is none)",
    )
    parser.add_argument("--results-dir", type=Path, default=bench_results.RESULTS)
    args = parser.parse_args()

    import faiss
    import torch

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    data = load_scifact(args.data)
    queries = token_cache(data.query_texts, "queries")
    docs = token_cache(data.doc_texts, "docs")
    results = run_all(data, queries, docs, skip_colbert=args.skip_colbert)
    results["served"] = served_pipeline(data, docs, args.cross_encoder)
    load = os.getloadavg()
    bench_results.write_result(
        "late_interaction_scifact",
        "Late interaction, rerankers and calibrated relevance on SciFact",
        tables(results),
        notes=[
            f"SciFact: {results['n_docs']:,} documents, {results['n_tokens']:,} MiniLM tokens "
            "(special tokens dropped), test queries; every weight and calibrator is fitted on "
            f"the {results['n_train_queries']} train queries. MaxSim runs over the offline "
            "MiniLM's own normalized token embeddings (no ColBERT checkpoint). The first "
            "stages and MaxSim tables use cached query encodings; the service-code table "
            "encodes queries live.",
            f"One thread (the cross-encoder: two). Load average during the run: {load[0]:.1f}.",
        ],
        order=25,
        data=results,
        out_dir=args.results_dir,
    )


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
