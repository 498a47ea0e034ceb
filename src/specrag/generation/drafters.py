"""Drafters: each proposes continuation paths (token lists) of the committed text.

``propose(context, n_prompt, max_depth) -> list[list[int]]``: ``context`` is the prompt
followed by every committed token (its last token is the tree root), ``n_prompt`` the
prompt length. Paths are best first; the decoder merges them into one token tree.

Retrieval drafters also set ``last_match_len``: how many tail tokens their last proposal's
match covered. The decoder gives the drafter with the longest match the first share of the
node budget (a long match predicts far better than a 1-2 token one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Drafter(Protocol):
    name: str

    def propose(self, context: np.ndarray, n_prompt: int, max_depth: int) -> list[list[int]]: ...


def longest_suffix_matches(
    context: np.ndarray, max_ngram: int, min_ngram: int = 1
) -> tuple[int, np.ndarray]:
    """Where the context's tail (its last ``max_ngram`` tokens at most) occurs earlier in
    the context, longest match first. Returns (match length, end positions i of the
    matches: context[i - L + 1 : i + 1] equals the tail, i < len(context) - 1)."""
    if len(context) < 2:
        return 0, np.empty(0, dtype=np.int64)
    return longest_suffix_in(context[:-1], context, max_ngram, min_ngram)


def longest_suffix_in(
    haystack: np.ndarray, tail: np.ndarray, max_ngram: int, min_ngram: int = 1
) -> tuple[int, np.ndarray]:
    """The longest suffix of ``tail`` (``max_ngram`` tokens at most) that occurs in
    ``haystack``: (its length L, the end positions i with haystack[i - L + 1 : i + 1] equal
    to it). The candidates start as every occurrence of the last token and are extended
    backwards one token at a time, so the cost is linear in the haystack."""
    n = len(tail)
    if n == 0 or len(haystack) == 0:
        return 0, np.empty(0, dtype=np.int64)
    ends = np.flatnonzero(haystack == tail[-1])
    if len(ends) == 0:
        return 0, np.empty(0, dtype=np.int64)
    length = 1
    while length < max_ngram and length < n:
        back = ends - length
        ok = back >= 0
        ok[ok] = haystack[back[ok]] == tail[n - 1 - length]
        if not ok.any():
            break
        ends = ends[ok]
        length += 1
    if length < min_ngram:
        return 0, np.empty(0, dtype=np.int64)
    return length, ends


def rank_continuations(continuations: list[tuple[int, ...]], max_paths: int) -> list[list[int]]:
    """Distinct continuations, most frequent first (REST style), then by first seen."""
    counts = Counter(continuations)
    order = {c: i for i, c in reversed(list(enumerate(continuations)))}
    ranked = sorted(counts, key=lambda c: (-counts[c], order[c]))
    return [list(c) for c in ranked[:max_paths] if c]


class ContextDrafter:
    """Drafts from the prompt (retrieved passages + question) and the answer so far: the
    longest suffix of the committed text that also occurs earlier, and the tokens that
    followed it there. One branch per distinct continuation, most frequent first."""

    name = "context"

    def __init__(self, max_ngram: int = 8, min_ngram: int = 1, max_paths: int = 2):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram, self.min_ngram, self.max_paths = max_ngram, min_ngram, max_paths
        self.last_match_len = 0

    def propose(self, context: np.ndarray, n_prompt: int, max_depth: int) -> list[list[int]]:
        length, ends = longest_suffix_matches(context, self.max_ngram, self.min_ngram)
        self.last_match_len = length
        if length == 0:
            return []
        # latest occurrences first: recent text predicts the next tokens best
        conts = [tuple(context[e + 1 : e + 1 + max_depth].tolist()) for e in ends[::-1]]
        return rank_continuations(conts, self.max_paths)


class CombinedDrafter:
    """Several drafters as one: their paths interleaved, first drafter first."""

    name = "combined"

    def __init__(self, drafters: Sequence[Drafter]):
        self.drafters = list(drafters)

    def propose(self, context: np.ndarray, n_prompt: int, max_depth: int) -> list[list[int]]:
        lists = [d.propose(context, n_prompt, max_depth) for d in self.drafters]
        out: list[list[int]] = []
        for rank in range(max((len(x) for x in lists), default=0)):
            out.extend(lst[rank] for lst in lists if rank < len(lst))
        return out


class DatastoreDrafter:
    """REST-style drafts from the corpus datastore (a ``DatastoreSearcher``): the longest
    suffix of the committed text found in the corpus, and what followed it there.

    Plus document locality: a reader that quotes or recombines a corpus document keeps
    returning to that document, but after each deviation the corpus-wide longest match is
    short (2-3 tokens) and lands in unrelated documents. So documents that a long,
    near-unique match has pinned down (in the prompt, scanned once, or in the answer) are
    kept as *local* text, and the tail is also matched inside them (like the context
    drafter does in the prompt); the longer of the local and the corpus match drafts first."""

    name = "datastore"

    def __init__(
        self,
        searcher,
        max_paths: int = 2,
        min_match: int = 2,
        max_nodes: int = 32,
        local_docs: int = 4,
        anchor_len: int = 8,
        anchor_stride: int = 4,
        anchor_max_occurrences: int = 4,
    ):
        if local_docs < 0 or anchor_len < 1 or anchor_stride < 1:
            raise ValueError("need local_docs >= 0, anchor_len >= 1 and anchor_stride >= 1")
        self.searcher, self.max_paths = searcher, max_paths
        self.min_match, self.max_nodes = min_match, max_nodes
        self.local_docs, self.anchor_len = local_docs, anchor_len
        self.anchor_stride, self.anchor_max_occurrences = anchor_stride, anchor_max_occurrences
        self._prompt: np.ndarray | None = None
        self._local_rows: list[int] = []  # most recently anchored last
        self._local_text = np.empty(0, dtype=np.int64)
        self.last_match_len = 0

    def propose(self, context: np.ndarray, n_prompt: int, max_depth: int) -> list[list[int]]:
        if self.local_docs:
            self._scan_prompt(context, n_prompt)
        length, lo, hi = self.searcher.longest_match(context)
        self._anchor(length, lo, hi)
        corpus = []
        if length >= self.min_match:
            corpus = self.searcher.draft_from_match(
                length, lo, hi, max_depth, self.max_paths, max_nodes=self.max_nodes
            )
        local_len, local = self._local_drafts(context, max_depth)
        self.last_match_len = max(local_len, length if corpus else 0)
        return local + corpus if local_len >= length else corpus + local

    def _scan_prompt(self, context: np.ndarray, n_prompt: int) -> None:
        """Once per prompt: anchor the documents that long prompt spans come from."""
        if (
            self._prompt is not None
            and len(self._prompt) == n_prompt
            and np.array_equal(self._prompt, context[:n_prompt])
        ):
            return
        self._prompt = np.array(context[:n_prompt])
        self._local_rows, self._local_text = [], np.empty(0, dtype=np.int64)
        for end in range(self.anchor_len, n_prompt + 1, self.anchor_stride):
            self._anchor(*self.searcher.longest_match(self._prompt[:end]))

    def _anchor(self, length: int, lo: int, hi: int) -> None:
        if (
            not self.local_docs
            or length < self.anchor_len
            or not 0 < hi - lo <= self.anchor_max_occurrences
        ):
            return
        rows = [int(r) for r in self.searcher.occurrence_docs(lo, hi)]
        if rows == self._local_rows[-len(rows) :]:
            return
        kept = [r for r in self._local_rows if r not in rows] + rows
        self._local_rows = kept[-self.local_docs :]
        sep = np.asarray([self.searcher.separator], dtype=np.int64)
        self._local_text = np.concatenate(
            [part for r in self._local_rows for part in (self.searcher.doc_tokens(r), sep)]
        )

    def _local_drafts(self, context: np.ndarray, max_depth: int) -> tuple[int, list[list[int]]]:
        if not len(self._local_text) or max_depth < 1:
            return 0, []
        tail = context[-self.searcher.config.max_match :]
        length, ends = longest_suffix_in(self._local_text, tail, len(tail))
        if length == 0:
            return 0, []
        sep = self.searcher.separator
        conts = []
        for e in ends[::-1]:  # the most recently anchored document first
            cont = self._local_text[e + 1 : e + 1 + max_depth].tolist()
            if sep in cont:
                cont = cont[: cont.index(sep)]
            conts.append(tuple(cont))
        return length, rank_continuations(conts, self.max_paths)


class DraftModelDrafter:
    """A small causal LM (same tokenizer) as drafter, optionally fused RASD style with a
    retrieval drafter: the retrieval paths become a tree that the draft model scores in one
    forward; branches whose draft probability falls below ``min_prob`` are pruned, and the
    draft model's own greedy chain is merged in by longest common prefix (trie insertion
    in the decoder). The draft model keeps its own KV cache of the committed text."""

    def __init__(
        self,
        model,
        retrieval: Drafter | None = None,
        min_prob: float = 0.05,
        chain_depth: int | None = None,
    ):
        if not 0 <= min_prob <= 1:
            raise ValueError("min_prob must be in [0, 1]")
        self.model, self.retrieval, self.min_prob = model, retrieval, min_prob
        self.chain_depth = chain_depth
        self.name = "rasd" if retrieval is not None else "draft-model"
        self.cache = None
        self.cached: list[int] = []

    def _sync(self, context: list[int]) -> None:
        """Make the cache hold exactly ``context[:-1]`` (feeding what is new)."""
        import torch
        from transformers import DynamicCache

        target = context[:-1]
        common = next(
            (i for i, (a, b) in enumerate(zip(self.cached, target, strict=False)) if a != b),
            min(len(self.cached), len(target)),
        )
        if self.cache is None:
            self.cache, common = DynamicCache(), 0
        drop = len(self.cached) - common
        if drop:
            self.cache.crop(-drop)
        if len(target) > common:
            ids = torch.tensor([target[common:]], dtype=torch.long, device=self.model.device)
            with torch.inference_mode():
                self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1)
        self.cached = list(target)

    def propose(self, context: np.ndarray, n_prompt: int, max_depth: int) -> list[list[int]]:
        import torch

        from specrag.generation.tree import TokenTree
        from specrag.generation.verify import keep_in_cache, tree_forward

        ctx = [int(t) for t in context]
        self._sync(ctx)
        paths: list[list[int]] = []
        tree = TokenTree.with_root(ctx[-1])
        if self.retrieval is not None:
            tree.insert_paths(self.retrieval.propose(context, n_prompt, max_depth))
        past = len(self.cached)
        logits = tree_forward(self.model, self.cache, tree)
        keep_in_cache(self.cache, past, [0], len(tree))
        self.cached = list(ctx)
        if len(tree) > 1:
            probs = torch.softmax(logits, dim=-1)
            kept = [True] + [False] * (len(tree) - 1)
            for i in range(1, len(tree)):
                parent = tree.parents[i]
                kept[i] = kept[parent] and float(probs[parent, tree.tokens[i]]) >= self.min_prob
            leaves = [
                i
                for i in range(1, len(tree))
                if kept[i] and not any(kept[c] for c in tree.children(i).values())
            ]
            paths.extend([tree.tokens[j] for j in tree.path_to(leaf)] for leaf in leaves)
        depth = min(max_depth, self.chain_depth or max_depth)
        chain = [int(torch.argmax(logits[0]))]
        with torch.inference_mode():
            for _ in range(depth - 1):
                ids = torch.tensor([[chain[-1]]], dtype=torch.long, device=self.model.device)
                out = self.model(input_ids=ids, cache=self.cache, use_cache=True)
                chain.append(int(torch.argmax(out.logits[0, -1])))
        if depth > 1:
            self.cache.crop(-(depth - 1))
        return [chain, *paths]
