"""The speculative decoding loop, and plain decoding as its reference.

Both are generators that yield lists of newly committed token ids, so the service can
stream; both share one stopping rule (EOS, stop strings, max_new_tokens), applied to
every accepted draft so a draft never overshoots a stop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from specrag.generation.runner import CACHE_KINDS, close_runner, needed_slots, open_runner
from specrag.generation.tree import TokenTree, merge_trees
from specrag.generation.verify import accept_greedy, accept_sampling, sample_token


@dataclass(frozen=True)
class DecodeConfig:
    max_new_tokens: int = 128
    temperature: float = 0.0
    seed: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    max_depth: int = 16  # adaptive depth never exceeds this
    min_depth: int = 2
    # Tree size cap, root included. 16 was best on CPU (docs/benchmarks.md: a verify pass
    # costs ~1.6 ms + ~0.12 ms per node there); a GPU verifies larger trees almost free.
    max_nodes: int = 16
    adaptive: bool = True
    # The target's KV cache: "dynamic" grows per step (exact-length attention, the CPU
    # default); "static" preallocates slots and pads every verify to ``max_nodes`` nodes,
    # so each step has static shapes (runner.py). ``cuda_graphs`` (static only) replays
    # each step as a captured CUDA graph on cuda; elsewhere the same code runs eagerly.
    cache: str = "dynamic"
    cuda_graphs: bool = False

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 1 <= self.min_depth <= self.max_depth:
            raise ValueError("need 1 <= min_depth <= max_depth")
        if self.max_nodes < 2:
            raise ValueError("max_nodes must be >= 2")
        if self.cache not in CACHE_KINDS:
            raise ValueError(f"cache must be one of {CACHE_KINDS}, got {self.cache!r}")
        if self.cuda_graphs and self.cache != "static":
            raise ValueError('cuda_graphs needs cache="static"')


@dataclass
class DecodeStats:
    new_tokens: int = 0
    target_forwards: int = 0  # prefill included
    verify_steps: int = 0  # forwards after the prefill
    drafted_tokens: int = 0  # tree nodes sent to the target (root excluded)
    accepted_draft_tokens: int = 0
    prefill_seconds: float = 0.0
    seconds: float = 0.0
    accepted_per_step: list[int] = field(default_factory=list)

    @property
    def tokens_per_forward(self) -> float:
        """Generated tokens per target forward after the prefill (1.0 for plain decoding)."""
        decode_tokens = self.new_tokens - 1
        return decode_tokens / self.verify_steps if self.verify_steps else 1.0

    @property
    def mean_accepted_per_step(self) -> float:
        return self.accepted_draft_tokens / self.verify_steps if self.verify_steps else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "generated_tokens": self.new_tokens,
            "target_forwards": self.target_forwards,
            "drafted_tokens": self.drafted_tokens,
            "accepted_draft_tokens": self.accepted_draft_tokens,
            "mean_accepted_tokens_per_forward": round(self.tokens_per_forward, 3),
            "mean_accepted_draft_tokens_per_step": round(self.mean_accepted_per_step, 3),
            "tokens_per_second": round(self.tokens_per_second, 2),
            "generation_ms": round(self.seconds * 1000, 2),
        }


class StopRule:
    """Decides where output ends. ``cut(all_tokens, n_old)`` returns how many of
    ``all_tokens`` to keep and whether generation is finished; the kept count never
    falls below ``n_old`` (tokens already emitted are never retracted)."""

    def __init__(self, config: DecodeConfig, tokenizer=None):
        if config.stop_strings and tokenizer is None:
            raise ValueError("stop_strings need a tokenizer")
        self.config = config
        self.tokenizer = tokenizer
        self.eos = set(config.eos_token_ids)

    def cut(self, tokens: Sequence[int], n_old: int) -> tuple[int, bool]:
        n = min(len(tokens), self.config.max_new_tokens)
        finished = n >= self.config.max_new_tokens
        for i in range(n_old, n):
            if tokens[i] in self.eos:
                return i + 1, True
        if self.config.stop_strings:
            stop_at = self._stop_string_end(tokens[:n], n_old)
            if stop_at is not None:
                return stop_at, True
        return n, finished

    def _stop_string_end(self, tokens: Sequence[int], n_old: int) -> int | None:
        if not any(s in self.tokenizer.decode(tokens) for s in self.config.stop_strings):
            return None
        for m in range(max(n_old, 1), len(tokens) + 1):
            text = self.tokenizer.decode(tokens[:m])
            if any(s in text for s in self.config.stop_strings):
                return m
        return len(tokens)


def trim_stop_text(text: str, stop_strings: Sequence[str]) -> str:
    """The answer text without the first stop string and what follows it."""
    cut = min((text.find(s) for s in stop_strings if s in text), default=-1)
    return text if cut < 0 else text[:cut]


def _generator(config: DecodeConfig) -> torch.Generator | None:
    if config.temperature <= 0:
        return None
    g = torch.Generator()
    g.manual_seed(config.seed if config.seed is not None else torch.seed())
    return g


def _open(model, prompt_ids: Sequence[int], config: DecodeConfig):
    """The target's runner for this sequence (runner.py), prefilled: (runner, logits)."""
    if len(prompt_ids) == 0:
        raise ValueError("empty prompt")
    slots = needed_slots(len(prompt_ids), config.max_new_tokens, config.max_nodes)
    runner = open_runner(model, config.cache, config.cuda_graphs, slots)
    try:
        return runner, runner.prefill(prompt_ids)
    except BaseException:
        close_runner(runner)
        raise


