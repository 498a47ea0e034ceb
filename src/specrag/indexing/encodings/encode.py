"""One forward pass per document for every output its space is asked for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from specrag.indexing.encodings.spaces import EncodingSpace


def encode_texts(
    space: EncodingSpace,
    texts: Sequence[str],
    fields: Sequence[str],
    batch_size: int,
    on_batch: Callable[[int], None] = lambda done: None,
) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
    """The ``fields`` of every text (``outputs[field][i]`` for ``texts[i]``) and extra
    facts to record with them (the sparse vocabulary size). Texts go longest first in
    batches of ``batch_size`` (little padding); ``on_batch(done)`` after each batch."""
    if space.encoder == "bi_encoder":
        return _bi_encoder(space, texts, fields, batch_size, on_batch), {}
    if space.encoder == "multi_vector":
        return _multi_vector(space, texts, batch_size, on_batch), {}
    if space.encoder == "sparse":
        return _sparse(space, texts, batch_size, on_batch)
    raise ValueError(f"unknown encoder kind {space.encoder!r}")


def _batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[lo : lo + batch_size] for lo in range(0, len(texts), batch_size)]


def _bi_encoder(space, texts, fields, batch_size, on_batch) -> dict[str, list[np.ndarray]]:
    from specrag.indexing.encoders.embedding import max_seq_length
    from specrag.indexing.encoders.models import load_model
    from specrag.indexing.encoders.precision import encode_precision, model_device
    from specrag.indexing.encoders.tokens import split_forward

    model = load_model(space.model)
    special = np.array(sorted(model.tokenizer.all_special_ids), dtype=np.int64)
    extra = {"task": space.task} if space.task else {}
    out: dict[str, list[Any]] = {f: [None] * len(texts) for f in fields}
    done = 0
    with (
        max_seq_length(model, space.max_seq_length),
        encode_precision(model_device(model), space.dtype),
    ):
        for rows in _batches(texts, batch_size):
            forward = model.encode(
                [texts[i] for i in rows],
                batch_size=batch_size,
                output_value=None,
                prompt=space.prompt,
                show_progress_bar=False,
                **extra,
            )
            tokens, pooled = split_forward(forward, special)
            for j, i in enumerate(rows.tolist()):
                if "tokens" in out:
                    out["tokens"][i] = tokens[j].astype(np.float16)
                if "pooled" in out:
                    out["pooled"][i] = pooled[j]
            done += len(rows)
            on_batch(done)
    return out


def _multi_vector(space, texts, batch_size, on_batch) -> dict[str, list[np.ndarray]]:
    from specrag.indexing.encoders.tokens import TokenEncoder

    encoder = TokenEncoder(space.model, "multi_vector", batch_size, dtype=space.dtype)
    tokens: list[Any] = [None] * len(texts)
    done = 0
    for rows in _batches(texts, batch_size):
        for i, t in zip(
            rows.tolist(), encoder.encode_documents([texts[i] for i in rows]), strict=True
        ):
            tokens[i] = t
        done += len(rows)
        on_batch(done)
    return {"tokens": tokens}


def _sparse(space, texts, batch_size, on_batch):
    from specrag.indexing.encoders.sparse import encode_sparse_flat

    terms: list[Any] = [None] * len(texts)
    weights: list[Any] = [None] * len(texts)
    dim = 0
    done = 0
    for rows in _batches(texts, batch_size):
        doc, term, weight, d = encode_sparse_flat(
            space.model, [texts[i] for i in rows], "document", batch_size, space.max_seq_length
        )
        dim = max(dim, d)
        bounds = np.searchsorted(doc, np.arange(len(rows) + 1))
        for j, i in enumerate(rows.tolist()):
            terms[i] = term[bounds[j] : bounds[j + 1]].astype(np.int32)
            weights[i] = weight[bounds[j] : bounds[j + 1]].astype(np.float32)
        done += len(rows)
        on_batch(done)
    return {"terms": terms, "weights": weights}, {"dim": int(dim)}
