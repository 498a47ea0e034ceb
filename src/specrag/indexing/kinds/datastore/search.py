"""Search the ``datastore`` kind (files loaded memory-mapped): a longest-match search finds
the longest suffix of the generated text that occurs in the corpus and proposes the tokens
that follow its occurrences (the generator's drafters call ``draft``).

As a Searcher, a document's score is the length (tokens) of the longest suffix of the
query that occurs in it, up to ``max_match``; documents without a match are not returned.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from specrag.indexing.kinds.datastore.build import encode_text, load_tokenizer
from specrag.indexing.kinds.datastore.config import DatastoreConfig
from specrag.types import DocMask, Hit


class DatastoreSearcher:
    kind = "datastore"

    def __init__(
        self,
        tokens: np.ndarray,
        sa: np.ndarray,
        doc_starts: np.ndarray,
        doc_ids: np.ndarray,
        config: DatastoreConfig,
    ):
        self.tokens, self.sa, self.doc_starts = tokens, sa, doc_starts
        self.doc_ids, self.config = doc_ids, config
        # Plain ndarray views (of the memory maps) for the numba kernels.
        self._tokens, self._sa = np.asarray(tokens), np.asarray(sa)
        self.separator = int(tokens[-1]) if len(tokens) else 0

    @classmethod
    def load(
        cls, index_dir: Path, config: DatastoreConfig, doc_ids: np.ndarray
    ) -> DatastoreSearcher:
        index_dir = Path(index_dir)
        tokens = np.load(index_dir / "tokens.npy", mmap_mode="r")
        sa = np.load(index_dir / "sa.npy", mmap_mode="r")
        starts = np.load(index_dir / "doc_starts.npy")
        if len(starts) != len(doc_ids):
            raise ValueError(f"datastore has {len(starts)} documents, the version {len(doc_ids)}")
        return cls(tokens, sa, starts, doc_ids, config)

    # --- suffix array search (numba: called once per decoding step) ---------------------
    def find(self, pattern) -> tuple[int, int]:
        """[lo, hi) range of suffix-array rows whose suffix starts with ``pattern``."""
        pat = np.asarray([int(t) for t in pattern], dtype=np.int64)
        lo, hi = _sa_range(self._tokens, self._sa, pat)
        return int(lo), int(hi)

    def longest_match(self, tail) -> tuple[int, int, int]:
        """(L, lo, hi): the longest suffix of ``tail`` (at most ``max_match`` tokens) that
        occurs in the corpus, and its suffix-array range. Matches are monotone in L (a
        suffix of a match matches), so L is found by binary search."""
        tail = np.asarray(tail, dtype=np.int64)[-self.config.max_match :]
        length, lo, hi = _longest_match(self._tokens, self._sa, tail)
        return int(length), int(lo), int(hi)

    def draft(
        self,
        tail,
        max_depth: int,
        max_paths: int = 4,
        min_match: int = 2,
        max_occurrences: int = 64,
        max_nodes: int = 32,
    ) -> list[list[int]]:
        """REST-style drafts: the continuations of the longest match's occurrences, as a
        count-weighted trie; the ``max_nodes`` most frequent prefixes, leaves best first."""
        length, lo, hi = self.longest_match(tail)
        if length < min_match:
            return []
        return self.draft_from_match(
            length, lo, hi, max_depth, max_paths, max_occurrences, max_nodes
        )

    def draft_from_match(
        self,
        length: int,
        lo: int,
        hi: int,
        max_depth: int,
        max_paths: int = 4,
        max_occurrences: int = 64,
        max_nodes: int = 32,
    ) -> list[list[int]]:
        """``draft`` for a match already found (``longest_match``'s result)."""
        if max_depth < 1 or hi <= lo:
            return []
        # Continuations as one (occurrences, depth) array; the token stream ends with a
        # separator, so reads past its end are clipped onto one.
        starts = np.asarray(self.sa[lo : min(hi, lo + max_occurrences)], dtype=np.int64) + length
        idx = np.minimum(starts[:, None] + np.arange(max_depth), len(self._tokens) - 1)
        conts = np.asarray(self._tokens[idx], dtype=np.int64)
        return _frequent_prefix_leaves(conts, self.separator, max_paths, max_nodes)

    def occurrence_docs(self, lo: int, hi: int) -> np.ndarray:
        """Row numbers of the documents holding suffix-array rows [lo, hi)."""
        return np.unique(self._rows(np.asarray(self.sa[lo:hi], dtype=np.int64)))

    def doc_tokens(self, row: int) -> np.ndarray:
        """Document ``row``'s tokens (without its separator)."""
        start = int(self.doc_starts[row])
        end = (
            int(self.doc_starts[row + 1]) - 1
            if row + 1 < len(self.doc_starts)
            else len(self.tokens) - 1
        )
        return np.asarray(self.tokens[start:end], dtype=np.int64)

    # --- Searcher contract -------------------------------------------------------------
    def _query_tokens(self, query: str) -> list[int]:
        return encode_text(load_tokenizer(self.config.tokenizer), query)[-self.config.max_match :]

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.doc_starts, positions, side="right") - 1

    def search(self, queries: list[str], k: int, allowed: DocMask | None = None) -> list[list[Hit]]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if allowed is not None and len(allowed) != len(self.doc_ids):
            raise ValueError(f"mask has {len(allowed)} rows, the index {len(self.doc_ids)}")
        out = []
        for query in queries:
            tail = self._query_tokens(query)
            seen = np.zeros(len(self.doc_ids), dtype=bool)
            hits: list[Hit] = []
            for length in range(len(tail), 0, -1):
                lo, hi = self.find(tail[-length:])
                if hi <= lo:
                    continue
                rows = np.unique(self._rows(np.asarray(self.sa[lo:hi], dtype=np.int64)))
                rows = rows[~seen[rows]]
                seen[rows] = True
                if allowed is not None:
                    rows = rows[allowed[rows]]
                for row in rows.tolist():
                    hits.append(
                        Hit(str(self.doc_ids[row]), float(length), {self.kind: float(length)})
                    )
                if len(hits) >= k:
                    break
            out.append(hits[:k])
        return out

    def reference_scores(self, queries: list[str]) -> np.ndarray:
        """Per document, by brute force: the longest query suffix found in its tokens."""
        n = len(self.doc_ids)
        ends = list(self.doc_starts[1:]) + [len(self.tokens)]
        docs = [np.asarray(self.tokens[s:e]) for s, e in zip(self.doc_starts, ends, strict=True)]
        scores = np.full((len(queries), n), -np.inf)
        for qi, query in enumerate(queries):
            tail = np.asarray(self._query_tokens(query))
            for row, toks in enumerate(docs):
                for length in range(len(tail), 0, -1):
                    pat = tail[-length:]
                    if len(toks) >= length and np.any(
                        np.all(
                            np.lib.stride_tricks.sliding_window_view(toks, length) == pat, axis=1
                        )
                    ):
                        scores[qi, row] = float(length)
                        break
        return scores


