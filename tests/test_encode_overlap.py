"""Tokenization overlapped with the forward (issue #17, point 1): the bi-encoder path of
the encoding store tokenizes batch n+1 on a background thread while batch n's forward
runs, and gives exactly what ``model.encode(..., output_value=None)`` gave."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.indexing.encoders.embedding import max_seq_length
from specrag.indexing.encoders.models import load_model
from specrag.indexing.encoders.tokens import split_forward
from specrag.indexing.encodings.encode import _batches, _overlapped_forwards, encode_texts
from specrag.indexing.encodings.spaces import bi_encoder_space
from tests.conftest import demo_documents

BATCH = 6


@pytest.fixture(scope="module")
def texts() -> list[str]:
    docs = demo_documents(20)
    # mixed lengths: whole abstracts, first sentences, a few words, one empty-ish text
    out = [d.text if i % 3 == 0 else d.text[: 20 + 40 * i] for i, d in enumerate(docs)]
    out[5] = "short"
    return out


@pytest.mark.parametrize(("prompt", "length"), [(None, None), ("query: ", 32)])
def test_overlapped_forward_equals_encode(texts, prompt, length):
    model = load_model("all-MiniLM-L6-v2")
    special = np.array(sorted(model.tokenizer.all_special_ids), dtype=np.int64)
    with max_seq_length(model, length):
        ours = list(_overlapped_forwards(model, texts, BATCH, prompt, {}))
        theirs = [
            model.encode(
                [texts[i] for i in rows],
                batch_size=BATCH,
                output_value=None,
                prompt=prompt,
                show_progress_bar=False,
            )
            for rows in _batches(texts, BATCH)
        ]
    assert len(ours) == len(theirs) == -(-len(texts) // BATCH)
    for (rows, got), want, expected_rows in zip(ours, theirs, _batches(texts, BATCH), strict=True):
        assert rows.tolist() == expected_rows.tolist()
        for g, w in zip(got, want, strict=True):
            assert set(g) >= {"input_ids", "attention_mask", "token_embeddings"}
            assert set(g) == set(w)
            assert g["input_ids"].tolist() == w["input_ids"].tolist()
            assert g["attention_mask"].tolist() == w["attention_mask"].tolist()
        got_tokens, got_pooled = split_forward(got, special)
        want_tokens, want_pooled = split_forward(want, special)
        np.testing.assert_allclose(got_pooled, want_pooled, atol=1e-6, rtol=0)
        for g, w in zip(got_tokens, want_tokens, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=1e-5, rtol=0)
    if length is not None:
        assert max(len(g["input_ids"]) for _, got in ours for g in got) == length


def test_encode_texts_matches_encode_per_text(texts):
    model = load_model("all-MiniLM-L6-v2")
    special = np.array(sorted(model.tokenizer.all_special_ids), dtype=np.int64)
    space = bi_encoder_space("all-MiniLM-L6-v2")
    out, _ = encode_texts(space, texts, ("pooled", "tokens"), BATCH)
    tokens, pooled = split_forward(
        model.encode(texts, batch_size=BATCH, output_value=None, show_progress_bar=False),
        special,
    )
    np.testing.assert_allclose(np.stack(out["pooled"]), pooled, atol=1e-6, rtol=0)
    for g, w in zip(out["tokens"], tokens, strict=True):
        assert g.dtype == np.float16 and g.shape == w.shape
        np.testing.assert_allclose(g.astype(np.float32), w, atol=1e-3, rtol=0)
