"""ANCE in Pyserini's layout (roberta.* + embeddingHead + norm) loads as a dense encoder
whose output equals a manual torch computation: LayerNorm(Linear(CLS hidden state))."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from specrag.indexing.encoders.ance import is_pyserini_ance, load_pyserini_ance
from specrag.indexing.encoders.models import load_model
from specrag.indexing.versions import VersionStore
from specrag.retrieval.version import open_version
from tests.conftest import demo_documents, demo_queries
from tests.tiny_models import minilm_tokenizer

HIDDEN, OUT = 32, 24
TEXTS = [
    "Glioblastoma stem cells need A20.",
    "A much longer second text, so that padding is exercised here.",
]


def save_tiny_pyserini_ance(out: Path, seed: int = 0) -> dict:
    """A 2-layer RoBERTa + head with random weights (the head's layer norm randomized too,
    so a wrong mapping shows), saved as Pyserini saves AnceEncoder. Returns the state."""
    import torch
    from safetensors.torch import save_file
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(seed)
    tok = minilm_tokenizer()  # any tokenizer works; the ids only need to fit the vocab
    config = RobertaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=tok.pad_token_id,
        type_vocab_size=2,
        architectures=["AnceEncoder"],
    )
    roberta = RobertaModel(config, add_pooling_layer=False)
    state = {f"roberta.{k}": v.contiguous() for k, v in roberta.state_dict().items()}
    state["embeddingHead.weight"] = torch.randn(OUT, HIDDEN) * 0.2
    state["embeddingHead.bias"] = torch.randn(OUT) * 0.1
    state["norm.weight"] = 1 + torch.randn(OUT) * 0.3
    state["norm.bias"] = torch.randn(OUT) * 0.3
    save_file(state, str(out / "model.safetensors"))
    config.save_pretrained(out)
    tok.save_pretrained(out)
    return state


def manual_ance(folder: Path, state: dict, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    config = RobertaConfig.from_pretrained(folder)
    roberta = RobertaModel(config, add_pooling_layer=False).eval()
    roberta.load_state_dict(
        {k[len("roberta.") :]: v for k, v in state.items() if k.startswith("roberta.")}
    )
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        cls = roberta(**batch).last_hidden_state[:, 0]
        projected = cls @ state["embeddingHead.weight"].T + state["embeddingHead.bias"]
        out = torch.nn.functional.layer_norm(
            projected, (OUT,), state["norm.weight"], state["norm.bias"], eps=1e-5
        )
    return out.numpy()


@pytest.fixture(scope="module")
def ance_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-ance")
    return folder, save_tiny_pyserini_ance(folder)


def test_pyserini_layout_is_detected(ance_dir):
    folder, _ = ance_dir
    assert is_pyserini_ance(str(folder))
    assert not is_pyserini_ance("all-MiniLM-L6-v2")
    assert not is_pyserini_ance(str(folder / "missing"))


def test_loaded_encoder_equals_manual_ance(ance_dir):
    folder, state = ance_dir
    model = load_pyserini_ance(str(folder), device="cpu")
    got = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=False)
    assert got.shape == (2, OUT)
    np.testing.assert_allclose(got, manual_ance(folder, state, TEXTS), atol=1e-5)
    # load_model routes the layout through the same loader.
    via_registry = load_model(str(folder)).encode(TEXTS, normalize_embeddings=False)
    np.testing.assert_allclose(via_registry, got, atol=1e-6)


def test_ance_serves_as_a_dense_index(ance_dir, tmp_path):
    folder, state = ance_dir
    docs = demo_documents(30)
    store = VersionStore(tmp_path)
    store.build(docs, {"dense": {"model": str(folder), "normalize": False}})
    searcher = open_version(store).searchers["dense"]
    texts = [d.full_text() for d in docs[:3]]
    np.testing.assert_allclose(
        searcher.embeddings[:3], manual_ance(folder, state, texts), atol=1e-4
    )
    queries = demo_queries(3)
    ref = searcher.reference_scores(queries)
    for qi, hits in enumerate(searcher.search(queries, 5)):
        want = np.lexsort((np.arange(len(docs)), -ref[qi]))[:5]
        assert [h.doc_id for h in hits] == [docs[r].id for r in want]


def test_a_checkpoint_without_the_head_is_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file(
        {"roberta.embeddings.word_embeddings.weight": torch.zeros(4, 4)},
        str(tmp_path / "model.safetensors"),
    )
    (tmp_path / "config.json").write_text('{"hidden_size": 4}')
    assert not is_pyserini_ance(str(tmp_path))
    with pytest.raises(ValueError, match="not an ANCE checkpoint"):
        load_pyserini_ance(str(tmp_path))