def plain_stream(
    model,
    prompt_ids: Sequence[int],
    config: DecodeConfig,
    tokenizer=None,
    stats: DecodeStats | None = None,
) -> Iterator[list[int]]:
    """Ordinary decoding, one target forward per token (the reference)."""
    stats = stats if stats is not None else DecodeStats()
    stop = StopRule(config, tokenizer)
    gen = _generator(config)
    started = time.perf_counter()
    runner, logits = _open(model, prompt_ids, config)
    try:
        stats.target_forwards += 1
        stats.prefill_seconds = time.perf_counter() - started
        out: list[int] = []
        while True:
            out.append(sample_token(logits, config.temperature, gen))
            keep, done = stop.cut(out, len(out) - 1)
            del out[keep:]
            stats.new_tokens = len(out)
            stats.seconds = time.perf_counter() - started
            yield out[-1:]
            if done:
                return
            logits = runner.step(out[-1])
            stats.target_forwards += 1
            stats.verify_steps += 1
    finally:
        close_runner(runner)


class DepthPolicy:
    """Tree depth that follows recent acceptance: deep when drafts are accepted, shallow
    (cheap) when they are not. An exponential moving average of accepted draft tokens."""

    def __init__(self, config: DecodeConfig):
        self.config = config
        self.ema = float(config.max_depth) / 2 if config.adaptive else float(config.max_depth)

    def depth(self) -> int:
        if not self.config.adaptive:
            return self.config.max_depth
        d = math.ceil(1.5 * self.ema) + 2
        return max(self.config.min_depth, min(self.config.max_depth, d))

    def max_nodes(self, depth: int) -> int:
        """Node budget (root included): one chain when drafts keep failing, up to
        ``max_nodes`` as acceptance grows, so rejected drafts cost little."""
        if not self.config.adaptive:
            return self.config.max_nodes
        budget = 1 + round(depth * (1 + self.ema))
        return max(2, min(self.config.max_nodes, budget))

    def update(self, accepted: int) -> None:
        self.ema = 0.6 * self.ema + 0.4 * accepted


def speculative_stream(
    model,
    prompt_ids: Sequence[int],
    drafters: Sequence,
    config: DecodeConfig,
    tokenizer=None,
    stats: DecodeStats | None = None,
) -> Iterator[list[int]]:
    """Retrieval-augmented speculative decoding. Each step, every drafter proposes
    continuation paths of the committed text; they are merged into one token tree (shared
    prefixes once), verified in one target forward, and the longest agreed path plus the
    target's own next token are committed. Greedy output equals ``plain_stream``'s."""
    stats = stats if stats is not None else DecodeStats()
    stop = StopRule(config, tokenizer)
    gen = _generator(config)
    started = time.perf_counter()
    runner, logits = _open(model, prompt_ids, config)
    try:
        yield from _speculate(
            runner, logits, prompt_ids, drafters, config, stop, gen, stats, started
        )
    finally:
        close_runner(runner)


