"""Encode a corpus (or queries) with a sentence-transformers bi-encoder.

Shared by the ``dense`` and ``binary`` kinds and by benchmarks. Documents are encoded
in chunks of ``CHUNK_BATCHES * batch_size`` texts, each sorted by length so that a batch
holds texts of similar length (little padding), written straight into a float32 array that
may be a memory-mapped ``.npy`` so a large corpus never has to fit in RAM twice. Progress
goes to the ``progress`` callback after every batch.

Models with ``query``/``document`` prompts get them through ``encode_query`` /
``encode_document``; plain models (MiniLM) encode both sides the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from specrag.types import Corpus, Progress, no_progress

#: Texts per ``encode_document`` call, in batches: large enough for length sorting.
CHUNK_BATCHES = 16

_seq_length_lock = threading.Lock()


def document_text(doc) -> str:
    """The text a bi-encoder sees for a document: title and body."""
    return doc.full_text()


@contextmanager
def max_seq_length(model, length: int | None) -> Iterator[None]:
    """Temporarily cap the model's input length (the model object is shared and cached,
    so the previous limit is restored afterwards)."""
    if length is None:
        yield
        return
    with _seq_length_lock:
        previous = model.max_seq_length
        model.max_seq_length = length
        try:
            yield
        finally:
            model.max_seq_length = previous


def embedding_dim(model) -> int:
    get_dim = (
        getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    )
    dim = get_dim()
    if dim is None:  # some modules do not declare it; ask the model once
        dim = int(np.asarray(model.encode(["dimension probe"])).shape[1])
    return int(dim)


def encode_corpus(
    model,
    corpus: Corpus,
    *,
    batch_size: int = 64,
    normalize: bool = True,
    out_path: Path | None = None,
    progress: Progress = no_progress,
    stage: str = "encode",
) -> np.ndarray:
    """Embeddings of every document of ``corpus`` (row i = i-th document), float32,
    L2-normalized when ``normalize``. With ``out_path`` they are written into a
    memory-mapped ``.npy`` there, which is returned (open read-write)."""
    n = len(corpus)
    if n == 0:
        raise ValueError("cannot encode an empty corpus")
    dim = embedding_dim(model)
    if out_path is None:
        out = np.empty((n, dim), dtype=np.float32)
    else:
        out = np.lib.format.open_memmap(out_path, mode="w+", dtype=np.float32, shape=(n, dim))
    chunk_size = batch_size * CHUNK_BATCHES
    done = 0
    progress(0, n, stage)
    chunk: list[str] = []
    for doc in corpus:
        chunk.append(document_text(doc))
        if len(chunk) == chunk_size:
            done = _encode_chunk(model, chunk, out, done, batch_size, normalize, progress, stage)
            chunk = []
    if chunk:
        done = _encode_chunk(model, chunk, out, done, batch_size, normalize, progress, stage)
    if done != n:
        raise ValueError(f"corpus yielded {done} documents but reports len() == {n}")
    if isinstance(out, np.memmap):
        out.flush()
    return out


def _encode_chunk(model, texts, out, start, batch_size, normalize, progress, stage) -> int:
    """Encode one chunk batch by batch, longest texts first (little padding per batch, as
    sentence-transformers sorts within a call), reporting progress after every batch."""
    end = start + len(texts)
    if end > len(out):
        raise ValueError(f"corpus yielded more documents than its len() == {len(out)}")
    order = np.argsort([-len(t) for t in texts], kind="stable")
    for lo in range(0, len(texts), batch_size):
        rows = order[lo : lo + batch_size]
        emb = model.encode_document(
            [texts[i] for i in rows],
            batch_size=batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out[start + rows] = np.asarray(emb, dtype=np.float32)
        progress(start + min(lo + batch_size, len(texts)), len(out), stage)
    return end


def encode_queries(
    model, queries: Sequence[str], *, batch_size: int = 64, normalize: bool = True
) -> np.ndarray:
    """Query embeddings, float32 (n_queries, dim), L2-normalized when ``normalize``."""
    if isinstance(queries, str):
        raise ValueError("queries must be a list of strings, not one string")
    if len(queries) == 0:
        return np.empty((0, embedding_dim(model)), dtype=np.float32)
    emb = model.encode_query(
        list(queries),
        batch_size=batch_size,
        normalize_embeddings=normalize,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(emb, dtype=np.float32)
