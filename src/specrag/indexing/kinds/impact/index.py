"""The on-disk impact index shared by ``bm25`` and ``splade`` (and the sparse benchmark).

An impact index stores, per term, the documents that contain it and a small integer
*impact* (the term's quantized score contribution), so a query's score for a document is
``scale * sum_t weight_t * impact[t, doc]``. Files in the index directory::

    impact_index.json   format, n_docs, n_terms, block_size, impact and postings dtypes, scale,
                        encoder meta
    offsets.npy         int64 [n_terms+1]   postings of term t are [offsets[t], offsets[t+1])
    postings.npy        uint32|uint64       doc id | impact << DOC_BITS (24 in uint32, 32 in
                                            uint64); docs strictly increasing within a term,
                                            impacts >= 1 (every posting can match)
    block_offsets.npy   int64 [n_terms+1]   sparse block-max entries of term t (a CSR over terms)
    block_ids.npy       int32               blocks (doc_id // block_size) where t occurs, increasing
    block_max.npy       impacts' dtype      max impact of t in that block
    block_postings.npy  int64               that block's postings of t: first | count << 36
    dense_slot.npy      int32 [n_terms]     row of t in the dense tables, or -1 (sparse)
    dense_max.npy       impacts' dtype [n_dense, n_blocks]    max impact of t per block (0: none)
    dense_starts.npy    uint32 [n_dense, n_blocks+1]  t's postings in block b are
                                            offsets[t] + [starts[b], starts[b+1])
    perm.npy            int32 [n_docs]      optional: corpus row of internal row i (a document
                                            reordering such as BP); absent = identity

Doc ids in the postings and blocks are *internal* rows; with a ``perm``, the searcher maps
them back to corpus rows (and masks to internal rows), so callers only see corpus rows.

One array of packed postings rather than separate doc and impact arrays: a block's
postings of a term then sit in one run of memory (one cache line where BMP reads ~10),
and a posting is 1 byte smaller; measured on 1M documents (docs/benchmarks.md): BMP ~6%
and the exhaustive scan ~20% faster.

Block maxima come in two layouts, chosen per term by size. A term found in few blocks
keeps a sparse list of (block, max, postings) entries, 13-14 bytes each. A term found in
many keeps two dense rows over all blocks, 5-6 bytes per block: as soon as that is no
larger (the term occurs in >= ~38% of the blocks), the dense rows are stored instead. They
also make the frequent terms of long (SPLADE) queries cheap to search: the bound pass adds
their row with vector instructions, and a block's postings are found by index, without the
per-query table the sparse terms need (retrieval/bmp.py).

Widths are chosen from the data and checked here; a limit that would be exceeded raises
a ValueError instead of wrapping (doc ids and term ids are int32, never 16-bit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

from specrag.atomic import write_json_atomic
from specrag.errors import UserError

FORMAT = 2
META_FILE = "impact_index.json"
PERM_FILE = "perm.npy"
INT32_MAX = np.iinfo(np.int32).max
#: Limits of ``block_postings`` (first posting, count), the word the BMP kernel copies into
#: its per-query table (retrieval/bmp.py).
POSTING_BITS = 36
COUNT_BITS = 17
MAX_BLOCK_SIZE = 1 << (COUNT_BITS - 1)
MAX_POSTINGS = (1 << POSTING_BITS) - 1
IMPACT_DTYPES = {8: np.uint8, 16: np.uint16}
#: Bits of the doc id in a packed posting, by postings dtype.
DOC_BITS = {np.dtype(np.uint32): 24, np.dtype(np.uint64): 32}


class IndexFormatError(UserError, ValueError):
    """An index written in another format version: the collection must be rebuilt (the
    service answers HTTP 409, as for a collection not built yet)."""


@dataclass
class ImpactIndex:
    """An impact index in memory (see the module docstring for the arrays)."""

    n_docs: int
    block_size: int
    scale: float
    offsets: np.ndarray
    postings: np.ndarray
    block_offsets: np.ndarray
    block_ids: np.ndarray
    block_max: np.ndarray
    block_postings: np.ndarray
    dense_slot: np.ndarray
    dense_max: np.ndarray
    dense_starts: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    perm: np.ndarray | None = None

    @property
    def n_terms(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_postings(self) -> int:
        return len(self.postings)

    @property
    def doc_bits(self) -> int:
        """Bits of the doc id in a packed posting (the impact sits above them)."""
        return DOC_BITS[self.postings.dtype]

    @property
    def impact_dtype(self) -> np.dtype:
        return self.block_max.dtype

    def unpack(self) -> tuple[np.ndarray, np.ndarray]:
        """(doc ids int32, impacts) of every posting, in postings order (a copy)."""
        bits = self.doc_bits
        docs = (self.postings & ((1 << bits) - 1)).astype(np.int32)
        return docs, (self.postings >> bits).astype(self.impact_dtype)

    @property
    def n_blocks(self) -> int:
        return n_blocks_for(self.n_docs, self.block_size)

    @property
    def max_impact(self) -> int:
        return int(np.iinfo(self.impact_dtype).max)

    def nbytes(self) -> int:
        """Bytes of the arrays (postings + block-max tables)."""
        arrays = [getattr(self, name) for name in _ARRAYS]
        if self.perm is not None:
            arrays.append(self.perm)
        return sum(a.nbytes for a in arrays)

    def block_table_bytes(self) -> int:
        """Bytes of the block-max tables alone (sparse and dense)."""
        return sum(
            getattr(self, name).nbytes for name in _ARRAYS if name.startswith(("block", "dense"))
        )

    def stats(self) -> dict[str, Any]:
        return {
            "n_docs": self.n_docs,
            "n_terms": self.n_terms,
            "n_postings": self.n_postings,
            "n_block_entries": int(len(self.block_ids)),
            "n_dense_terms": int(len(self.dense_max)),
            "block_size": self.block_size,
            "impact_bits": int(self.impact_dtype.itemsize * 8),
            "scale": self.scale,
            "reordered": self.perm is not None,
            "bytes": self.nbytes(),
        }

    @classmethod
    def from_postings(
        cls,
        n_docs: int,
        offsets: np.ndarray,
        docs: np.ndarray,
        impacts: np.ndarray,
        *,
        block_size: int,
        scale: float,
        meta: dict[str, Any] | None = None,
        perm: np.ndarray | None = None,
    ) -> ImpactIndex:
        """Validate term-major postings (doc ids = internal rows), pack them and add their
        block-max tables. ``perm[i]`` is the corpus row of internal row i (None: the same)."""
        offsets, docs, impacts = _check_postings(n_docs, offsets, docs, impacts, block_size, scale)
        perm = _check_perm(perm, n_docs)
        return cls(
            n_docs=int(n_docs),
            block_size=int(block_size),
            scale=float(scale),
            offsets=offsets,
            postings=pack_postings(docs, impacts, n_docs),
            **build_block_max(offsets, docs, impacts, n_docs, block_size),
            meta=dict(meta or {}),
            perm=perm,
        )

    def save(self, out_dir: Path) -> dict[str, Any]:
        """Write the arrays, then the metadata file last (its presence marks a complete
        index; the version directory around it is renamed into place atomically)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(out_dir / f"{name}.npy", getattr(self, name), allow_pickle=False)
        if self.perm is not None:
            np.save(out_dir / PERM_FILE, self.perm, allow_pickle=False)
        header = {
            "format": FORMAT,
            "n_docs": self.n_docs,
            "n_terms": self.n_terms,
            "block_size": self.block_size,
            "impact_dtype": str(self.impact_dtype),
            "postings_dtype": str(self.postings.dtype),
            "scale": self.scale,
            "meta": self.meta,
        }
        write_json_atomic(out_dir / META_FILE, header)
        return self.stats()

    @classmethod
    def load(cls, index_dir: Path) -> ImpactIndex:
        index_dir = Path(index_dir)
        path = index_dir / META_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: not an impact index directory")
        header = json.loads(path.read_text())
        if header.get("format") != FORMAT:
            raise IndexFormatError(
                f"{path}: impact index format {header.get('format')!r}, this version reads "
                f"format {FORMAT}: rebuild the index"
            )
        arrays = {name: np.load(index_dir / f"{name}.npy", allow_pickle=False) for name in _ARRAYS}
        perm_path = index_dir / PERM_FILE
        perm = np.load(perm_path, allow_pickle=False) if perm_path.exists() else None
        index = cls(
            n_docs=int(header["n_docs"]),
            block_size=int(header["block_size"]),
            scale=float(header["scale"]),
            meta=header.get("meta", {}),
            perm=_check_perm(perm, int(header["n_docs"])),
            **arrays,
        )
        if (
            index.n_terms != header["n_terms"]
            or str(index.impact_dtype) != header["impact_dtype"]
            or str(index.postings.dtype) != header["postings_dtype"]
            or index.dense_starts.shape != (len(index.dense_max), index.n_blocks + 1)
        ):
            raise ValueError(f"{index_dir}: arrays do not match {META_FILE}")
        return index