def _speculate(runner, logits, prompt_ids, drafters, config, stop, gen, stats, started):
    policy = DepthPolicy(config)
    stats.target_forwards += 1
    stats.prefill_seconds = time.perf_counter() - started
    n_prompt = len(prompt_ids)
    # prompt + committed tokens, written in place: drafters read a view, no copy per step
    context = np.empty(n_prompt + config.max_new_tokens, dtype=np.int64)
    context[:n_prompt] = prompt_ids
    out: list[int] = [sample_token(logits, config.temperature, gen)]
    keep, done = stop.cut(out, 0)
    del out[keep:]
    stats.new_tokens = len(out)
    stats.seconds = time.perf_counter() - started
    yield list(out)
    context[n_prompt : n_prompt + len(out)] = out
    while not done:
        remaining = config.max_new_tokens - len(out)
        depth = min(policy.depth(), remaining - 1)
        full = context[: n_prompt + len(out)]
        if depth > 0 and drafters:
            proposals = [d.propose(full, n_prompt, depth) for d in drafters]
            proposals = [[p[:depth] for p in paths if len(p)] for paths in proposals]
            if len(drafters) > 1:
                proposals = _by_match_length(drafters, proposals)
            tree = merge_trees(out[-1], proposals, policy.max_nodes(depth))
        else:
            tree = TokenTree.with_root(out[-1])
        # a static runner pads every tree of 2+ nodes to max_nodes (one verify shape)
        logits = runner.forward(tree, config.max_nodes)
        stats.target_forwards += 1
        stats.verify_steps += 1
        stats.drafted_tokens += tree.n_drafted
        if config.temperature > 0:
            path, next_token = accept_sampling(tree, logits, config.temperature, gen)
        else:
            path, next_token = accept_greedy(tree, logits)
        runner.keep(path, len(tree))
        accepted = [tree.tokens[i] for i in path[1:]]
        policy.update(len(accepted))
        stats.accepted_per_step.append(len(accepted))
        n_old = len(out)
        out.extend(accepted)
        out.append(next_token)
        keep, done = stop.cut(out, n_old)
        del out[keep:]
        context[n_prompt + n_old : n_prompt + keep] = out[n_old:]
        stats.accepted_draft_tokens += min(len(accepted), keep - n_old)
        stats.new_tokens = len(out)
        stats.seconds = time.perf_counter() - started
        if keep > n_old:
            yield out[n_old:]


#: Match lengths rank drafters only up to the context drafter's longest n-gram (8 by
#: default; the datastore matches up to 16): past it both are near-certain, and ties keep
#: the caller's order (context first).
MATCH_RANK_CAP = 8


def _by_match_length(drafters: Sequence, proposals: list[list[list[int]]]) -> list[list[list[int]]]:
    """Proposals reordered so the drafter whose last match was longest comes first (stable;
    drafters without ``last_match_len`` keep their place at 0). ``merge_trees`` gives the
    first list's best path the node budget first: a 1-token suffix match in the prompt must
    not crowd out a 12-token match in a corpus document."""
    lengths = [min(getattr(d, "last_match_len", 0), MATCH_RANK_CAP) for d in drafters]
    order = sorted(range(len(drafters)), key=lambda i: -lengths[i])
    return [proposals[i] for i in order]


def generate(
    model,
    prompt_ids: Sequence[int],
    config: DecodeConfig,
    drafters: Sequence | None = None,
    tokenizer=None,
) -> tuple[list[int], DecodeStats]:
    """All tokens at once: speculative when ``drafters`` is given (even empty), else plain."""
    stats = DecodeStats()
    if drafters is None:
        stream = plain_stream(model, prompt_ids, config, tokenizer, stats)
    else:
        stream = speculative_stream(model, prompt_ids, drafters, config, tokenizer, stats)
    tokens = [t for chunk in stream for t in chunk]
    return tokens, stats
