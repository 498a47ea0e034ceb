"""The colbert kind: codecs round-trip within their bounds, the vectorized MaxSim equals a
hand loop, and search (centroid candidates + pruning + exact MaxSim) equals the top-k of
the exhaustive reference, with masks and after a reload."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.indexing.encoders.tokens import TokenEncoder
from specrag.indexing.kinds.colbert.build import build_token_index
from specrag.indexing.kinds.colbert.config import ColbertConfig
from specrag.indexing.kinds.colbert.maxsim import maxsim_codes, maxsim_dense
from specrag.indexing.kinds.colbert.search import ColbertSearcher
from specrag.indexing.kinds.colbert.token_store import TokenStoreWriter, make_codec
from specrag.indexing.versions import VersionStore
from specrag.retrieval.version import open_version
from tests.conftest import demo_documents, demo_queries

N_DOCS = 80


def unit_rows(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- codecs -------------------------------------------------------------------------------


def test_int8_round_trip_error_is_at_most_half_a_step():
    x = unit_rows(np.random.default_rng(0), 2000, 48)
    codec = make_codec("int8", 48).fit(x)
    err = np.abs(codec.decode(codec.encode(x)) - x)
    assert (err <= codec.scale / 2 + 1e-6).all()
    assert codec.bytes_per_token == 48


def test_int8_clips_values_outside_the_fitted_range():
    x = unit_rows(np.random.default_rng(1), 500, 16)
    codec = make_codec("int8", 16).fit(x)
    far = np.full((1, 16), 10.0, np.float32)
    np.testing.assert_allclose(codec.decode(codec.encode(far))[0], codec.lo + 255 * codec.scale)


def test_binary_keeps_the_side_and_decodes_to_the_side_means():
    x = unit_rows(np.random.default_rng(2), 3000, 20)  # 20 dims: packbits pads to 3 bytes
    codec = make_codec("binary", 20).fit(x)
    codes = codec.encode(x)
    assert codes.shape == (3000, 3)
    dec = codec.decode(codes)
    above = x > codec.threshold
    assert np.array_equal(dec > codec.threshold, above)
    for j in range(20):
        np.testing.assert_allclose(dec[above[:, j], j], x[above[:, j], j].mean(), rtol=1e-4)
        np.testing.assert_allclose(dec[~above[:, j], j], x[~above[:, j], j].mean(), rtol=1e-4)


def test_fp16_round_trip():
    x = unit_rows(np.random.default_rng(3), 100, 32)
    codec = make_codec("fp16", 32)
    np.testing.assert_allclose(codec.decode(codec.encode(x)), x, atol=1e-3)


def test_codecs_reject_bad_input():
    codec = make_codec("int8", 8)
    with pytest.raises(ValueError, match="shape"):
        codec.fit(np.zeros((10, 9), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        codec.fit(np.full((4, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="unknown token codec"):
        make_codec("pq", 8)


# -- MaxSim kernel --------------------------------------------------------------------------


def hand_maxsim(q: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    out = []
    for d in docs:
        if len(d) == 0:
            out.append(-np.inf)
            continue
        total = 0.0
        for qt in q:
            total += max(float(qt @ t) for t in d)
        out.append(total)
    return np.array(out)


@pytest.mark.parametrize("codec_name", ["fp16", "int8", "binary"])
def test_maxsim_over_codes_equals_hand_loop_over_decoded(tmp_path, codec_name):
    rng = np.random.default_rng(4)
    docs = [unit_rows(rng, int(n), 24) for n in rng.integers(0, 9, size=40)]
    docs[3] = np.zeros((0, 24), np.float32)  # an empty document cannot match
    codec = make_codec(codec_name, 24).fit(np.concatenate(docs))
    store = TokenStoreWriter(tmp_path, codec)
    store.append(docs)
    store = store.close()
    q = unit_rows(rng, 5, 24)
    decoded = [store.doc_tokens(i) for i in range(len(docs))]
    codes, local = store.doc_codes(np.arange(len(docs)))
    got = maxsim_codes(q, codes, local, store.codec)
    np.testing.assert_allclose(got, hand_maxsim(q, decoded), rtol=1e-5, atol=1e-5)
    assert got[3] == -np.inf
    # a subset in another order, through the dense path on decoded tokens
    pick = np.array([7, 0, 3, 12])
    offsets = np.concatenate([[0], np.cumsum([len(decoded[i]) for i in pick])])
    dense = maxsim_dense(q, np.concatenate([decoded[i] for i in pick]), offsets)
    np.testing.assert_allclose(dense, got[pick], rtol=1e-5, atol=1e-5)


# -- the searcher ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder():
    return TokenEncoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def encoded(encoder):
    docs = demo_documents(N_DOCS)
    tokens = encoder.encode_documents([d.full_text() for d in docs])
    queries = encoder.encode_queries(demo_queries(10))
    return docs, tokens, queries


def searcher_for(tmp_path, encoded, encoder, **cfg) -> ColbertSearcher:
    docs, tokens, _ = encoded
    config = ColbertConfig(**cfg)
    build_token_index([tokens], tmp_path, config)
    ids = np.array([d.id for d in docs])
    return ColbertSearcher(tmp_path, config, ids, encoder=encoder)


def assert_topk_of_reference(searcher, queries, k, allowed=None):
    ref = searcher.reference_scores_encoded(queries)
    results = searcher.search_encoded(queries, k, allowed)
    row_of = {d: i for i, d in enumerate(searcher.doc_ids.tolist())}
    for qi, hits in enumerate(results):
        scores = ref[qi].astype(np.float64)
        if allowed is not None:
            scores[~allowed] = -np.inf
        want = np.lexsort((np.arange(len(scores)), -scores))[:k]
        want = [r for r in want if np.isfinite(scores[r])]
        rows = [row_of[h.doc_id] for h in hits]
        assert len(rows) == len(want)
        np.testing.assert_allclose([h.score for h in hits], scores[want], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose([h.score for h in hits], ref[qi, rows], rtol=1e-4, atol=1e-4)
        assert all(h.scores["colbert"] == h.score for h in hits)
        if allowed is not None:
            assert all(allowed[r] for r in rows)
    return results


@pytest.mark.parametrize("compression", ["fp16", "int8", "binary"])
def test_centroid_path_with_full_probe_equals_reference(tmp_path, encoded, encoder, compression):
    _, _, queries = encoded
    searcher = searcher_for(
        tmp_path,
        encoded,
        encoder,
        compression=compression,
        exhaustive_max_docs=0,
        n_centroids=32,
        nprobe=32,
        candidates=N_DOCS,
    )
    assert_topk_of_reference(searcher, queries, 10)


def test_pruned_search_scores_survivors_exactly_and_honours_masks(tmp_path, encoded, encoder):
    _, _, queries = encoded
    searcher = searcher_for(
        tmp_path,
        encoded,
        encoder,
        exhaustive_max_docs=0,
        n_centroids=512,
        nprobe=2,
        candidates=20,
    )
    ref = searcher.reference_scores_encoded(queries)
    rng = np.random.default_rng(0)
    row_of = {d: i for i, d in enumerate(searcher.doc_ids.tolist())}
    for allowed in (None, rng.random(N_DOCS) < 0.5, np.eye(1, N_DOCS, 5, dtype=bool)[0]):
        n_allowed = N_DOCS if allowed is None else int(allowed.sum())
        for qi, hits in enumerate(searcher.search_encoded(queries, 10, allowed)):
            rows = [row_of[h.doc_id] for h in hits]
            assert len(hits) == min(10, n_allowed)
            assert allowed is None or all(allowed[r] for r in rows)
            np.testing.assert_allclose([h.score for h in hits], ref[qi, rows], rtol=1e-4, atol=1e-4)
            assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    # pruning to 20 of 80 docs is an approximation; it still finds most of the true top-10
    # (a random choice of 30 would find about 25%)
    exact = np.argsort(-ref, axis=1)[:, :10]
    got = [[row_of[h.doc_id] for h in hs] for hs in searcher.search_encoded(queries, 10)]
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact.tolist(), strict=True)])
    assert recall >= 0.8


def test_masks_fall_back_to_every_allowed_doc(tmp_path, encoded, encoder):
    _, _, queries = encoded
    searcher = searcher_for(
        tmp_path, encoded, encoder, exhaustive_max_docs=0, n_centroids=64, nprobe=1, candidates=5
    )
    allowed = np.zeros(N_DOCS, bool)
    allowed[[1, 50, 63, 79]] = True
    assert_topk_of_reference(searcher, queries[:4], 10, allowed)
    assert searcher.search_encoded(queries[:1], 10, np.zeros(N_DOCS, bool)) == [[]]
    with pytest.raises(ValueError, match="mask"):
        searcher.search_encoded(queries[:1], 10, np.ones(3, bool))


def test_build_and_reload_through_a_version(tmp_path):
    docs = demo_documents(40)
    store = VersionStore(tmp_path)
    vid = store.build(
        docs, {"colbert": {"exhaustive_max_docs": 0, "n_centroids": 16, "nprobe": 16}}
    )
    stats = store.manifest(vid)["kinds"]["colbert"]["stats"]
    assert stats["n_docs"] == 40 and stats["compression"] == "int8"
    assert stats["encoder"] == "token_embeddings"
    assert not list((store.path(vid) / "colbert").glob(".spill*"))
    queries = demo_queries(4)
    first = open_version(store).searchers["colbert"]
    hits = first.search(queries, 5)
    again = open_version(store).searchers["colbert"].search(queries, 5)
    assert [[h.doc_id for h in hs] for hs in hits] == [[h.doc_id for h in hs] for hs in again]
    ref = first.reference_scores(queries)
    row_of = {d: i for i, d in enumerate(first.doc_ids.tolist())}
    for qi, hs in enumerate(hits):
        np.testing.assert_allclose(
            [h.score for h in hs], np.sort(ref[qi])[::-1][:5], rtol=1e-4, atol=1e-4
        )
        assert [row_of[h.doc_id] for h in hs][0] == int(np.argmax(ref[qi]))


def tiny_multi_vector_encoder_dir(out) -> str:
    """A 2-layer random BERT + 16-dim projection saved as a MultiVectorEncoder (ColBERT
    layout: query/document markers, a mask module), over MiniLM's vocabulary."""
    import torch
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from transformers import BertConfig, BertModel

    from tests.tiny_models import minilm_tokenizer

    torch.manual_seed(0)
    tok = minilm_tokenizer()
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(out / "bert")
    tok.save_pretrained(out / "bert")
    projection = Dense(
        32,
        16,
        bias=False,
        activation_function=torch.nn.Identity(),
        module_input_name="token_embeddings",
    )
    model = MultiVectorEncoder(
        modules=[Transformer(str(out / "bert")), projection, MultiVectorMask()],
        prompts={"query": "[Q] ", "document": "[D] "},
    )
    model.save(str(out / "mve"))
    return str(out / "mve")


