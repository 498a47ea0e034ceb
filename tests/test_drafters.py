"""Drafters: the context drafter's suffix matching against brute force, and RASD / draft
model drafters keeping greedy output identical."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.generation.decode import DecodeConfig, generate
from specrag.generation.drafters import (
    ContextDrafter,
    DraftModelDrafter,
    longest_suffix_matches,
)
from specrag.generation.testing import tiny_model
from specrag.generation.tree import TokenTree, merge_trees

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def brute_longest(context: list[int], max_ngram: int):
    n = len(context)
    for length in range(min(max_ngram, n - 1), 0, -1):
        tail = context[n - length :]
        ends = [e for e in range(length - 1, n - 1) if context[e - length + 1 : e + 1] == tail]
        if ends:
            return length, ends
    return 0, []


def test_longest_suffix_matches_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(300):
        ctx = rng.integers(0, 4, size=int(rng.integers(1, 30))).tolist()
        for max_ngram in (1, 3, 8):
            length, ends = longest_suffix_matches(np.asarray(ctx), max_ngram)
            want_len, want_ends = brute_longest(ctx, max_ngram)
            assert length == want_len
            assert sorted(ends.tolist()) == want_ends


def test_context_drafter_branches():
    ctx = np.asarray([1, 2, 3, 9, 1, 2, 4, 4, 1, 2, 3, 7, 1, 2])
    paths = ContextDrafter(max_ngram=4, max_paths=4).propose(ctx, len(ctx), 3)
    # "1 2" occurs three times before: followed by 3 9 1, 4 4 1, 3 7 1 -> three branches,
    # the latest occurrence first
    assert paths == [[3, 7, 1], [4, 4, 1], [3, 9, 1]]
    assert ContextDrafter().propose(np.asarray([5, 6, 7]), 3, 4) == []


def test_merge_trees_longest_common_prefix():
    tree = merge_trees(0, [[[1, 2, 3], [1, 2, 4]], [[1, 5]]], max_nodes=100)
    assert len(tree) == 1 + 5  # 1,2,3,4,5 -- "1" and "1 2" shared
    assert sorted(tree.paths()) == [[1, 2, 3], [1, 2, 4], [1, 5]]
    capped = merge_trees(0, [[[1, 2, 3, 4, 5, 6]]], max_nodes=4)
    assert len(capped) == 4
    mask = TokenTree.with_root(0)
    mask.insert_paths([[1, 2], [3]])
    m = mask.ancestor_mask()
    assert m[2].tolist() == [True, True, True, False] and m[3].tolist() == [
        True,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_rasd_and_draft_model_greedy_identical(arch):
    target = tiny_model(arch, seed=0)
    draft = tiny_model(arch, seed=0)  # same weights: a perfect draft, acceptance guaranteed
    weak = tiny_model(arch, seed=7)  # a different model: many rejections
    rng = np.random.default_rng(2)
    accepted = 0
    for i in range(5):
        prompt = rng.integers(0, 64, size=20).tolist()
        if i % 2:
            prompt = prompt[:6] * 3
        cfg = DecodeConfig(max_new_tokens=24, max_depth=6)
        ref, _ = generate(target, prompt, cfg)
        for drafter in [
            DraftModelDrafter(draft),
            DraftModelDrafter(weak, retrieval=ContextDrafter(), min_prob=0.0),
            DraftModelDrafter(weak, retrieval=ContextDrafter(), min_prob=0.2),
        ]:
            out, stats = generate(target, prompt, cfg, drafters=[drafter])
            assert out == ref
            accepted += stats.accepted_draft_tokens
        out, stats = generate(target, prompt, cfg, drafters=[DraftModelDrafter(draft)])
        assert stats.tokens_per_forward > 3  # identical draft: whole chains accepted
    assert accepted > 0


def test_longest_match_drafter_gets_the_budget_first():
    from specrag.generation.decode import _by_match_length

    short, long = ContextDrafter(), ContextDrafter()
    short.last_match_len, long.last_match_len = 1, 12

    class NoLength:  # e.g. a draft model: keeps its place, ranked as a 0-token match
        pass

    lists = [[[7, 7]], [[1, 2, 3]], [[5]]]
    assert _by_match_length([short, long, NoLength()], lists) == [[[1, 2, 3]], [[7, 7]], [[5]]]
    ctx = np.asarray([1, 2, 3, 9, 1, 2])
    drafter = ContextDrafter(max_ngram=4)
    drafter.propose(ctx, len(ctx), 3)
    assert drafter.last_match_len == 2
