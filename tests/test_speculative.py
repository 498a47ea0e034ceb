"""Greedy speculative decoding must be token-identical to plain greedy decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from specrag.generation.decode import DecodeConfig, generate
from specrag.generation.drafters import CombinedDrafter, ContextDrafter
from specrag.generation.testing import tiny_model
from specrag.generation.tree import TokenTree
from specrag.generation.verify import accept_greedy, keep_in_cache, tree_forward

ARCHS = ["llama", "gpt2"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return tiny_model(request.param, attn="eager" if request.param == "gpt2" else "sdpa")


class OracleDrafter:
    """Proposes the reference output's true continuation (deep acceptance guaranteed),
    optionally corrupted after ``corrupt_after`` tokens, and always too long."""

    name = "oracle"

    def __init__(self, prompt: list[int], reference: list[int], corrupt_after: int | None = None):
        self.full = list(prompt) + list(reference)
        self.corrupt_after = corrupt_after

    def propose(self, context, n_prompt, max_depth):
        n = len(context)
        if list(context) != self.full[:n]:
            return []
        path = self.full[n : n + max_depth + 5]
        if self.corrupt_after is not None and len(path) > self.corrupt_after:
            path = path[: self.corrupt_after] + [(t + 1) % 64 for t in path[self.corrupt_after :]]
        return [path] if path else []


class RandomDrafter:
    """Random branches: forces rejections, branching and non-contiguous accepted paths."""

    name = "random"

    def __init__(self, seed: int, vocab: int = 64, n_paths: int = 3):
        self.rng = np.random.default_rng(seed)
        self.vocab, self.n_paths = vocab, n_paths

    def propose(self, context, n_prompt, max_depth):
        return [
            self.rng.integers(0, self.vocab, size=max_depth).tolist() for _ in range(self.n_paths)
        ]


class NoDrafter:
    name = "none"

    def propose(self, context, n_prompt, max_depth):
        return []


def prompts(seed: int, n: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = rng.integers(0, 64, size=int(rng.integers(3, 40))).tolist()
        if i % 2:  # a prompt that repeats itself
            base = base[:10] * 4
        out.append(base)
    return out


def test_greedy_identical_with_context_drafter(model):
    accepted = 0
    for i, prompt in enumerate(prompts(1, 12)):
        for cfg in [
            DecodeConfig(max_new_tokens=40),
            DecodeConfig(max_new_tokens=33, max_depth=5, max_nodes=8, adaptive=False),
            DecodeConfig(max_new_tokens=20, max_depth=32, max_nodes=128),
        ]:
            ref, _ = generate(model, prompt, cfg)
            drafters = [ContextDrafter(max_ngram=4 + i % 3, max_paths=1 + i % 4)]
            if i % 3 == 0:
                drafters = [CombinedDrafter([RandomDrafter(i, n_paths=2), drafters[0]])]
            out, stats = generate(model, prompt, cfg, drafters=drafters)
            assert out == ref, (i, cfg)
            assert len(out) == cfg.max_new_tokens
            assert stats.target_forwards == stats.verify_steps + 1
            accepted += stats.accepted_draft_tokens
    assert accepted > 50  # random models repeat themselves: drafts must have been accepted


def test_oracle_drafts_past_max_new_tokens_and_branching(model):
    prompt = prompts(2, 1)[0]
    for max_new in [1, 2, 3, 17]:
        cfg = DecodeConfig(max_new_tokens=max_new, max_depth=8, adaptive=False)
        ref, _ = generate(model, prompt, cfg)
        oracle = OracleDrafter(prompt, generate(model, prompt, DecodeConfig(max_new_tokens=60))[0])
        out, stats = generate(model, prompt, cfg, drafters=[RandomDrafter(0), oracle])
        assert out == ref
        assert stats.new_tokens == max_new
        if max_new > 2:
            assert stats.accepted_draft_tokens > 0
        # corrupted tail: partial acceptance
        bad = OracleDrafter(prompt, oracle.full[len(prompt) :], corrupt_after=2)
        out2, _ = generate(model, prompt, cfg, drafters=[bad, RandomDrafter(1)])
        assert out2 == ref


def test_eos_inside_accepted_draft(model):
    prompt = prompts(3, 1)[0]
    ref_long, _ = generate(model, prompt, DecodeConfig(max_new_tokens=30))
    eos = ref_long[7]
    first = ref_long.index(eos)
    cfg = DecodeConfig(max_new_tokens=30, eos_token_ids=(eos,), max_depth=16, adaptive=False)
    ref, _ = generate(model, prompt, cfg)
    assert ref == ref_long[: first + 1]
    oracle = OracleDrafter(prompt, ref_long)
    out, stats = generate(model, prompt, cfg, drafters=[oracle])
    assert out == ref
    if first > 1:
        assert stats.accepted_draft_tokens > 0


def test_no_match_at_all(model):
    for prompt in prompts(4, 4):
        cfg = DecodeConfig(max_new_tokens=12)
        ref, _ = generate(model, prompt, cfg)
        out, stats = generate(model, prompt, cfg, drafters=[NoDrafter()])
        assert out == ref
        assert stats.accepted_draft_tokens == 0 and stats.target_forwards == 12


def test_cache_after_tree_pass_holds_only_accepted_path(model):
    """A non-contiguous accepted path must be gathered out of the cache: afterwards the
    cache equals the one a plain forward over the accepted tokens builds."""
    prompt = [5, 9, 3, 7, 1, 2]
    ref, _ = generate(model, prompt, DecodeConfig(max_new_tokens=6))
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
    tree = TokenTree.with_root(ref[0])
    tree.insert_path([(ref[1] + 1) % 64, 4, 4])  # wrong branch first
    tree.insert_path(ref[1:4] + [(ref[4] + 1) % 64])  # right branch, wrong at depth 4
    logits = tree_forward(model, cache, tree)
    path, nxt = accept_greedy(tree, logits)
    assert [tree.tokens[i] for i in path] == ref[:4] and nxt == ref[4]
    assert path != list(range(len(path)))
    keep_in_cache(cache, len(prompt), path, len(tree))
    _assert_cache_holds(model, cache, prompt + ref[:4])


def test_plain_matches_transformers_generate(model):
    """Our reference loop equals transformers' own greedy generate."""
    prompt = prompts(5, 1)[0]
    ref, _ = generate(model, prompt, DecodeConfig(max_new_tokens=15))
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        hf = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=15, do_sample=False
        )
    hf = hf[0, len(prompt) :].tolist()
    assert ref[: len(hf)] == hf
    assert len(hf) == 15 or hf[-1] == model.generation_config.eos_token_id