def test_a_colbert_checkpoint_goes_through_multi_vector_encoder(tmp_path):
    model = tiny_multi_vector_encoder_dir(tmp_path)
    docs = demo_documents(20)
    store = VersionStore(tmp_path / "collection")
    vid = store.build(docs, {"colbert": {"model": model, "n_centroids": 8}})
    stats = store.manifest(vid)["kinds"]["colbert"]["stats"]
    assert stats["encoder"] == "multi_vector" and stats["dim"] == 16
    searcher = open_version(store).searchers["colbert"]
    queries = demo_queries(3)
    q = searcher.encoder.encode_queries(queries)
    assert all(np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5) for x in q)
    assert_topk_of_reference(searcher, q, 5)


# -- rebuilds keep the codebook (issue #14) ------------------------------------------------


def test_a_small_change_keeps_the_codebook_and_copies_unchanged_codes(tmp_path):
    """A rebuild after 1 of 40 documents changed keeps the previous centroids and codec,
    copies 39 documents' codes and compresses one; against an independent build of every
    document's codes with that same codebook (nothing copied), the files and the search
    results are identical. ``full`` and threshold 0 retrain."""
    from specrag.indexing.encodings.session import Encoded
    from specrag.indexing.encodings.store import EncodingStore
    from specrag.indexing.kinds.colbert.build import (
        Codebook,
        colbert_encodings,
        index_with_codebook,
    )
    from specrag.types import Document

    docs = demo_documents(40)
    kinds = {"colbert": {"exhaustive_max_docs": 0, "n_centroids": 16, "nprobe": 16}}
    store = VersionStore(tmp_path / "c")
    v1 = store.build(docs, kinds)
    assert store.manifest(v1)["kinds"]["colbert"]["stats"]["codebook"] == {"reused": False}
    edited = list(docs)
    d = edited[7]
    edited[7] = Document(d.id, d.text + " (revised with new words)", d.title, d.metadata)
    v2 = store.build(edited, kinds)
    book = store.manifest(v2)["kinds"]["colbert"]["stats"]["codebook"]
    assert book == {
        "reused": True,
        "from_version": v1,
        "changed_share": 0.025,
        "docs_copied": 39,
        "docs_compressed": 1,
    }
    old, new = store.path(v1) / "colbert", store.path(v2) / "colbert"
    assert np.array_equal(np.load(old / "centroids.npy"), np.load(new / "centroids.npy"))

    # Independent truth: every document's codes computed with v1's codebook.
    config = ColbertConfig(**kinds["colbert"])
    (need,) = colbert_encodings(config)
    prev_hashes = np.load(store.path(v1) / "encodings" / f"{need.space.key}.npy")
    ref = tmp_path / "ref"
    ref.mkdir()
    # The same stored token vectors (the store keys them by content hash), read back.
    space = EncodingStore(store.root / "encodings").space(need.space)
    encoded = Encoded(space, np.load(store.path(v2) / "encodings" / f"{need.space.key}.npy"))
    truth = Codebook(old, v1, prev_hashes, 0.025)
    stats = index_with_codebook(encoded, truth, ref, config, copy_unchanged=False)
    assert stats["codebook"]["docs_compressed"] == 40
    for name in ("tokens/codes.bin", "tokens/offsets.npy", "tokens/codec.npz"):
        assert (ref / name).read_bytes() == (new / name).read_bytes(), name
    for name in ("token_centroids.npy", "ivf_offsets.npy", "ivf_docs.npy"):
        assert np.array_equal(np.load(ref / name), np.load(new / name)), name
    ids = np.load(store.path(v2) / "ids.npy")
    queries = demo_queries(6)
    got = open_version(store, v2).searchers["colbert"].search(queries, 5)
    want = ColbertSearcher.load(ref, config, ids).search(queries, 5)
    for g, w in zip(got, want, strict=True):
        assert [h.doc_id for h in g] == [h.doc_id for h in w]
        assert [h.score for h in g] == [h.score for h in w]

    # A full rebuild, threshold 0, or too large a change retrains.
    v3 = store.build(edited, kinds, full=True)
    assert store.manifest(v3)["kinds"]["colbert"]["stats"]["codebook"] == {"reused": False}
    off = {"colbert": {**kinds["colbert"], "reuse_codebook_below": 0}}
    v4 = store.build(docs, off)
    assert store.manifest(v4)["kinds"]["colbert"]["stats"]["codebook"] == {"reused": False}
    many = [Document(x.id, x.text + " (revised)", x.title, x.metadata) for x in docs[:5]]
    v5 = store.build(many + docs[5:], kinds)
    assert store.manifest(v5)["kinds"]["colbert"]["stats"]["codebook"] == {"reused": False}