_ARRAYS = (
    "offsets",
    "postings",
    "block_offsets",
    "block_ids",
    "block_max",
    "block_postings",
    "dense_slot",
    "dense_max",
    "dense_starts",
)


def _check_perm(perm: np.ndarray | None, n_docs: int) -> np.ndarray | None:
    """A row permutation as int32, or a ValueError naming what is wrong with it."""
    if perm is None:
        return None
    perm = np.asarray(perm)
    if perm.shape != (n_docs,) or perm.dtype.kind not in "iu":
        raise ValueError(f"perm must be an integer array of length n_docs={n_docs}")
    seen = np.zeros(n_docs, dtype=bool)
    if perm.min(initial=0) < 0 or perm.max(initial=0) >= n_docs:
        raise ValueError("perm entries must lie in [0, n_docs)")
    seen[perm] = True
    if not seen.all():
        raise ValueError("perm must be a permutation of the rows (a row is missing)")
    return np.ascontiguousarray(perm, dtype=np.int32)


def n_blocks_for(n_docs: int, block_size: int) -> int:
    return (int(n_docs) + int(block_size) - 1) // int(block_size)


# ---------------------------------------------------------------------------------------
# Quantization


def quantize(
    values: np.ndarray, bits: int = 8, scale: float | None = None
) -> tuple[np.ndarray, float]:
    """Map positive float weights to integers in [1, 2**bits - 1]: ``q = round(v / scale)``
    with ``scale = max(v) / (2**bits - 1)`` unless given; every positive weight stays >= 1
    so that a document containing a term always matches it. Returns (q, scale)."""
    if bits not in IMPACT_DTYPES:
        raise ValueError(f"impact bits must be one of {sorted(IMPACT_DTYPES)}, got {bits}")
    values = np.asarray(values)
    if values.size and not np.all(np.isfinite(values)):
        raise ValueError("impact weights must be finite")
    if values.size and values.min() <= 0:
        raise ValueError("impact weights must be positive (drop zero weights before quantizing)")
    top = (1 << bits) - 1
    if scale is None:
        vmax = float(values.max()) if values.size else 1.0
        scale = vmax / top
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"quantization scale must be positive and finite, got {scale}")
    q = values / scale
    np.rint(q, out=q)
    np.clip(q, 1, top, out=q)
    return q.astype(IMPACT_DTYPES[bits]), float(scale)


