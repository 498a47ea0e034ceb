"""One forward pass per document for every output its space is asked for."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
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
        closing(_overlapped_forwards(model, texts, batch_size, space.prompt, extra)) as forwards,
    ):
        for rows, forward in forwards:
            tokens, pooled = split_forward(forward, special)
            for j, i in enumerate(rows.tolist()):
                if "tokens" in out:
                    out["tokens"][i] = tokens[j].astype(np.float16)
                if "pooled" in out:
                    out["pooled"][i] = pooled[j]
            done += len(rows)
            on_batch(done)
    return out


def _overlapped_forwards(model, texts, batch_size, prompt, extra) -> Iterator[tuple]:
    """``(rows, per-text outputs)`` for every batch of ``_batches``: what
    ``model.encode(batch, output_value=None, prompt=prompt, **extra)`` returns, with the
    tokenization of batch n+1 on a background thread while batch n's forward runs (the
    tokenizer releases the GIL; the forward is the caller's thread, under its autocast).

    Mirrors sentence-transformers' ``encode``/``_inference``: the prompt resolved as
    ``encode`` resolves it (an explicit prompt, else the model's default prompt name),
    ``preprocess(batch, prompt=..., **extra)`` (prompt and truncation to
    ``max_seq_length`` as the input module applies them), features moved to the model's
    device, the model called under ``inference_mode``, ``truncate_dim`` applied, and every
    batch-first output split per text. Call it inside the caller's ``max_seq_length``
    block: the tokenizer reads the limit, and every pending tokenization is finished (or
    waited for) before this generator returns."""
    import torch
    from sentence_transformers.util import batch_to_device, truncate_embeddings

    prompt = model._resolve_prompt(prompt, None)
    truncate_dim = getattr(model, "truncate_dim", None)
    device = model.device
    batches = _batches(texts, batch_size)

    def tokenize(rows: np.ndarray) -> dict[str, Any]:
        return model.preprocess([texts[i] for i in rows], prompt=prompt, **extra)

    model.eval()
    with ThreadPoolExecutor(1, thread_name_prefix="tokenize") as pool:
        pending = pool.submit(tokenize, batches[0]) if batches else None
        for n, rows in enumerate(batches):
            features = pending.result()
            pending = pool.submit(tokenize, batches[n + 1]) if n + 1 < len(batches) else None
            with torch.inference_mode():
                features = batch_to_device(features, device)
                result = model(features, **extra)
                if truncate_dim is not None:
                    result["sentence_embedding"] = truncate_embeddings(
                        result["sentence_embedding"], truncate_dim
                    )
            yield rows, [_row(result, j, len(rows)) for j in range(len(rows))]


def _row(result: dict[str, Any], j: int, n: int) -> dict[str, Any]:
    """Text ``j``'s outputs of a batch of ``n``, as ``encode(output_value=None)`` splits."""
    import torch

    return {
        name: value[j]
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n
        else value
        for name, value in result.items()
    }


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
