"""Delta segments per kind (issue #14, points 2 and 3): bm25, binary and colbert search
the delta's documents next to the base, each checked against an independent truth.

- bm25: every live score equals a brute-force BM25 (plain Python, no index) computed with
  the base's statistics (N, avgdl, df, quantization scale) and the documented rule for a
  term the base never saw (its document frequency within the delta).
- binary: the live view returns exactly what one binary index over the same vectors
  returns (quantized with the base's calibration, superseded rows masked).
- colbert: delta MaxSim scores equal brute-force MaxSim of the documents' token vectors
  (encoded by the kind's encoder, coded with the base's codec).
In every kind an updated document's old text never matches (its superseded row is
never returned) and its new text does.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import numpy as np
import pytest

from specrag.indexing.delta import DELTA_KINDS, RefreshError, build_delta
from specrag.indexing.kinds.binary.build import CALIBRATION_FILE, write_binary_index
from specrag.indexing.kinds.binary.config import BinaryConfig
from specrag.indexing.kinds.binary.search import BinarySearcher
from specrag.indexing.kinds.bm25.analyzer import Analyzer
from specrag.indexing.kinds.bm25.config import BM25Config
from specrag.indexing.kinds.colbert.build import open_token_store
from specrag.indexing.texts import TEXTS_FILE, load_text_hashes
from specrag.indexing.versions import VersionStore
from specrag.retrieval.live import with_delta
from specrag.retrieval.prf import prf_search
from specrag.retrieval.request import PrfSpec
from specrag.retrieval.version import open_version
from specrag.types import Document
from tests.conftest import demo_documents, demo_queries

N_BASE = 30
KINDS = {"bm25": {}, "dense": {}, "binary": {}, "colbert": {}}
NEW_TEXT = "Quokka marsupials thrive on Rottnest island; quokka colonies avoid foxes."


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A base over N_BASE demo documents, then: two documents rewritten (one wholly, to
    words no base document has), three added; the delta over that state."""
    docs = demo_documents(N_BASE + 3)
    base_docs, added = docs[:N_BASE], docs[N_BASE:]
    versions = VersionStore(tmp_path_factory.mktemp("delta-kinds"))
    versions.build(base_docs, KINDS)
    rewritten = Document(base_docs[4].id, NEW_TEXT, "", base_docs[4].metadata)
    edited = Document(base_docs[9].id, base_docs[9].text + " Zebrafish.", base_docs[9].title)
    final = [rewritten if d.id == rewritten.id else edited if d.id == edited.id else d
             for d in base_docs] + added  # fmt: skip
    manifest = build_delta(final, versions)
    base = open_version(versions)
    view = with_delta(versions, base)
    return {
        "versions": versions,
        "base_docs": base_docs,
        "final": final,
        "manifest": manifest,
        "base": base,
        "view": view,
        "rewritten": rewritten,
        "old": base_docs[4],
    }


def test_the_delta_covers_every_kind(live):
    manifest = live["manifest"]
    assert set(KINDS) <= set(DELTA_KINDS)
    assert sorted(manifest["kinds"]) == sorted(KINDS)
    assert (manifest["n_docs"], manifest["n_superseded"]) == (5, 2)
    assert manifest["parts"]["bm25"]["unseen_terms"] > 0  # "quokka" and friends
    assert live["view"].n_docs == N_BASE + 5


def brute_bm25(base_docs, live_docs, queries, config: BM25Config) -> np.ndarray:
    """BM25 of ``live_docs`` under the base's statistics, by plain Python: the truth."""
    analyze = Analyzer()
    base_terms = [Counter(analyze(d.full_text())) for d in base_docs]
    n = len(base_docs)
    avgdl = sum(sum(c.values()) for c in base_terms) / n
    df = Counter(t for c in base_terms for t in c)
    live_terms = [Counter(analyze(d.full_text())) for d in live_docs]
    delta_df = Counter(t for c in live_terms[n:] for t in c)

    def weight(term, tf, dl, df_t):
        idf = math.log(1 + (n - df_t + 0.5) / (df_t + 0.5))
        return idf * tf / (tf + config.k1 * (1 - config.b + config.b * dl / avgdl))

    top = max(
        weight(t, tf, sum(c.values()), df[t]) for c in base_terms for t, tf in c.items()
    )  # the base's largest weight sets the 8-bit scale
    scale = top / 255
    out = np.full((len(queries), len(live_docs)), -np.inf)
    for qi, query in enumerate(queries):
        q = Counter(analyze(query))
        for row, terms in enumerate(live_terms):
            dl = sum(terms.values())
            hits = [t for t in q if t in terms]
            if not hits:
                continue
            impacts = [
                min(255, max(1, round(weight(t, terms[t], dl, df[t] or delta_df[t]) / scale)))
                for t in hits
            ]
            out[qi, row] = scale * sum(q[t] * i for t, i in zip(hits, impacts, strict=True))
    return out


