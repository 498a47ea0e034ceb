"""Small exact pieces shared by the vector searchers (``dense``, ``binary``): mask
checks, exact top-k with the contract's tie rule (higher score first, then lower row),
and turning rows into hits."""

from __future__ import annotations

import numpy as np

from specrag.types import DocMask, Hit


def check_k(k: int) -> None:
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def check_mask(allowed: DocMask | None, n_docs: int) -> np.ndarray | None:
    """Validate a DocMask; returns None when it allows every row (no filtering needed)."""
    if allowed is None:
        return None
    allowed = np.asarray(allowed)
    if allowed.dtype != np.bool_:
        raise ValueError(f"allowed must be a boolean mask, got dtype {allowed.dtype}")
    if allowed.shape != (n_docs,):
        raise ValueError(f"allowed mask has shape {allowed.shape}, expected ({n_docs},)")
    if allowed.all():
        return None
    return allowed


def top_k(
    scores: np.ndarray, k: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``scores`` (1-D; ``rows[i]`` is the row of ``scores[i]``, default
    ``i``), best first, ties broken by lower row, also at the cut-off. Returns (rows, scores)."""
    if rows is None:
        rows = np.arange(len(scores))
    if len(scores) > k:
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        above = np.flatnonzero(scores > kth)
        tied = np.flatnonzero(scores == kth)
        if len(tied) > k - len(above):
            tied = tied[np.argsort(rows[tied], kind="stable")[: k - len(above)]]
        keep = np.concatenate([above, tied])
        scores, rows = scores[keep], rows[keep]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def sort_hits(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop faiss's ``-1`` padding and order by (score desc, row asc)."""
    valid = rows >= 0
    rows, scores = rows[valid], scores[valid]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def to_hits(rows: np.ndarray, scores: np.ndarray, doc_ids: np.ndarray, kind: str) -> list[Hit]:
    return [
        Hit(doc_id=str(doc_ids[r]), score=float(s), scores={kind: float(s)})
        for r, s in zip(rows.tolist(), scores.tolist(), strict=True)
    ]


def bitmap_selector(allowed: np.ndarray):
    """A faiss IDSelectorBitmap over ``allowed``; returns (selector, bitmap) -- keep the
    bitmap alive as long as the selector (faiss holds a raw pointer to it)."""
    import faiss

    bitmap = np.packbits(allowed, bitorder="little")
    return faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap)), bitmap
