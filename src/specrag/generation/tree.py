"""Token trees: the drafts that one verification pass checks at once.

Node 0 is the *root*: the last token the target has chosen but not yet seen (it is not in
the KV cache). Every other node is a drafted token; ``parents[i] < i`` and
``depths[i] = depths[parents[i]] + 1``. A tree is a trie: two children of one node never
carry the same token, so merging drafts "by longest common prefix" is trie insertion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class TokenTree:
    tokens: list[int]
    parents: list[int] = field(default_factory=lambda: [-1])
    depths: list[int] = field(default_factory=lambda: [0])
    _children: list[dict[int, int]] = field(default_factory=lambda: [{}])

    @classmethod
    def with_root(cls, root_token: int) -> TokenTree:
        return cls(tokens=[int(root_token)])

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def n_drafted(self) -> int:
        return len(self.tokens) - 1

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def children(self, node: int) -> dict[int, int]:
        """token -> child node index."""
        return self._children[node]

    def add_child(self, parent: int, token: int) -> int:
        """The child of ``parent`` carrying ``token``, created when missing."""
        token = int(token)
        existing = self._children[parent].get(token)
        if existing is not None:
            return existing
        self.tokens.append(token)
        self.parents.append(parent)
        self.depths.append(self.depths[parent] + 1)
        self._children.append({})
        idx = len(self.tokens) - 1
        self._children[parent][token] = idx
        return idx

    def insert_path(self, path: Sequence[int], max_nodes: int | None = None, start: int = 0) -> int:
        """Insert a drafted continuation below node ``start``; shares the longest common
        prefix with what is already there. Stops when the tree would exceed ``max_nodes``
        (root included). Returns how many new nodes were added."""
        node, added = start, 0
        for tok in path:
            child = self._children[node].get(int(tok))
            if child is None:
                if max_nodes is not None and len(self.tokens) >= max_nodes:
                    break
                child = self.add_child(node, tok)
                added += 1
            node = child
        return added

    def insert_paths(self, paths: Iterable[Sequence[int]], max_nodes: int | None = None) -> None:
        for path in paths:
            self.insert_path(path, max_nodes)

    def path_to(self, node: int) -> list[int]:
        """Node indices from the root's first child down to ``node`` (root excluded)."""
        out = []
        while node > 0:
            out.append(node)
            node = self.parents[node]
        return out[::-1]

    def paths(self) -> list[list[int]]:
        """Every root-to-leaf token path (root excluded)."""
        leaves = [i for i in range(1, len(self.tokens)) if not self._children[i]]
        return [[self.tokens[j] for j in self.path_to(leaf)] for leaf in leaves]

    def ancestor_mask(self) -> torch.Tensor:
        """(n, n) bool: ``mask[i, j]`` when node j is node i or one of its ancestors."""
        n = len(self.tokens)
        mask = np.eye(n, dtype=bool)
        for i in range(1, n):  # parents come first, so each row extends its parent's row
            mask[i] |= mask[self.parents[i]]
        return torch.from_numpy(mask)


def merge_trees(
    root_token: int, drafts: Iterable[Sequence[Sequence[int]]], max_nodes: int
) -> TokenTree:
    """One tree from several drafters' path lists, in priority order (first list first,
    round-robin across lists) so every drafter gets a share of the node budget."""
    tree = TokenTree.with_root(root_token)
    lists = [list(d) for d in drafts]
    longest = max((len(lst) for lst in lists), default=0)
    for rank in range(longest):
        for lst in lists:
            if rank < len(lst):
                tree.insert_path(lst[rank], max_nodes)
    return tree