def test_bm25_scores_with_the_base_statistics(live):
    view, base_docs = live["view"], live["base_docs"]
    searcher = view.searchers["bm25"]
    live_docs = [*base_docs, *(_doc(live["final"], i) for i in view.doc_ids[N_BASE:])]
    queries = [*demo_queries(8), NEW_TEXT, live["old"].text[:120], live["final"][-1].title]
    truth = brute_bm25(base_docs, live_docs, queries, BM25Config())
    truth[:, ~searcher.valid] = -np.inf  # superseded rows never match
    np.testing.assert_allclose(searcher.reference_scores(queries), truth, rtol=1e-9)
    for qi, hits in enumerate(searcher.search(queries, view.n_docs)):
        rows = np.flatnonzero(np.isfinite(truth[qi]))
        order = rows[np.lexsort((rows, -truth[qi, rows]))]
        assert [h.doc_id for h in hits] == view.doc_ids[order].tolist()
        np.testing.assert_allclose([h.score for h in hits], truth[qi, order], rtol=1e-9)


def _doc(docs: list[Document], doc_id: str) -> Document:
    return next(d for d in docs if d.id == doc_id)


@pytest.mark.parametrize("kind", ["bm25", "binary", "colbert", "dense"])
def test_an_updated_documents_old_text_never_matches(live, kind):
    view, rewritten, old = live["view"], live["rewritten"], live["old"]
    searcher = view.searchers[kind]
    k = view.n_docs
    [new_hits, old_hits] = searcher.search([NEW_TEXT, old.full_text()], k)
    ids = [h.doc_id for h in new_hits]
    assert ids.count(rewritten.id) == 1
    assert ids[0] == rewritten.id  # its new text finds it first
    old_ids = [h.doc_id for h in old_hits]
    if kind == "bm25":
        # No term of the old text is in the new one: the document does not match at all.
        assert not set(Analyzer()(old.full_text())) & set(Analyzer()(NEW_TEXT))
        assert rewritten.id not in old_ids
    else:  # vectors always score: only its new row, with its new-text score
        assert old_ids.count(rewritten.id) == 1
        row = view.row_of(rewritten.id)
        score = next(h.score for h in old_hits if h.doc_id == rewritten.id)
        ref = searcher.reference_scores([old.full_text()])[0]
        np.testing.assert_allclose(score, ref[row], rtol=1e-4, atol=1e-4)
        assert old_ids[0] != rewritten.id


def test_binary_equals_one_index_over_the_same_vectors(live, tmp_path):
    """The base and the delta merged give exactly what one binary index over all live
    vectors (in live row order, the base's calibration, superseded rows masked) gives."""
    view, versions = live["view"], live["versions"]
    searcher = view.searchers["binary"]
    base_path = versions.path(view.id.split("+")[0])
    delta_path = versions.root / "deltas" / view.manifest["delta"]["id"]
    vectors = np.concatenate(
        [
            np.load(base_path / "dense" / "embeddings.npy"),
            np.load(delta_path / "dense" / "embeddings.npy"),
        ]
    )
    config = BinaryConfig()
    write_binary_index(vectors, tmp_path, config, np.load(base_path / "binary" / CALIBRATION_FILE))
    one = BinarySearcher.load(tmp_path, config, view.doc_ids)
    queries = [*demo_queries(10), NEW_TEXT]
    q = searcher.encode(queries)
    allowed = searcher.valid.copy()
    filtered = allowed & (np.arange(view.n_docs) % 3 != 0)
    for mask in (None, filtered):
        for k in (1, 5, view.n_docs):
            want = one.search_rows(q, k, allowed if mask is None else filtered)
            got = searcher.search_rows(q, k, mask)
            for (g_rows, g_scores), (w_rows, w_scores) in zip(got, want, strict=True):
                assert g_rows.tolist() == w_rows.tolist()
                np.testing.assert_allclose(g_scores, w_scores, rtol=1e-6, atol=1e-6)


