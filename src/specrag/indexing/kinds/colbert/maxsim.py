"""The MaxSim operator over ragged documents, vectorized (no Python loop per token).

``score(q, D) = sum_i max_t q_i . d_t``. Documents arrive as concatenated token rows with
offsets; per-document maxima come from one ``np.maximum.reduceat``. Compressed tokens are
scored without decoding them: the codecs decode affinely per dimension
(``lo + level * scale``), so ``q . d = (q * scale) . level + q . lo``.
A document with no tokens cannot match: its score is ``-inf``.
"""

from __future__ import annotations

import numpy as np

from specrag.indexing.kinds.colbert.token_store import TokenCodec, TokenStore

#: Token rows scored per matrix product (bounds memory: rows x query tokens floats).
CHUNK_TOKENS = 65536


def maxsim_dense(query: np.ndarray, tokens: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """MaxSim of one query (m, dim) against float token rows split by ``offsets``."""
    q = np.ascontiguousarray(query, dtype=np.float32)
    return _maxsim_levels(q, np.zeros(len(q), np.float32), tokens, offsets, lambda x: x)


def maxsim_codes(
    query: np.ndarray, codes: np.ndarray, offsets: np.ndarray, codec: TokenCodec
) -> np.ndarray:
    """MaxSim of one query against coded token rows split by ``offsets``."""
    q = np.ascontiguousarray(query, dtype=np.float32)
    folded = np.ascontiguousarray(q * codec.scale, dtype=np.float32)
    bias = (q @ codec.lo).astype(np.float32)
    return _maxsim_levels(folded, bias, codes, offsets, codec.levels)


def maxsim_store(query: np.ndarray, store: TokenStore, docs: np.ndarray) -> np.ndarray:
    """MaxSim of one query against documents ``docs`` (internal rows) of a token store,
    read chunk by chunk so that memory stays bounded on large candidate sets."""
    docs = np.asarray(docs, dtype=np.int64)
    out = np.empty(len(docs), np.float32)
    lengths = store.offsets[docs + 1] - store.offsets[docs]
    for lo, hi in _chunks(lengths):
        codes, local = store.doc_codes(docs[lo:hi])
        out[lo:hi] = maxsim_codes(query, codes, local, store.codec)
    return out


def maxsim_store_many(queries: list[np.ndarray], store: TokenStore, docs: np.ndarray) -> np.ndarray:
    """MaxSim of several queries against documents ``docs`` of a token store:
    (n_queries, len(docs)), one pass over the codes for all of them (each chunk's levels
    are computed once; what ``maxsim_store`` per query does, up to float rounding)."""
    docs = np.asarray(docs, dtype=np.int64)
    codec = store.codec
    qs = [np.ascontiguousarray(q, dtype=np.float32).reshape(-1, codec.dim) for q in queries]
    out = np.full((len(qs), len(docs)), -np.inf, np.float32)
    bounds = np.concatenate([[0], np.cumsum([len(q) for q in qs])]).astype(np.int64)
    if bounds[-1] == 0:
        return out
    folded = np.ascontiguousarray(np.concatenate(qs) * codec.scale, dtype=np.float32)
    bias = (np.concatenate(qs) @ codec.lo).astype(np.float32)
    lengths = store.offsets[docs + 1] - store.offsets[docs]
    for lo, hi in _chunks(lengths):
        codes, local = store.doc_codes(docs[lo:hi])
        nonempty = np.flatnonzero(np.diff(local) > 0)
        if len(nonempty) == 0:
            continue
        sims = codec.levels(codes) @ folded.T  # (n_tokens, all query tokens)
        per_doc = np.maximum.reduceat(sims, local[nonempty], axis=0) + bias
        for i in range(len(qs)):
            if bounds[i + 1] > bounds[i]:
                out[i, lo + nonempty] = per_doc[:, bounds[i] : bounds[i + 1]].sum(axis=1)
    return out


def _chunks(lengths: np.ndarray):
    """Consecutive doc ranges holding about CHUNK_TOKENS tokens each (at least one doc)."""
    start, total = 0, 0
    for i, n in enumerate(lengths.tolist()):
        if total and total + n > CHUNK_TOKENS:
            yield start, i
            start, total = i, 0
        total += n
    if start < len(lengths):
        yield start, len(lengths)


def _maxsim_levels(q, bias, rows, offsets, to_levels) -> np.ndarray:
    offsets = np.asarray(offsets, dtype=np.int64)
    n_docs = len(offsets) - 1
    scores = np.full(n_docs, -np.inf, np.float32)
    lengths = np.diff(offsets)
    nonempty = np.flatnonzero(lengths > 0)
    if len(nonempty) == 0 or len(q) == 0:  # an empty query matches nothing
        return scores
    sims = to_levels(rows) @ q.T  # (n_tokens, m)
    per_doc = np.maximum.reduceat(sims, offsets[nonempty], axis=0)  # (n_nonempty, m)
    scores[nonempty] = (per_doc + bias).sum(axis=1)
    return scores
