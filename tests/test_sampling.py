"""Speculative sampling keeps the target's distribution (chi-square, fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from specrag.generation.decode import DecodeConfig, generate
from specrag.generation.testing import tiny_model
from specrag.generation.tree import TokenTree
from specrag.generation.verify import accept_sampling

VOCAB = 8


def make_tree():
    """Root with three drafted children (one likely, one unlikely, one deep chain)."""
    tree = TokenTree.with_root(0)
    tree.insert_path([1, 2, 3])
    tree.insert_path([4, 5])
    tree.insert_path([6])
    tree.insert_path([1, 7])
    return tree


def test_accept_sampling_matches_target_distribution():
    gen = torch.Generator().manual_seed(0)
    tree = make_tree()
    logits = torch.randn(len(tree), VOCAB, generator=gen) * 1.5
    logits[0, 1] += 2.0  # the first drafted child is likely, so its subtree is exercised
    temperature = 0.7
    probs = torch.softmax(logits.double() / temperature, -1).numpy()
    n = 4000
    first = np.zeros(VOCAB)
    second_after_1 = np.zeros(VOCAB)
    node_1 = tree.children(0)[1]
    for _ in range(n):
        path, nxt = accept_sampling(tree, logits, temperature, gen)
        emitted = [tree.tokens[i] for i in path[1:]] + [nxt]
        first[emitted[0]] += 1
        if emitted[0] == 1:
            second_after_1[emitted[1]] += 1
    assert chisquare(first, probs[0] * n).pvalue > 1e-3
    m = second_after_1.sum()
    assert m > 250
    assert chisquare(second_after_1, probs[node_1] * m).pvalue > 1e-3
    # the test can fail: a rule that always takes the first drafted child would be caught
    naive = np.zeros(VOCAB)
    naive[1] = n
    assert chisquare(naive + 1e-9, probs[0] * n).pvalue < 1e-6


def test_speculative_sampling_end_to_end_follows_target():
    """First two sampled tokens of whole speculative runs vs the exact joint p(x1) p(x2|x1)."""

    class FixedDrafter:
        name = "fixed"

        def propose(self, context, n_prompt, max_depth):
            return [[3, 5, 1], [1, 1], [6]]

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = tiny_model("gpt2", vocab_size=VOCAB, seed=3, attn="eager")
        prompt = [1, 2, 3, 4, 5, 6, 7, 0]
        temperature = 1.0
        with torch.inference_mode():
            p1 = torch.softmax(
                model(torch.tensor([prompt])).logits[0, -1].double() / temperature, -1
            )
            ctx = torch.tensor([[*prompt, a] for a in range(VOCAB)])
            p2 = torch.softmax(model(ctx).logits[:, -1].double() / temperature, -1)
        joint = (p1[:, None] * p2).numpy().ravel()
        n = 1500
        counts = np.zeros(VOCAB * VOCAB)
        accepted = 0
        for seed in range(n):
            cfg = DecodeConfig(max_new_tokens=3, temperature=temperature, seed=seed)
            out, stats = generate(model, prompt, cfg, drafters=[FixedDrafter()])
            counts[out[0] * VOCAB + out[1]] += 1
            accepted += stats.accepted_draft_tokens
        assert accepted > 50  # drafts were in play
        keep = joint * n >= 5  # chi-square needs populated cells; pool the rest
        obs = np.append(counts[keep], counts[~keep].sum())
        exp = np.append(joint[keep] * n, joint[~keep].sum() * n)
        assert chisquare(obs, exp).pvalue > 1e-3
    finally:
        torch.set_num_threads(before)


def test_sampling_rejects_bad_temperature():
    with pytest.raises(ValueError):
        DecodeConfig(temperature=-1)
    with pytest.raises(ValueError):
        accept_sampling(make_tree(), torch.zeros(6, VOCAB), 0.0, torch.Generator())
