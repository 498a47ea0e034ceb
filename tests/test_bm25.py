"""The bm25 kind on the demo corpus: the analyzer, BM25 weights against a hand computation
of the formula, quantization error bounds, and search == top-k of the reference scores."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from specrag.indexing.kinds.bm25.analyzer import analyze
from specrag.indexing.kinds.bm25.build import analyze_corpus, bm25_weights, build_bm25
from specrag.indexing.kinds.bm25.config import BM25Config
from specrag.indexing.kinds.bm25.search import BM25Searcher
from specrag.indexing.kinds.impact.index import ImpactIndex
from tests.conftest import demo_documents, demo_queries


@pytest.fixture(scope="module")
def docs():
    return demo_documents(400)


# The default build, and a BP-reordered one with small blocks (rows stored out of corpus
# order: every test below must see corpus rows all the same).
CONFIGS = {"plain": BM25Config(), "bp": BM25Config(reorder="bp", block_size=16)}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def index_dir(request, docs, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"bm25-{request.param}")
    build_bm25(docs, out, CONFIGS[request.param], lambda *a: None)
    return out


@pytest.fixture(scope="module")
def searcher(docs, index_dir):
    s = BM25Searcher.load(index_dir, BM25Config(), np.array([d.id for d in docs]))
    s.config = s.config.with_changes(
        bmp_min_blocks=0
    )  # "bmp" runs the block kernel even on this small index
    return s


def test_bp_reordering_changes_storage_not_results(docs, tmp_path):
    ids = np.array([d.id for d in docs])
    searchers = {}
    for name, config in CONFIGS.items():
        (tmp_path / name).mkdir()
        build_bm25(
            docs, tmp_path / name, config.model_copy(update={"block_size": 16}), lambda *a: None
        )
        searchers[name] = BM25Searcher.load(tmp_path / name, config, ids)
        searchers[name].config = searchers[name].config.with_changes(bmp_min_blocks=0)
    perm = searchers["bp"].index.perm
    assert perm is not None and not np.array_equal(perm, np.arange(len(docs)))
    assert searchers["plain"].index.perm is None
    batch = searchers["plain"].encode_queries(demo_queries(40))
    allowed = np.random.default_rng(1).random(len(docs)) < 0.3
    for mode in ("bmp", "exhaustive"):
        for mask in (None, allowed):
            got = {}
            for name, s in searchers.items():
                s.config = s.config.with_changes(mode=mode)
                got[name] = s.search_rows(batch, 10, mask)
            for a, b in zip(got["plain"], got["bp"], strict=True):
                np.testing.assert_array_equal(a, b)  # rows and scores, bitwise


def test_analyzer_lowercases_drops_stopwords_and_stems():
    assert analyze("The Cells were RUNNING into the studies of COVID-19") == [
        "cell",
        "were",
        "run",
        "studi",
        "covid",
        "19",
    ]
    assert analyze("") == [] and analyze("the of and") == []


def hand_bm25(term: str, doc_terms: list[list[str]], row: int, k1=0.9, b=0.4) -> float:
    """BM25 of one term in one document, straight from the formula (Lucene >= 8 form)."""
    n = len(doc_terms)
    df = sum(term in set(t) for t in doc_terms)
    avgdl = sum(len(t) for t in doc_terms) / n
    tf = doc_terms[row].count(term)
    dl = len(doc_terms[row])
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf * 1.0 / (tf + k1 * (1 - b + b * dl / avgdl))


def test_weights_equal_a_hand_computation(docs):
    from specrag.indexing.kinds.bm25.analyzer import Analyzer

    vocab, term_ids, doc_ids, tfs, lengths = analyze_corpus(docs, Analyzer())
    doc_terms = [analyze(d.full_text()) for d in docs]
    df = np.bincount(term_ids, minlength=len(vocab))
    weights = bm25_weights(tfs, lengths[doc_ids], df[term_ids], len(docs), lengths.mean(), 0.9, 0.4)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(term_ids), 25, replace=False):
        term, row = vocab[term_ids[i]], int(doc_ids[i])
        assert weights[i] == pytest.approx(hand_bm25(term, doc_terms, row), rel=1e-12)
        assert tfs[i] == Counter(doc_terms[row])[term]


def test_quantized_scores_stay_within_half_a_step_per_term(docs, index_dir, searcher):
    """The stored impacts times the scale are the exact BM25 weights up to rounding."""
    index = ImpactIndex.load(index_dir)
    doc_terms = [analyze(d.full_text()) for d in docs]
    query = "vitamin D deficiency and bone density"
    ref = searcher.reference_scores([query])[0]
    q_terms = [t for t in dict.fromkeys(analyze(query)) if t in searcher._term_of]
    for row in np.flatnonzero(np.isfinite(ref))[:20]:
        exact = sum(hand_bm25(t, doc_terms, row) for t in q_terms)
        assert abs(ref[row] - exact) <= 0.5 * index.scale * len(q_terms) + 1e-9
    impacts = index.unpack()[1]
    assert impacts.dtype == np.uint8 and impacts.min() >= 1


@pytest.mark.parametrize("mode", ["bmp", "exhaustive"])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_search_equals_reference_topk(searcher, mode, k):
    queries = demo_queries(40)
    searcher.config = searcher.config.with_changes(mode=mode)
    ref = searcher.reference_scores(queries)
    results = searcher.search(queries, k)
    for qi, hits in enumerate(results):
        scores = ref[qi]
        order = np.lexsort((np.arange(len(scores)), -scores))
        want = [int(r) for r in order[:k] if np.isfinite(scores[r])]
        assert [h.doc_id for h in hits] == [searcher.doc_ids[r] for r in want]
        np.testing.assert_allclose([h.score for h in hits], scores[want], rtol=1e-9)
    searcher.config = searcher.config.with_changes(mode="bmp")


def test_masked_search_returns_k_allowed_hits(searcher):
    queries = demo_queries(10)
    allowed = np.zeros(len(searcher.doc_ids), bool)
    allowed[::7] = True
    ref = searcher.reference_scores(queries)
    for qi, hits in enumerate(searcher.search(queries, 10, allowed)):
        scores = np.where(allowed, ref[qi], -np.inf)
        order = np.lexsort((np.arange(len(scores)), -scores))
        want = [searcher.doc_ids[r] for r in order[:10] if np.isfinite(scores[r])]
        assert [h.doc_id for h in hits] == want


def test_empty_and_unknown_queries_return_no_hits(searcher):
    assert searcher.search(["", "the of and", "zzqxv qqqzzz"], 10) == [[], [], []]
    ref = searcher.reference_scores(["zzqxv"])
    assert np.isneginf(ref).all()


def test_manifest_stats_record_the_scale(docs, tmp_path):
    stats = build_bm25(
        docs[:50], tmp_path, BM25Config(block_size=8, k1=1.2, b=0.75), lambda *a: None
    )
    assert stats["scale"] > 0 and stats["impact_bits"] == 8 and stats["n_docs"] == 50
    assert ImpactIndex.load(tmp_path).meta["k1"] == 1.2