def test_cache_compaction_when_the_path_leaves_the_first_branch_midway(model):
    """Accepted path = first branch's first two nodes, then a node of a later branch: only
    the moved tail is rewritten, the shared prefix stays; the cache must equal a plain
    forward over the accepted tokens, and decoding from it must continue like greedy."""
    prompt = [7, 3, 3, 8, 1, 9, 4]
    ref, _ = generate(model, prompt, DecodeConfig(max_new_tokens=8))
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True)
    tree = TokenTree.with_root(ref[0])
    tree.insert_path(ref[1:3] + [(ref[3] + 1) % 64, 5, 6])  # diverges at depth 3
    tree.insert_path(ref[1:5])  # shares two nodes, then the right tokens
    logits = tree_forward(model, cache, tree)
    path, nxt = accept_greedy(tree, logits)
    assert [tree.tokens[i] for i in path] == ref[:5] and nxt == ref[5]
    assert path[:3] == [0, 1, 2] and path[3] > 3
    keep_in_cache(cache, len(prompt), path, len(tree))
    _assert_cache_holds(model, cache, prompt + ref[:5])
    with torch.inference_mode():
        nxt_logits = model(input_ids=torch.tensor([[ref[5]]]), cache=cache, use_cache=True).logits
    assert int(nxt_logits[0, -1].argmax()) == ref[6]


def _assert_cache_holds(model, cache, tokens: list[int]) -> None:
    """``cache`` equals the cache a plain forward over ``tokens`` builds."""
    want = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([tokens]), cache=want, use_cache=True)
    assert cache.get_seq_length() == want.get_seq_length()
    for got_layer, want_layer in zip(cache.layers, want.layers, strict=True):
        torch.testing.assert_close(got_layer.keys, want_layer.keys, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got_layer.values, want_layer.values, atol=1e-5, rtol=1e-4)