def test_a_previous_version_gone_midway_falls_back_to_training(tmp_path):
    """The previous version's files vanish after the reuse was decided (pruned by another
    process): the build retrains instead of failing."""
    docs = demo_documents(30)
    kinds = {"colbert": {"exhaustive_max_docs": 0, "n_centroids": 8, "nprobe": 8}}
    store = VersionStore(tmp_path)
    v1 = store.build(docs, kinds)
    (store.path(v1) / "colbert" / "tokens" / "codes.bin").unlink()
    v2 = store.build(docs, kinds)
    stats = store.manifest(v2)["kinds"]["colbert"]["stats"]
    assert stats["codebook"] == {"reused": False} and stats["n_docs"] == 30
    hits = open_version(store, v2).searchers["colbert"].search(demo_queries(2), 3)
    assert all(len(h) == 3 for h in hits)


def test_maxsim_over_many_queries_equals_one_at_a_time(tmp_path):
    from specrag.indexing.kinds.colbert.maxsim import maxsim_store, maxsim_store_many

    rng = np.random.default_rng(7)
    docs = [unit_rows(rng, n, 24) for n in (5, 0, 9, 1, 30, 0, 4)]
    writer = TokenStoreWriter(tmp_path, make_codec("int8", 24).fit(np.concatenate(docs)))
    writer.append(docs)
    store = writer.close()
    queries = [unit_rows(rng, m, 24) for m in (3, 16, 0, 1)]
    subset = np.array([6, 0, 2, 1, 4], np.int64)
    many = maxsim_store_many(queries, store, subset)
    for q, got in zip(queries, many, strict=True):
        want = maxsim_store(q, store, subset) if len(q) else np.full(5, -np.inf, np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
