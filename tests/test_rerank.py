"""Rerankers: MaxSim equals a hand numpy MaxSim (texts on the fly, or a token store), the
fusion with the first stage follows its formula, and the cross-encoder's order is the
model's own ``predict`` order."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.indexing.encoders.tokens import TokenEncoder
from specrag.indexing.kinds.colbert.build import build_token_index
from specrag.indexing.kinds.colbert.config import ColbertConfig
from specrag.indexing.kinds.colbert.token_store import TokenStore
from specrag.rerank import make_reranker
from specrag.rerank.maxsim import MaxSimReranker
from specrag.types import Hit
from tests.conftest import demo_documents, demo_queries
from tests.tiny_models import minilm_tokenizer


@pytest.fixture(scope="module")
def encoder():
    return TokenEncoder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def candidates():
    docs = demo_documents(25)
    hits = [Hit(d.id, float(25 - i), {"dense": float(np.sin(i))}) for i, d in enumerate(docs)]
    return docs, hits


def hand_maxsim(q: np.ndarray, doc: np.ndarray) -> float:
    return float(sum(max(float(qt @ t) for t in doc) for qt in q))


@pytest.fixture(scope="module")
def token_store(tmp_path_factory, encoder, candidates):
    docs, _ = candidates
    tokens = encoder.encode_documents([d.full_text() for d in docs])
    out = tmp_path_factory.mktemp("store")
    build_token_index([tokens], out, ColbertConfig(compression="int8", n_centroids=8))
    return TokenStore.open(out / "tokens")


def test_maxsim_on_the_fly_equals_hand_maxsim(encoder, candidates):
    docs, hits = candidates
    docs, hits = docs[:12], hits[:12]
    query = demo_queries(1)[0]
    texts = [d.full_text() for d in docs]
    q = encoder.encode_queries([query])[0]
    want = np.array([hand_maxsim(q, t) for t in encoder.encode_documents(texts)])
    out = MaxSimReranker(encoder, fusion_weights={}).rerank(query, hits, texts=texts, k=10)
    order = np.lexsort((np.arange(len(want)), -want))[:10]
    assert [h.doc_id for h in out] == [docs[i].id for i in order]
    np.testing.assert_allclose([h.scores["maxsim"] for h in out], want[order], rtol=1e-5)
    assert all("dense" in h.scores for h in out)  # first-stage scores are kept


def test_maxsim_from_a_token_store_equals_hand_maxsim(encoder, candidates, token_store):
    docs, hits = candidates
    query = demo_queries(2)[1]
    q = encoder.encode_queries([query])[0]
    rows = np.arange(len(docs))[::-1].copy()  # hits in another order than the store
    hits_rev = hits[::-1]
    want = np.array([hand_maxsim(q, token_store.doc_tokens(r)) for r in rows])
    out = MaxSimReranker(encoder, token_store, {}).rerank(query, hits_rev, rows=rows)
    order = np.lexsort((np.arange(len(want)), -want))
    assert [h.doc_id for h in out] == [hits_rev[i].doc_id for i in order]
    np.testing.assert_allclose([h.score for h in out], want[order], rtol=1e-5)
    with pytest.raises(ValueError, match="outside"):
        MaxSimReranker(encoder, token_store).rerank(query, hits[:1], rows=np.array([99]))


def test_fusion_with_the_first_stage_follows_its_formula(encoder, candidates, token_store):
    docs, hits = candidates
    query = demo_queries(3)[2]
    rows = np.arange(len(docs))
    raw = MaxSimReranker(encoder, token_store).maxsim_scores(query, rows=rows).astype(np.float64)
    first = np.array([h.score for h in hits])

    def z(x):
        return (x - x.mean()) / x.std()

    hits = [Hit(h.doc_id, h.score, dict(h.scores)) for h in hits]  # the fixture stays intact
    dense = np.array([h.scores["dense"] for h in hits])
    dense[[2, 5]] = dense.min()  # hits the dense retriever did not return get its lowest
    for i in (2, 5):
        del hits[i].scores["dense"]
    want = z(raw) + 0.7 * z(first) + 0.2 * z(dense)
    reranker = MaxSimReranker(encoder, token_store, fusion_weights={"first": 0.7, "dense": 0.2})
    out = reranker.rerank(query, hits, rows=rows)
    order = np.lexsort((np.arange(len(want)), -want))
    assert [h.doc_id for h in out] == [docs[i].id for i in order]
    np.testing.assert_allclose([h.score for h in out], want[order], rtol=1e-6)
    with pytest.raises(ValueError, match=">= 0"):
        MaxSimReranker(encoder, fusion_weights={"first": -1.0})


def test_maxsim_rejects_bad_input(encoder, candidates):
    docs, hits = candidates
    with pytest.raises(ValueError, match="texts"):
        MaxSimReranker(encoder).rerank("q", hits)
    with pytest.raises(ValueError, match="entries"):
        MaxSimReranker(encoder).rerank("q", hits, texts=["a"])
    assert MaxSimReranker(encoder).rerank("q", [], texts=[]) == []


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("cross")
    torch.manual_seed(0)
    tok = minilm_tokenizer()
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_cross_encoder_order_is_the_models_predict_order(tiny_cross_encoder, candidates):
    from sentence_transformers import CrossEncoder

    docs, hits = candidates
    query = demo_queries(1)[0]
    texts = [d.full_text() for d in docs]
    want = CrossEncoder(tiny_cross_encoder, device="cpu").predict([(query, t) for t in texts])
    want = np.asarray(want, dtype=np.float64)
    reranker = make_reranker("cross-encoder", tiny_cross_encoder)
    out = reranker.rerank(query, hits, texts=texts, k=7)
    order = np.lexsort((np.arange(len(want)), -want))[:7]
    assert [h.doc_id for h in out] == [docs[i].id for i in order]
    np.testing.assert_allclose([h.scores["cross-encoder"] for h in out], want[order], rtol=1e-4)
    with pytest.raises(ValueError, match="texts"):
        reranker.rerank(query, hits)


def test_make_reranker_validates_its_method():
    with pytest.raises(ValueError, match="unknown rerank method"):
        make_reranker("bm25")
    with pytest.raises(ValueError, match="model"):
        make_reranker("cross-encoder")


def test_make_reranker_reuses_the_versions_token_store(tmp_path, encoder):
    from specrag.indexing.versions import VersionStore
    from specrag.retrieval.version import open_version

    docs = demo_documents(12)
    store = VersionStore(tmp_path)
    store.build(docs, {"colbert": {"compression": "binary", "n_centroids": 8}})
    version = open_version(store)
    reranker = make_reranker("maxsim", version=version)
    assert reranker.store is not None and reranker.store.codec.name == "binary"
    assert not reranker.needs_texts
    query = demo_queries(1)[0]
    q = encoder.encode_queries([query])[0]
    hits = [Hit(d.id, 1.0) for d in docs]
    rows = np.array([version.row_of(d.id) for d in docs])
    out = reranker.rerank(query, hits, rows=rows, k=5)
    want = np.array([hand_maxsim(q, reranker.store.doc_tokens(r)) for r in rows])
    np.testing.assert_allclose(
        [h.scores["maxsim"] for h in out], np.sort(want)[::-1][:5], rtol=1e-5
    )
    # another model than the version's: no store, texts are encoded on the fly
    assert make_reranker("maxsim", model="minilm", version=version).needs_texts


@pytest.mark.parametrize("query", [" ", "\x00", "\x01\x02", "\t\n"])
def test_a_query_without_tokens_keeps_the_first_stage_order_with_finite_scores(
    encoder, candidates, token_store, query
):
    docs, hits = candidates
    reranker = MaxSimReranker(encoder, token_store, fusion_weights={"first": 0.7, "dense": 0.2})
    out = reranker.rerank(query, hits, rows=np.arange(len(docs)), k=10)
    assert [h.doc_id for h in out] == [h.doc_id for h in hits[:10]]
    assert all(np.isfinite(h.score) and all(np.isfinite(list(h.scores.values()))) for h in out)


def test_a_candidate_without_tokens_gets_the_lowest_maxsim_not_minus_inf(encoder, candidates):
    docs, hits = candidates
    texts = [d.full_text() for d in docs[:6]]
    texts[2] = ""  # an empty document
    out = MaxSimReranker(encoder, fusion_weights={"first": 0.7}).rerank(
        demo_queries(1)[0], hits[:6], texts=texts
    )
    assert all(np.isfinite(h.score) and np.isfinite(h.scores["maxsim"]) for h in out)
    by_id = {h.doc_id: h.scores["maxsim"] for h in out}
    assert by_id[docs[2].id] == min(by_id.values())
