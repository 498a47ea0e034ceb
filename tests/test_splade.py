"""The splade kind over a tiny random-weight SPLADE model (BertForMaskedLM on MiniLM's
vocabulary, built from a config: no download). Random weights say nothing about quality,
so these tests check the engine: the stored impacts reproduce the encoder's own dot
products up to quantization, and search equals the reference top-k."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.indexing.encoders.models import load_model
from specrag.indexing.kinds.impact.index import ImpactIndex
from specrag.indexing.kinds.splade.build import build_splade
from specrag.indexing.kinds.splade.config import SpladeConfig
from specrag.indexing.kinds.splade.search import SpladeSearcher
from tests.conftest import demo_documents, demo_queries
from tests.tiny_models import tiny_splade_dir

N_DOCS = 60


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model_dir = tiny_splade_dir(tmp_path_factory.mktemp("tiny-splade"))
    docs = demo_documents(N_DOCS)
    config = SpladeConfig(model=str(model_dir), block_size=8, max_seq_length=64)
    out = tmp_path_factory.mktemp("splade-index")
    stats = build_splade(docs, out, config, lambda *a: None)
    searcher = SpladeSearcher.load(out, config, np.array([d.id for d in docs]))
    searcher.config = searcher.config.with_changes(
        bmp_min_blocks=0
    )  # "bmp" runs the block kernel even on this small index
    return docs, config, out, stats, searcher


def test_impacts_reproduce_the_encoders_dot_products(setup):
    docs, config, out, stats, searcher = setup
    assert searcher.kind == "splade" and stats["scale"] > 0
    index = ImpactIndex.load(out)
    model = load_model(config.model, kind="sparse")
    queries = demo_queries(3)
    q = model.encode_query(queries, convert_to_tensor=True).to_dense().numpy().astype(np.float64)
    d = model.encode_document([x.full_text() for x in docs], convert_to_tensor=True)
    d = d.to_dense().numpy().astype(np.float64)
    exact = q @ d.T
    ref = searcher.reference_scores(queries)
    # Each stored weight is within half a quantization step (plus float32 noise) of the model's.
    tolerance = (0.5 * index.scale + 1e-5) * q.sum(axis=1, keepdims=True)
    assert np.all(np.abs(ref - exact) <= tolerance)


@pytest.mark.parametrize("mode", ["bmp", "exhaustive"])
def test_search_equals_reference_topk(setup, mode):
    docs, config, out, stats, searcher = setup
    queries = demo_queries(6)
    searcher.config = searcher.config.with_changes(mode=mode)
    ref = searcher.reference_scores(queries)
    rng = np.random.default_rng(1)
    for allowed in (None, rng.random(N_DOCS) < 0.3):
        for qi, hits in enumerate(searcher.search(queries, 10, allowed)):
            scores = ref[qi] if allowed is None else np.where(allowed, ref[qi], -np.inf)
            order = np.lexsort((np.arange(N_DOCS), -scores))[:10]
            want = [int(r) for r in order if np.isfinite(scores[r])]
            np.testing.assert_allclose([h.score for h in hits], scores[want], rtol=1e-9)
            assert [h.doc_id for h in hits] == [docs[r].id for r in want]
    searcher.config = searcher.config.with_changes(mode="bmp")


def test_safe_bmp_equals_exhaustive_exactly(setup):
    *_, searcher = setup
    batch = searcher.encode_queries(demo_queries(10))
    searcher.config = searcher.config.with_changes(mode="exhaustive")
    exhaustive = searcher.search_rows(batch, 5)
    searcher.config = searcher.config.with_changes(mode="bmp")
    bmp = searcher.search_rows(batch, 5)
    for a, b in zip(exhaustive, bmp, strict=True):
        np.testing.assert_array_equal(a, b)
    assert searcher.search([], 5) == []


def test_bp_reordered_index_answers_bitwise_the_same(setup, tmp_path):
    docs, config, out, stats, searcher = setup
    bp_config = config.model_copy(update={"reorder": "bp"})
    build_splade(docs, tmp_path, bp_config, lambda *a: None)
    reordered = SpladeSearcher.load(tmp_path, bp_config, np.array([d.id for d in docs]))
    reordered.config = reordered.config.with_changes(bmp_min_blocks=0)
    assert reordered.index.perm is not None
    batch = searcher.encode_queries(demo_queries(10))
    allowed = np.random.default_rng(2).random(N_DOCS) < 0.5
    for mode in ("bmp", "exhaustive"):
        for mask in (None, allowed):
            searcher.config = searcher.config.with_changes(mode=mode)
            reordered.config = reordered.config.with_changes(mode=mode)
            for a, b in zip(
                searcher.search_rows(batch, 5, mask), reordered.search_rows(batch, 5, mask),
                strict=True,
            ):  # fmt: skip
                np.testing.assert_array_equal(a, b)
    searcher.config = searcher.config.with_changes(mode="bmp")