def test_colbert_delta_scores_equal_brute_force_maxsim(live):
    view = live["view"]
    searcher = view.searchers["colbert"]
    codec = open_token_store(live["versions"].path(view.id.split("+")[0]) / "colbert").codec
    delta_docs = [_doc(live["final"], i) for i in view.doc_ids[N_BASE:]]
    encoder = searcher.encoder
    doc_tokens = [codec.decode(codec.encode(t)) for t in encoder.encode_documents(
        [d.full_text() for d in delta_docs])]  # fmt: skip
    queries = [*demo_queries(6), NEW_TEXT]
    q_tokens = encoder.encode_queries(queries)
    truth = np.array(
        [[(q @ d.T).max(axis=1).sum() for d in doc_tokens] for q in q_tokens], np.float64
    )
    for qi, hits in enumerate(searcher.search(queries, view.n_docs)):
        assert len(hits) == int(searcher.valid.sum())
        got = {h.doc_id: h.score for h in hits}
        np.testing.assert_allclose([got[d.id] for d in delta_docs], truth[qi], rtol=1e-3, atol=1e-3)
    # Filters reach inside the delta: a mask allowing delta rows only returns only them.
    only_delta = np.zeros(view.n_docs, bool)
    only_delta[N_BASE:] = True
    hits = searcher.search(queries[:1], 3, only_delta)[0]
    assert {h.doc_id for h in hits} <= {d.id for d in delta_docs} and len(hits) == 3


def test_bm25_alone_refreshes_by_the_versions_text_hashes(tmp_path):
    """A bm25-only version has no encoder whose stored hashes could find the changed
    documents; its ``texts.npy`` (one sha256 of each row's text) does: the rewritten
    document's new text matches, its old text never does, the added one is found."""
    versions = VersionStore(tmp_path)
    base_docs = demo_documents(N_BASE)
    versions.build(base_docs, {"bm25": {}})
    version_dir = versions.path(versions.current())
    ids = np.load(version_dir / "ids.npy").tolist()
    assert load_text_hashes(version_dir).tolist() == [
        hashlib.sha256(d.full_text().encode()).hexdigest().encode() for d in base_docs
    ] and ids == [d.id for d in base_docs]
    old = base_docs[4]
    rewritten = Document(old.id, NEW_TEXT, "", old.metadata)
    added = Document("added-1", "Axolotl regeneration of limbs in salamanders.", "")
    final = [rewritten if d.id == old.id else d for d in base_docs] + [added]
    manifest = build_delta(final, versions)
    assert manifest["kinds"] == ["bm25"]
    assert (manifest["n_docs"], manifest["n_superseded"]) == (2, 1)
    searcher = with_delta(versions, open_version(versions)).searchers["bm25"]
    (quokka,) = searcher.search(["quokka Rottnest"], 5)
    assert quokka and quokka[0].doc_id == old.id
    (axolotl,) = searcher.search(["axolotl salamanders"], 5)
    assert axolotl and axolotl[0].doc_id == "added-1"
    old_words = " ".join(old.full_text().split()[:12])
    (hits,) = searcher.search([old_words], N_BASE + 2)
    assert old.id not in {h.doc_id for h in hits}  # its superseded row never matches


def test_a_version_without_text_hashes_falls_back_or_refuses(tmp_path):
    """Versions written before ``texts.npy``: one with an encoder kind still refreshes by
    that encoder's stored hashes; bm25 alone gets a clear error naming the way out."""
    docs = demo_documents(6)
    changed = [Document(docs[0].id, NEW_TEXT, "")] + docs[1:]
    bm25_only = VersionStore(tmp_path / "bm25")
    bm25_only.build(docs, {"bm25": {}})
    (bm25_only.path(bm25_only.current()) / TEXTS_FILE).unlink()
    with pytest.raises(RefreshError, match="no stored text hashes.*run a full build"):
        build_delta(changed, bm25_only)
    dense = VersionStore(tmp_path / "dense")
    dense.build(docs, {"bm25": {}, "dense": {}})
    (dense.path(dense.current()) / TEXTS_FILE).unlink()
    manifest = build_delta(changed, dense)
    assert (manifest["n_docs"], manifest["n_superseded"]) == (1, 1)