# ---------------------------------------------------------------------------------------
# Building term-major postings from arrays


def term_major(
    term_ids: np.ndarray, doc_ids: np.ndarray, values: np.ndarray, n_terms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group (term, doc, value) triples by term with a stable counting sort, O(n).

    Give them in increasing doc order (doc-major, as documents are read) and each term's
    docs come out increasing. Returns (offsets int64[n_terms+1], docs int32, values)."""
    term_ids = np.ascontiguousarray(term_ids)
    doc_ids = np.ascontiguousarray(doc_ids)
    values = np.ascontiguousarray(values)
    if not (len(term_ids) == len(doc_ids) == len(values)):
        raise ValueError("term_ids, doc_ids and values must have the same length")
    if n_terms > INT32_MAX:
        raise ValueError(f"{n_terms} terms exceed the int32 term id limit")
    if len(term_ids) and (term_ids.min() < 0 or term_ids.max() >= n_terms):
        raise ValueError(f"term ids must lie in [0, {n_terms})")
    if len(doc_ids) and (doc_ids.min() < 0 or doc_ids.max() > INT32_MAX):
        raise ValueError("doc ids must lie in [0, 2**31 - 1]")
    counts = np.bincount(term_ids, minlength=n_terms).astype(np.int64)
    offsets = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    out_docs = np.empty(len(doc_ids), dtype=np.int32)
    out_values = np.empty(len(values), dtype=values.dtype)
    _scatter_by_term(
        term_ids,  # any integer dtype: a cast would copy every posting
        doc_ids.astype(np.int32, copy=False),
        values,
        offsets,
        out_docs,
        out_values,
    )
    return offsets, out_docs, out_values


@numba.njit(cache=True, nogil=True)
def _scatter_by_term(term_ids, doc_ids, values, offsets, out_docs, out_values):
    cursor = offsets[:-1].copy()
    for i in range(len(term_ids)):
        t = term_ids[i]
        p = cursor[t]
        out_docs[p] = doc_ids[i]
        out_values[p] = values[i]
        cursor[t] = p + 1


def _check_postings(n_docs, offsets, docs, impacts, block_size, scale):
    if not 0 < n_docs <= INT32_MAX:
        raise ValueError(f"n_docs must be in [1, 2**31 - 1], got {n_docs}")
    if not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise ValueError(f"block_size must be in [1, {MAX_BLOCK_SIZE}], got {block_size}")
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if len(offsets) and offsets[-1] > MAX_POSTINGS:
        raise ValueError(f"{offsets[-1]} postings: an impact index holds at most {MAX_POSTINGS}")
    docs = np.ascontiguousarray(docs)
    impacts = np.ascontiguousarray(impacts)
    if docs.dtype != np.int32:
        if len(docs) and (docs.min() < 0 or docs.max() > INT32_MAX):
            raise ValueError("doc ids must fit int32")
        docs = docs.astype(np.int32)
    if impacts.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"impacts must be uint8 or uint16 (quantize first), got {impacts.dtype}")
    if len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(docs) or len(docs) != len(impacts):
        raise ValueError("offsets must start at 0 and end at len(docs) == len(impacts)")
    if len(offsets) - 1 > INT32_MAX:
        raise ValueError("more terms than the int32 term id limit")
    problem = _first_postings_problem(offsets, docs, impacts, n_docs)
    if problem == 1:
        raise ValueError("offsets must be non-decreasing")
    if problem == 2:
        raise ValueError(f"doc ids must lie in [0, {n_docs})")
    if problem == 3:
        raise ValueError(
            "doc ids must be strictly increasing within each term (one posting per doc)"
        )
    if problem == 4:
        raise ValueError("impacts must be >= 1 (a stored posting always matches)")
    return offsets, docs, impacts


@numba.njit(cache=True, nogil=True)
def _first_postings_problem(offsets, docs, impacts, n_docs):
    for t in range(len(offsets) - 1):
        lo, hi = offsets[t], offsets[t + 1]
        if hi < lo:
            return 1
        prev = -1
        for p in range(lo, hi):
            d = docs[p]
            if d < 0 or d >= n_docs:
                return 2
            if d <= prev:
                return 3
            if impacts[p] == 0:
                return 4
            prev = d
    return 0


def pack_postings(docs: np.ndarray, impacts: np.ndarray, n_docs: int) -> np.ndarray:
    """``doc | impact << DOC_BITS`` in uint32 when both fit (< 2**24 docs, 8-bit impacts),
    else in uint64."""
    small = n_docs <= 1 << 24 and impacts.dtype == np.uint8
    dtype = np.dtype(np.uint32 if small else np.uint64)
    packed = impacts.astype(dtype) << dtype.type(DOC_BITS[dtype])
    packed |= docs.astype(dtype)
    return packed


#: Bytes per (term, block) of the two layouts, beyond the impact: a sparse entry holds a
#: block id (4) and its postings word (8); a dense row holds a uint32 start per block.
SPARSE_ENTRY_BYTES = 12
DENSE_BLOCK_BYTES = 4


def build_block_max(offsets, docs, impacts, n_docs: int, block_size: int) -> dict[str, np.ndarray]:
    """The block-max tables (module docstring): per term, the maximum impact in every
    block it occurs in and where its postings there start, sparse or dense by size."""
    block_size = np.int64(block_size)
    n_blocks = n_blocks_for(n_docs, int(block_size))
    counts = _block_entry_counts(offsets, docs, block_size)
    imp_bytes = impacts.dtype.itemsize
    dense = counts * (SPARSE_ENTRY_BYTES + imp_bytes) >= n_blocks * (DENSE_BLOCK_BYTES + imp_bytes)
    dense_slot = np.full(len(counts), -1, dtype=np.int32)
    dense_slot[dense] = np.arange(int(dense.sum()), dtype=np.int32)
    counts[dense] = 0
    block_offsets = np.zeros(len(offsets), dtype=np.int64)
    np.cumsum(counts, out=block_offsets[1:])
    total = int(block_offsets[-1])
    tables = {
        "block_offsets": block_offsets,
        "block_ids": np.empty(total, dtype=np.int32),
        "block_max": np.empty(total, dtype=impacts.dtype),
        "block_postings": np.empty(total, dtype=np.int64),
        "dense_slot": dense_slot,
        "dense_max": np.zeros((int(dense.sum()), n_blocks), dtype=impacts.dtype),
        "dense_starts": np.zeros((int(dense.sum()), n_blocks + 1), dtype=np.uint32),
    }
    _fill_block_max(offsets, docs, impacts, block_size, **tables)
    return tables


@numba.njit(cache=True, nogil=True)
def _block_entry_counts(offsets, docs, block_size):
    n_terms = len(offsets) - 1
    counts = np.zeros(n_terms, dtype=np.int64)
    for t in range(n_terms):
        last = -1
        for p in range(offsets[t], offsets[t + 1]):
            b = docs[p] // block_size
            if b != last:
                counts[t] += 1
                last = b
    return counts


@numba.njit(cache=True, nogil=True)
def _fill_block_max(
    offsets, docs, impacts, block_size, block_offsets, block_ids, block_max, block_postings,
    dense_slot, dense_max, dense_starts,
):  # fmt: skip
    for t in range(len(offsets) - 1):
        slot = dense_slot[t]
        if slot >= 0:
            row_max = dense_max[slot]
            row_starts = dense_starts[slot]
            for p in range(offsets[t], offsets[t + 1]):
                b = docs[p] // block_size
                row_starts[b + 1] += 1
                if impacts[p] > row_max[b]:
                    row_max[b] = impacts[p]
            for b in range(len(row_max)):  # counts -> starts
                row_starts[b + 1] += row_starts[b]
            continue
        e = block_offsets[t] - 1
        last = -1
        for p in range(offsets[t], offsets[t + 1]):
            b = docs[p] // block_size
            if b != last:
                e += 1
                block_ids[e] = b
                block_max[e] = impacts[p]
                block_postings[e] = p
                last = b
            elif impacts[p] > block_max[e]:
                block_max[e] = impacts[p]
            block_postings[e] += np.int64(1) << POSTING_BITS  # one more posting in the block
