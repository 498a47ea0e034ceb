"""The contract every registered index kind passes (PyTerrier's TransformerTestCase habit):
build a small corpus, search equals the top-k of exhaustive reference scores, masks
restrict the search exactly, and a reload from disk answers the same."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from specrag.indexing.registry import KINDS
from specrag.indexing.versions import VersionStore
from specrag.retrieval.version import open_version
from tests.conftest import demo_queries

K = 10


def _config_for(kind: str, tmp_path_factory) -> dict | None:
    """The config a kind is contract-tested with, or None to skip it here."""
    if kind == "splade":
        from tests.tiny_models import tiny_splade_dir

        return {"model": str(tiny_splade_dir(tmp_path_factory.mktemp("splade")))}
    if kind == "lucene" and importlib.util.find_spec("pyserini") is None:
        return None
    return {}


SEARCHABLE = sorted(name for name, kind in KINDS.items() if kind.searchable)


@pytest.fixture(scope="module", params=SEARCHABLE)
def built(request, tmp_path_factory, small_docs):
    kind = request.param
    config = _config_for(kind, tmp_path_factory)
    if config is None:
        pytest.skip(f"{kind}: optional dependency not installed")
    store = VersionStore(tmp_path_factory.mktemp(f"contract-{kind}"))
    store.build(small_docs, {kind: config})
    return kind, store


def expected_topk(ref: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
    """Top-k rows by reference score, ties by lower row, -inf (cannot match) excluded."""
    scores = ref.astype(np.float64).copy()
    if allowed is not None:
        scores[~allowed] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [(int(r), float(scores[r])) for r in order[:k] if np.isfinite(scores[r])]


def check_against_reference(version, kind: str, queries: list[str], allowed=None) -> None:
    searcher = version.searchers[kind]
    ref = searcher.reference_scores(queries)
    assert ref.shape == (len(queries), version.n_docs)
    results = searcher.search(queries, K, allowed)
    assert len(results) == len(queries)
    for qi, hits in enumerate(results):
        want = expected_topk(ref[qi], K, allowed)
        got_rows = [version.row_of(h.doc_id) for h in hits]
        assert len(hits) == len(want), (
            f"{kind}: query {qi} returned {len(hits)} hits, want {len(want)}"
        )
        if allowed is not None:
            assert all(allowed[r] for r in got_rows), f"{kind}: a disallowed doc came back"
        # Scores equal the reference's sorted top-k; each hit's score is its own reference score.
        np.testing.assert_allclose(
            [h.score for h in hits], [s for _, s in want], rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose([h.score for h in hits], ref[qi, got_rows], rtol=1e-4, atol=1e-4)
        assert all(kind in h.scores for h in hits)
        # Where the reference has no near-tie, the ids are the same too.
        for (row, score), got in zip(want, got_rows, strict=True):
            ties = np.isclose(ref[qi], score, rtol=1e-4, atol=1e-4).sum()
            if ties == 1:
                assert got == row


def test_search_equals_reference(built):
    kind, store = built
    check_against_reference(open_version(store), kind, demo_queries(8))


def test_masks_restrict_exactly(built):
    kind, store = built
    version = open_version(store)
    n = version.n_docs
    rng = np.random.default_rng(0)
    queries = demo_queries(6)
    for allowed in (
        np.zeros(n, bool),
        np.eye(1, n, 7, dtype=bool)[0],
        rng.random(n) < 0.3,
        rng.random(n) < 0.05,
        np.ones(n, bool),
    ):
        check_against_reference(version, kind, queries, allowed)
    assert version.searchers[kind].search(queries[:1], K, np.zeros(n, bool)) == [[]]


def test_reload_answers_the_same(built):
    kind, store = built
    queries = demo_queries(5)
    first = open_version(store).searchers[kind].search(queries, K)
    again = open_version(store).searchers[kind].search(queries, K)
    assert [[h.doc_id for h in hs] for hs in first] == [[h.doc_id for h in hs] for hs in again]
