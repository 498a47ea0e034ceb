"""The contract every registered index kind passes (PyTerrier's TransformerTestCase habit),
on each of its code paths: build a small corpus, search, compare with a truth computed
independently, restrict by masks, reload from disk.

Each kind runs twice: once on its exact path (the one a 150-document corpus takes by
default), and once with its config set so that the pruned path runs (BMP block by block,
binary's Hamming stage, colbert's centroid stage). The truth of a pruned path is the
path's own rule recomputed by brute force from the stored representation: safe BMP must
equal the exhaustive top-k; binary must return the best rescored documents among the
Hamming candidates; colbert the best exact MaxSim among the centroid candidates. The test
also checks that the pruned path really pruned.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from specrag.indexing.kinds.binary.build import binarize
from specrag.indexing.registry import KINDS
from specrag.indexing.versions import VersionStore
from specrag.retrieval.version import open_version
from tests.conftest import BMP_FORCED, demo_queries

K = 10
N_DOCS = 150

#: The torch engine on the CPU (the same code runs on cuda: tests/test_torch_search.py).
TORCH_CPU = {"backend": "torch", "device": "cpu"}
HAMMING_FORCED = {"min_candidates": 12, "rescore_factor": 2}
#: (path name, config) per kind; the first is the exact path.
PATHS: dict[str, list[tuple[str, dict]]] = {
    "bm25": [("exhaustive", {"mode": "exhaustive"}), ("bmp", BMP_FORCED)],
    # The tiny random SPLADE model spreads weight over every term: blocks of 1 give bounds
    # tight enough to prune.
    "splade": [("exhaustive", {"mode": "exhaustive"}), ("bmp", {**BMP_FORCED, "block_size": 1})],
    "dense": [
        ("exact-scan", {"exact_filter_min_rows": N_DOCS}),
        ("faiss-selector", {"exact_filter_min_rows": 0, "exact_filter_fraction": 0.0}),
        ("torch-flat", TORCH_CPU),
    ],
    "binary": [
        ("rescore-all", {}),
        ("hamming", HAMMING_FORCED),
        ("torch-rescore-all", TORCH_CPU),
        ("torch-hamming", {**HAMMING_FORCED, **TORCH_CPU}),
    ],
    "colbert": [
        ("exhaustive", {}),
        (
            "centroids",
            # pruned on purpose: its self-check recall may fall below the default floor
            {
                "exhaustive_max_docs": 0,
                "n_centroids": 1024,
                "nprobe": 1,
                "candidates": 40,
                "self_check_floor": 0.0,
            },
        ),
    ],
    "lucene": [("lucene", {})],
}
EXACT_PATHS = {
    "exhaustive",
    "bmp",
    "exact-scan",
    "faiss-selector",
    "torch-flat",
    "rescore-all",
    "torch-rescore-all",
    "lucene",
}
#: Paths whose truth is another path's (the same rule on another engine).
SAME_TRUTH = {"torch-hamming": "hamming"}


def _cases() -> list[tuple[str, str, dict]]:
    searchable = sorted(name for name, kind in KINDS.items() if kind.searchable)
    missing = set(searchable) - set(PATHS)
    assert not missing, f"kinds without contract paths: {missing} (add them to PATHS)"
    return [(kind, path, cfg) for kind in searchable for path, cfg in PATHS[kind]]


def _extra_config(kind: str, tmp_path_factory) -> dict | None:
    """Settings a kind needs to build here, or None to skip it on this machine."""
    if kind == "splade":
        from tests.tiny_models import tiny_splade_dir

        return {"model": str(tiny_splade_dir(tmp_path_factory.mktemp("splade")))}
    if kind == "lucene" and importlib.util.find_spec("pyserini") is None:
        return None
    return {}


@pytest.fixture(scope="module", params=_cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def built(request, tmp_path_factory, small_docs):
    kind, path, config = request.param
    extra = _extra_config(kind, tmp_path_factory)
    if extra is None:
        pytest.skip(f"{kind}: optional dependency not installed")
    store = VersionStore(tmp_path_factory.mktemp(f"contract-{kind}-{path}"))
    store.build(small_docs[:N_DOCS], {kind: {**extra, **config}})
    return kind, path, store


def expected_topk(scores: np.ndarray, k: int, rows: np.ndarray) -> list[tuple[int, float]]:
    """Top-k of ``rows`` by score, ties by lower row, -inf (cannot match) excluded."""
    s = scores[rows].astype(np.float64)
    order = np.lexsort((rows, -s))
    return [(int(rows[i]), float(s[i])) for i in order[:k] if np.isfinite(s[i])]


def allowed_rows(allowed: np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n) if allowed is None else np.flatnonzero(allowed)


def assert_hits_equal(version, kind, hits, want, ref_row) -> None:
    """Same scores in order, each hit's own reference score, same rows where no near-tie."""
    got_rows = [version.row_of(h.doc_id) for h in hits]
    assert len(hits) == len(want), f"{kind}: {len(hits)} hits, want {len(want)}"
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in want], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([h.score for h in hits], ref_row[got_rows], rtol=1e-4, atol=1e-4)
    assert all(kind in h.scores for h in hits)
    for (row, score), got in zip(want, got_rows, strict=True):
        if np.isclose(ref_row, score, rtol=1e-4, atol=1e-4).sum() == 1:
            assert got == row, f"{kind}: row {got} where the truth has {row}"


# -- the truths of the pruned paths, recomputed by brute force ---------------------------


