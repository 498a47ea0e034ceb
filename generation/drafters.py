"""Drafters: each proposes continuation paths (token lists) of the committed text.

``propose(context, n_prompt, max_depth) -> list[list[int]]``: ``context`` is the prompt
followed by every committed token (its last token is the tree root), ``n_prompt`` the
prompt length. Paths are best first; the decoder merges them into one token tree.
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
    matches: context[i - L + 1 : i + 1] equals the tail, i < len(context) - 1). The
    candidates start as every earlier occurrence of the last token and are extended
    backwards one token at a time, so the cost is linear in the context."""
    n = len(context)
    if n < 2:
        return 0, np.empty(0, dtype=np.int64)
    ends = np.flatnonzero(context[:-1] == context[-1])
    if len(ends) == 0 or min_ngram > 1 and n < min_ngram:
        return 0, np.empty(0, dtype=np.int64)
    length = 1
    while length < max_ngram and length < n:
        back = ends - length
        ok = back >= 0
        ok[ok] = context[back[ok]] == context[n - 1 - length]
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

    def propose(self, context: np.ndarray, n_prompt: int, max_depth: int) -> list[list[int]]:
        length, ends = longest_suffix_matches(context, self.max_ngram, self.min_ngram)
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
    suffix of the committed text found in the corpus, and what followed it there."""

    name = "datastore"

    def __init__(self, searcher, max_paths: int = 2, min_match: int = 2, max_nodes: int = 32):
        self.searcher, self.max_paths = searcher, max_paths
        self.min_match, self.max_nodes = min_match, max_nodes

    def propose(self, context: np.ndarray, n_prompt: int, max_depth: int) -> list[list[int]]:
        return self.searcher.draft(
            context, max_depth, self.max_paths, self.min_match, max_nodes=self.max_nodes
        )


class DraftModelDrafter:
    """A small causal LM (same tokenizer) as drafter, optionally fused RASD style with a
    retrieval drafter: the retrieval paths become a tree that the draft model scores in one
    forward; branches whose draft probability falls below ``min_prob`` are pruned, and the
    draft model's own greedy chain is merged in by longest common prefix (trie insertion
    in the decoder). The draft model keeps its own KV cache of the committed text."""

    def __init__(self, model, retrieval: Drafter | None = None, min_prob: float = 0.05,
                 chain_depth: int | None = None):
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
            leaves = [i for i in range(1, len(tree)) if kept[i]
                      and not any(kept[c] for c in tree.children(i).values())]
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