@pytest.mark.usefixtures("one_torch_thread")
def test_splade_delta_scores_with_the_base_scale(tmp_path):
    """A tiny SparseEncoder: delta documents score as their SPLADE weights quantized with
    the base's scale (the base's largest weight / 255), brute force from the encoder."""
    from specrag.indexing.encoders.sparse import encode_sparse
    from tests.tiny_models import tiny_splade_dir

    model = str(tiny_splade_dir(tmp_path / "splade"))
    docs = demo_documents(16)
    base_docs = docs[:12]
    versions = VersionStore(tmp_path / "home")
    versions.build(base_docs, {"splade": {"model": model}})
    rewritten = Document(base_docs[3].id, NEW_TEXT, "")
    final = [rewritten if d.id == rewritten.id else d for d in base_docs] + docs[12:]
    manifest = build_delta(final, versions)
    assert "splade" in manifest["kinds"] and manifest["n_docs"] == 5
    view = with_delta(versions, open_version(versions))
    searcher = view.searchers["splade"]
    assert type(searcher).__name__ == "SegmentedImpactSearcher"

    def weights(texts, side):
        terms, values, _ = encode_sparse(model, texts, side=side)
        return [
            dict(zip(t.tolist(), v.tolist(), strict=True))
            for t, v in zip(terms, values, strict=True)
        ]

    scale = max(max(w.values()) for w in weights([d.full_text() for d in base_docs], "document"))
    scale /= 255
    delta_docs = [_doc(final, i) for i in view.doc_ids[len(base_docs) :]]
    doc_w = weights([d.full_text() for d in delta_docs], "document")
    queries = [*demo_queries(4), NEW_TEXT]
    got = searcher.reference_scores(queries)
    assert np.isneginf(got[:, ~searcher.valid]).all()  # the old text never matches
    for qi, q in enumerate(weights(queries, "query")):
        for j, w in enumerate(doc_w):
            shared = [t for t in q if t in w]
            want = scale * sum(q[t] * min(255, max(1, round(w[t] / scale))) for t in shared)
            # Stored and direct encodings may differ in the last float bits: an impact may
            # round one level apart, no more.
            bound = scale * sum(q[t] for t in shared) + 1e-9
            assert abs(got[qi, len(base_docs) + j] - want) <= bound
            if not shared:
                assert got[qi, len(base_docs) + j] == -np.inf
        hits = searcher.search([queries[qi]], view.n_docs)[0]
        rows = np.flatnonzero(np.isfinite(got[qi]))
        assert {h.doc_id for h in hits} == set(view.doc_ids[rows].tolist())


def test_prf_searches_base_and_delta(live):
    """RM3 over a live view reaches the delta: with ``orig_weight=1`` it is plain bm25
    over base + delta (which the tests above hold to brute force), and the rewritten
    document (its new words are in the delta only) is the expanded search's first hit."""
    view = live["view"].searchers["bm25"]
    text_of = {d.id: d.full_text() for d in live["final"]}
    texts = lambda ids: [text_of[i] for i in ids]  # noqa: E731
    queries = [NEW_TEXT, live["final"][0].text[:80]]
    plain = view.search(queries, 10)
    same = prf_search(view, queries, 10, None, PrfSpec(orig_weight=1.0), texts)
    assert [[h.doc_id for h in hits] for hits in same] == [
        [h.doc_id for h in hits] for hits in plain
    ]
    expanded = prf_search(view, queries, 10, None, PrfSpec(), texts)
    assert expanded[0][0].doc_id == live["rewritten"].id


def test_a_refresh_copies_the_colbert_codes_the_previous_delta_wrote(tmp_path):
    """A refresh over a delta codes only the documents that arrived since: the others'
    codes are copied from the previous delta, and the token store equals one coded from
    scratch (the same encodings, the base's codec) byte for byte."""
    docs = demo_documents(N_BASE + 6)
    base_docs, first, later = docs[:N_BASE], docs[N_BASE : N_BASE + 4], docs[N_BASE + 4 :]
    versions = VersionStore(tmp_path)
    versions.build(base_docs, {"colbert": {}})
    assert build_delta(base_docs + first, versions)["parts"]["colbert"]["copied"] == 0
    edited = Document(first[1].id, first[1].text + " Zebrafish.", first[1].title)
    final = base_docs + [first[0], edited, *first[2:], *later]
    carried = build_delta(final, versions)
    assert carried["parts"]["colbert"]["copied"] == 3  # first[0], first[2], first[3]
    tokens = versions.root / "deltas" / carried["id"] / "colbert" / "tokens"
    carried_files = {p.name: p.read_bytes() for p in tokens.iterdir()}
    (versions.root / "DELTA").unlink()  # no previous delta: every code computed again
    scratch = build_delta(final, versions)
    assert scratch["parts"]["colbert"]["copied"] == 0
    tokens = versions.root / "deltas" / scratch["id"] / "colbert" / "tokens"
    assert {p.name: p.read_bytes() for p in tokens.iterdir()} == carried_files