def binary_candidate_bounds(searcher, query: str, rows: np.ndarray, k: int):
    """Hamming distance of every allowed row to the query's sign bits, and the distance of
    the n_cand-th nearest: rows closer than it must be candidates, rows farther cannot be."""
    cfg = searcher.config
    n_cand = max(cfg.rescore_factor * k, cfg.min_candidates)
    q_bits = np.unpackbits(binarize(searcher.encode([query])), axis=1)[0]
    doc_bits = np.unpackbits(np.asarray(searcher.codes)[rows], axis=1)
    distance = (doc_bits != q_bits).sum(axis=1)
    if n_cand >= len(rows):
        return distance, None
    return distance, np.sort(distance)[n_cand - 1]


def colbert_candidates(searcher, query: str, rows: np.ndarray, k: int) -> np.ndarray:
    """PLAID's candidate rule from the stored centroids, token assignments and offsets."""
    cfg, store = searcher.config, searcher.store
    q = searcher.encoder.encode_queries([query])[0].astype(np.float32)
    centroid_scores = q @ searcher.centroids.T
    probed = set()
    for token_scores in centroid_scores:
        probed |= set(np.argsort(-token_scores, kind="stable")[: cfg.nprobe].tolist())
    assigned = np.asarray(searcher.token_centroids)
    in_probed = np.array([c in probed for c in assigned.tolist()])
    token_doc = np.repeat(np.arange(store.n_docs), np.diff(store.offsets))
    cands = np.intersect1d(np.unique(token_doc[in_probed]), rows)
    if len(cands) < k:
        return rows
    keep = max(cfg.candidates, k)
    if len(cands) > keep:
        approx = np.array(
            [
                centroid_scores[:, assigned[store.offsets[d] : store.offsets[d + 1]]]
                .max(axis=1)
                .sum()
                for d in cands
            ]
        )
        cands = np.sort(cands[np.lexsort((cands, -approx))[:keep]])
    return cands


def check_path(version, kind: str, path: str, queries: list[str], allowed=None) -> dict:
    """Check one batch of queries; returns what the pruned path did (for the 'it really
    pruned' assertions)."""
    searcher = version.searchers[kind]
    if path.startswith("torch"):
        assert searcher.backend.engine == "torch", f"{kind}: {path} did not run on torch"
    path = SAME_TRUTH.get(path, path)
    ref = searcher.reference_scores(queries)
    assert ref.shape == (len(queries), version.n_docs)
    results = searcher.search(queries, K, allowed)
    assert len(results) == len(queries)
    rows = allowed_rows(allowed, version.n_docs)
    pruned = {"queries": 0, "pruned": 0}
    for qi, hits in enumerate(results):
        got_rows = [version.row_of(h.doc_id) for h in hits]
        if allowed is not None:
            assert all(allowed[r] for r in got_rows), f"{kind}: a disallowed doc came back"
        if path in EXACT_PATHS:
            assert_hits_equal(version, kind, hits, expected_topk(ref[qi], K, rows), ref[qi])
        elif path == "hamming":
            distance, bound = binary_candidate_bounds(searcher, queries[qi], rows, K)
            if bound is None:  # few allowed rows: every one is rescored
                assert_hits_equal(version, kind, hits, expected_topk(ref[qi], K, rows), ref[qi])
                continue
            pruned["queries"] += 1
            must, may = rows[distance < bound], rows[distance <= bound]
            assert set(got_rows) <= set(may.tolist()), (
                f"{kind}: a hit outside the Hamming candidates"
            )
            assert len(hits) == min(K, len(rows))
            np.testing.assert_allclose(
                [h.score for h in hits], ref[qi, got_rows], rtol=1e-4, atol=1e-4
            )
            worst = min(h.score for h in hits)
            beaten = [r for r in must.tolist() if ref[qi, r] > worst + 1e-4]
            assert set(beaten) <= set(got_rows), (
                f"{kind}: a sure candidate that scores higher is missing"
            )
            pruned["pruned"] += len(may) < len(rows)
        elif path == "centroids":
            cands = colbert_candidates(searcher, queries[qi], rows, K)
            q_tokens = searcher.encoder.encode_queries([queries[qi]])[0].astype(np.float32)
            stage = searcher.candidates(q_tokens, K, allowed)
            assert stage.tolist() == cands.tolist(), (
                f"{kind}: the centroid stage's candidates differ"
            )
            pruned["queries"] += 1
            pruned["pruned"] += len(cands) < len(rows)
            assert_hits_equal(version, kind, hits, expected_topk(ref[qi], K, cands), ref[qi])
        else:
            raise AssertionError(f"no truth for path {path!r}")
    if path == "bmp":
        scored = searcher.last_blocks_scored
        pruned = {"queries": len(queries), "pruned": int((scored < searcher.index.n_blocks).sum())}
    return pruned


def test_search_equals_the_paths_truth(built):
    kind, path, store = built
    version = open_version(store)
    queries = demo_queries(8)
    did = check_path(version, kind, path, queries)
    if SAME_TRUTH.get(path, path) in ("bmp", "hamming", "centroids"):
        # The forced path ran and pruned on at least some queries.
        assert did["queries"] == len(queries) and did["pruned"] > 0, did


def test_masks_restrict_exactly(built):
    kind, path, store = built
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
        check_path(version, kind, path, queries, allowed)
    assert version.searchers[kind].search(queries[:1], K, np.zeros(n, bool)) == [[]]


def test_reload_answers_the_same(built):
    kind, _path, store = built
    queries = demo_queries(5)
    first = open_version(store).searchers[kind].search(queries, K)
    again = open_version(store).searchers[kind].search(queries, K)
    assert [[h.doc_id for h in hs] for hs in first] == [[h.doc_id for h in hs] for hs in again]