def _frequent_prefix_leaves(
    conts: np.ndarray, separator: int, max_paths: int, max_nodes: int
) -> list[list[int]]:
    """REST's draft trie from continuation rows (cut at the first ``separator``): every
    prefix counted by how many rows start with it; the ``max_nodes`` most frequent prefixes
    (ties: shorter, then lexicographically smaller first) are kept and their leaves returned,
    most frequent first, deeper first on ties. Vectorized: rows sorted lexicographically, so
    the rows sharing a prefix of length d are one contiguous run."""
    n, depth = conts.shape
    valid = np.cumprod(conts != separator, axis=1).astype(bool)  # before the first separator
    order = np.lexsort(conts.T[::-1])
    rows, valid = conts[order], valid[order]
    # first column where each row differs from the previous one (depth when equal)
    differs = rows[1:] != rows[:-1]
    first_diff = np.where(differs.any(axis=1), differs.argmax(axis=1), depth)
    cand_count, cand_len, cand_row = [], [], []
    for d in range(1, depth + 1):
        new_group = np.concatenate([[True], first_diff < d])
        group_start = np.flatnonzero(new_group)
        sizes = np.diff(np.append(group_start, n))
        ok = valid[group_start, d - 1]
        cand_count.append(sizes[ok])
        cand_len.append(np.full(int(ok.sum()), d))
        cand_row.append(group_start[ok])
    count, length, row = (np.concatenate(x) for x in (cand_count, cand_len, cand_row))
    if not len(count):
        return []
    chosen = np.lexsort((row, length, -count))[:max_nodes]
    keys = {(int(length[i]), int(row[i])) for i in chosen}

    def is_parent(i) -> bool:
        """Whether a chosen prefix one token longer extends prefix i (its rows form one run
        starting at row[i]; the children's runs start inside it)."""
        d, r = int(length[i]), int(row[i])
        while d < depth:
            if (d + 1, r) in keys:
                return True
            r += 1
            if r >= n or first_diff[r - 1] < d:
                return False
        return False

    leaves = [i for i in chosen if not is_parent(i)]
    leaves.sort(key=lambda i: (-count[i], -length[i]))
    return [rows[row[i], : length[i]].tolist() for i in leaves[:max_paths]]


@numba.njit(cache=True, nogil=True)
def _compare(tokens, start, pattern):
    """-1, 0 or 1: the suffix at ``start`` cut to len(pattern), against ``pattern``."""
    n = len(tokens)
    for j in range(len(pattern)):
        if start + j >= n:
            return -1  # a shorter suffix sorts first
        t = tokens[start + j]
        if t != pattern[j]:
            return -1 if t < pattern[j] else 1
    return 0


@numba.njit(cache=True, nogil=True)
def _sa_range(tokens, sa, pattern):
    lo, hi = 0, len(sa)
    while lo < hi:  # first suffix >= pattern
        mid = (lo + hi) >> 1
        if _compare(tokens, sa[mid], pattern) < 0:
            lo = mid + 1
        else:
            hi = mid
    first, hi = lo, len(sa)
    while lo < hi:  # first suffix whose prefix > pattern
        mid = (lo + hi) >> 1
        if _compare(tokens, sa[mid], pattern) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return first, lo


@numba.njit(cache=True, nogil=True)
def _longest_match(tokens, sa, tail):
    best_len, best_lo, best_hi = 0, 0, 0
    lo_len, hi_len = 1, len(tail)
    while lo_len <= hi_len:
        mid = (lo_len + hi_len) >> 1
        a, b = _sa_range(tokens, sa, tail[len(tail) - mid :])
        if b > a:
            best_len, best_lo, best_hi = mid, a, b
            lo_len = mid + 1
        else:
            hi_len = mid - 1
    return best_len, best_lo, best_hi
