"""How the target model runs inside the decoding loops: a dynamic (growing) KV cache, or
a static one of fixed length whose steps have static shapes, optionally replayed as CUDA
graphs.

A runner holds one sequence's KV cache and offers three calls: ``prefill(prompt_ids)``,
``forward(tree)`` (a token tree after the committed text: its nodes' K/V are appended and
their logits returned; a one-node tree is the plain one-token step) and ``keep(path,
n_nodes)`` (after a forward: keep the prefix plus the accepted nodes, in path order).

The static runner (``StaticRunner``) preallocates K/V buffers of ``max_len`` slots per
layer (``SlotCache``) and pads every tree to a fixed node budget (a *bucket*: 1 node for
the one-token step, ``max_nodes`` for a verify), masking the padding: each step's inputs
are static buffers (ids, depths, ancestor matrix, cache length) and the attention mask,
positions and cache write slots are computed from them on the device. So a step is a fixed
sequence of kernels with fixed shapes and addresses, which on cuda is captured once per
bucket as a CUDA graph and replayed (one launch instead of hundreds; GPU-NOTES.md: a 1.1B
step took 13-14 ms against ~0.5 ms of weight reads). On the CPU the same functions run
eagerly, so the CPU tests exercise exactly the code that cuda captures.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import numpy as np
import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, StaticLayer, get_layer_types_and_kwargs

from specrag.generation.tree import TokenTree
from specrag.generation.verify import keep_in_cache, tree_forward

CACHE_KINDS = ("dynamic", "static")

#: Static caches are sized in multiples of this many slots, so requests of similar length
#: reuse one cache (and its captured graphs).
SLOT_ROUNDING = 256


def check_attention(model) -> None:
    attn = getattr(model.config, "_attn_implementation", "eager")
    if attn not in ("eager", "sdpa"):
        raise ValueError(
            f"tree verification needs eager or sdpa attention (a custom 4D mask), not {attn!r}"
        )


class DynamicRunner:
    """The growing ``DynamicCache``: exact-length attention, shapes change every step."""

    kind = "dynamic"

    def __init__(self, model):
        self.model = model
        self.cache = None
        self.length = 0

    @torch.inference_mode()
    def prefill(self, prompt_ids: Sequence[int]) -> torch.Tensor:
        self.cache = DynamicCache()
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.model.device)
        # Only the last position's logits: the LM head over every prompt position would
        # cost more than the layers for a small model with a large vocabulary.
        out = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1)
        self.length = len(prompt_ids)
        return out.logits[0, -1].float()

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        """One token, committed at once (plain decoding): its next-token logits."""
        ids = torch.tensor([[token]], dtype=torch.long, device=self.model.device)
        logits = self.model(input_ids=ids, cache=self.cache, use_cache=True).logits[0, -1]
        self.length += 1
        return logits.float()

    def forward(self, tree: TokenTree, budget: int | None = None) -> torch.Tensor:
        return tree_forward(self.model, self.cache, tree)

    def keep(self, path: list[int], n_nodes: int) -> None:
        keep_in_cache(self.cache, self.length, path, n_nodes)
        self.length += len(path)

    def release(self) -> None:
        self.cache = None


class _SlotLayer(StaticLayer):
    """A ``StaticLayer`` that writes its new K/V at the slots its cache names
    (``SlotCache.write_index``, a device tensor) instead of after a running counter: the
    slots come from the step's static inputs, and the cache length is host bookkeeping
    (no device read per step)."""

    def __init__(self, max_cache_len: int, owner: SlotCache):
        super().__init__(max_cache_len=max_cache_len)
        self._owner = weakref.ref(owner)

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        index = self._owner().write_index
        self.keys.index_copy_(2, index, key_states)
        self.values.index_copy_(2, index, value_states)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._owner().length

    def crop(self, tokens_to_remove: int) -> None:
        raise TypeError("a SlotCache is shortened by its runner (StaticRunner.keep)")


class SlotCache(Cache):
    """Preallocated K/V buffers, ``max_len`` slots per layer; the model attends to every
    slot, so callers always pass a 4D mask that hides the slots past ``length``."""

    def __init__(self, config, max_len: int):
        layer_types, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
        if any(t != "full_attention" for t in layer_types):
            raise ValueError(
                f"the static cache supports full-attention layers only, not {sorted(set(layer_types))}"
            )
        self.max_len = max_len
        self.length = 0
        self.write_index: torch.Tensor | None = None
        super().__init__(layers=[_SlotLayer(max_len, self) for _ in layer_types])


class _Bucket:
    """Static buffers of one node budget ``n``: the packed step inputs (cache length,
    ids, depths, ancestor matrix) on host and device, the compaction inputs, and, once
    captured, the CUDA graphs of the forward and of the compaction."""

    def __init__(self, n: int, device: torch.device, pin: bool):
        self.n = n
        size = 1 + 2 * n + n * n
        self.host = torch.zeros(size, dtype=torch.long, pin_memory=pin)
        self.dev = torch.zeros(size, dtype=torch.long, device=device)
        self.past = self.dev[0:1]
        self.tokens = self.dev[1 : 1 + n]
        self.depths = self.dev[1 + n : 1 + 2 * n]
        self.anc = self.dev[1 + 2 * n :].view(n, n)
        self.move_host = torch.zeros(1 + n, dtype=torch.long, pin_memory=pin)
        self.move_dev = torch.zeros(1 + n, dtype=torch.long, device=device)
        self.logits: torch.Tensor | None = None
        self.graph = None
        self.move_graph = None

    def fill(self, tree: TokenTree, past: int) -> None:
        """The tree's inputs, padded to ``n`` nodes: a padding node has token 0, depth 0
        and sees only the prefix and itself; no real node sees it."""
        n, k = self.n, len(tree)
        h = self.host.numpy()
        h[0] = past
        h[1 : 1 + n] = 0
        h[1 : 1 + k] = tree.tokens
        h[1 + n : 1 + 2 * n] = 0
        h[1 + n : 1 + n + k] = tree.depths
        anc = h[1 + 2 * n :].reshape(n, n)
        anc[:] = 0
        anc[:k, :k] = tree.ancestor_mask().numpy()
        pad = np.arange(k, n)
        anc[pad, pad] = 1
        self.dev.copy_(self.host, non_blocking=True)


class StaticRunner:
    """Static-shape decoding steps over a ``SlotCache`` (module docstring). ``graphs``:
    capture each bucket's step as a CUDA graph on first use (cuda only; elsewhere the same
    code runs eagerly). One sequence at a time: ``lock`` guards it across a generation;
    ``reset``-free reuse, since ``prefill`` overwrites the cache from slot 0."""

    kind = "static"

    def __init__(self, model, max_len: int, graphs: bool = False):
        check_attention(model)
        self._model = weakref.ref(model)  # runners are cached per model: no strong ref back
        self.device = torch.device(model.device)
        self.max_len = int(max_len)
        self.graphs = bool(graphs) and self.device.type == "cuda"
        self.cache = SlotCache(model.config, self.max_len)
        self.lock = threading.Lock()
        self.buckets: dict[int, _Bucket] = {}
        self._cols = torch.arange(self.max_len, device=self.device)
        self._pin = self.device.type == "cuda"

    @property
    def model(self):
        return self._model()

    @property
    def length(self) -> int:
        return self.cache.length

    # -- prefill (eager: prompt lengths vary) --------------------------------------------

    @torch.inference_mode()
    def prefill(self, prompt_ids: Sequence[int]) -> torch.Tensor:
        p = len(prompt_ids)
        if p == 0:
            raise ValueError("empty prompt")
        if p >= self.max_len:
            raise ValueError(f"prompt of {p} tokens does not fit a {self.max_len}-slot cache")
        ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
        rows = torch.arange(p, device=self.device)
        allowed = self._cols[None, :] <= rows[:, None]
        self.cache.write_index = rows
        out = self.model(
            input_ids=ids,
            attention_mask=self._additive(allowed)[None, None],
            position_ids=rows[None],
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.cache.length = p
        return out.logits[0, -1].float()

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        dtype = self.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype, device=self.device)
        return mask.masked_fill_(~allowed, torch.finfo(dtype).min)

    # -- the static step -----------------------------------------------------------------

    def bucket_for(self, n_nodes: int, budget: int) -> int:
        """The node budget a tree of ``n_nodes`` is padded to: 1 (the one-token step) or
        ``budget`` (the verify)."""
        return 1 if n_nodes == 1 else max(budget, n_nodes)

    def _step_body(self, b: _Bucket) -> torch.Tensor:
        """One forward over bucket ``b``'s static inputs. Device ops only, no host reads
        and no host-built tensors: this is the region a CUDA graph captures."""
        n = b.n
        past = b.past
        arange = self._cols[:n]
        self.cache.write_index = past + arange
        rel = self._cols - past  # slot j holds tree node rel[j] when 0 <= rel[j] < n
        in_tree = (rel >= 0) & (rel < n)
        tree_ok = b.anc.index_select(1, rel.clamp(0, n - 1)) != 0  # (n, max_len)
        allowed = (rel < 0)[None, :] | (in_tree[None, :] & tree_ok)
        out = self.model(
            input_ids=b.tokens[None],
            attention_mask=self._additive(allowed)[None, None],
            position_ids=(past + b.depths)[None],
            cache=self.cache,
            use_cache=True,
        )
        return out.logits[0].float()

    def _compact_body(self, b: _Bucket) -> None:
        """Slots past+i <- past+move[i] for i < n in every layer (gather first, so
        overlapping sources are safe); slots past the kept ones become garbage that the
        mask hides and the next step overwrites."""
        past = b.move_dev[0:1]
        dst = past + self._cols[: b.n]
        src = past + b.move_dev[1:]
        for layer in self.cache.layers:
            layer.keys.index_copy_(2, dst, layer.keys.index_select(2, src))
            layer.values.index_copy_(2, dst, layer.values.index_select(2, src))

    def _capture(self, fn, b: _Bucket):
        """A CUDA graph of ``fn(b)`` and its output, after two warm-up runs on a side
        stream (the warm-up runs execute: callers make them harmless). Each graph keeps
        its own memory pool: outputs stay valid whatever runs in between."""
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                fn(b)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn(b)
        torch.cuda.synchronize(self.device)  # once per graph: host buffers free to rewrite
        return graph, out

    @torch.inference_mode()
    def forward(self, tree: TokenTree, budget: int | None = None) -> torch.Tensor:
        """Logits (len(tree), vocab) float32 after each node's path; the tree's K/V sit in
        slots [length, length + len(tree)) in node order. The returned tensor is a view of
        a static buffer: valid until the next ``forward``."""
        k = len(tree)
        n = self.bucket_for(k, budget or k)
        if self.length + n > self.max_len:
            raise ValueError(
                f"{self.length} cached + {n} tree slots exceed the {self.max_len}-slot cache"
            )
        b = self.buckets.get(n)
        if b is None:
            b = self.buckets[n] = _Bucket(n, self.device, self._pin)
        b.fill(tree, self.length)
        if self.graphs:
            if b.graph is None:  # warm-up writes K/V only past the cache length: harmless
                b.graph, b.logits = self._capture(self._step_body, b)
            b.graph.replay()
        else:
            b.logits = self._step_body(b)
        self._last = (b, k)
        return b.logits[:k]

    @torch.inference_mode()
    def keep(self, path: list[int], n_nodes: int) -> None:
        """Keep the prefix plus ``path`` (node indices of the last forward's tree, root
        first). A leading run 0, 1, 2, ... is already in place; otherwise the kept K/V
        are copied into the slots right after the prefix (one fixed-shape copy per
        bucket, graph-captured on cuda)."""
        b, k = self._last
        if n_nodes != k:
            raise ValueError(f"last forward had {k} nodes, not {n_nodes}")
        first_moved = next((i for i, node in enumerate(path) if node != i), len(path))
        if first_moved < len(path):
            h = b.move_host.numpy()
            h[0] = self.length
            h[1:] = np.arange(b.n)  # untouched slots copy onto themselves
            if self.graphs and b.move_graph is None:
                # the warm-up runs execute: with the identity move they are no-ops (a real
                # move run twice would move already-moved slots again)
                b.move_dev.copy_(b.move_host, non_blocking=True)
                b.move_graph, _ = self._capture(self._compact_body, b)
            h[1 : 1 + len(path)] = path
            b.move_dev.copy_(b.move_host, non_blocking=True)
            if self.graphs:
                b.move_graph.replay()
            else:
                self._compact_body(b)
        self.cache.length += len(path)

    def step(self, token: int) -> torch.Tensor:
        logits = self.forward(TokenTree.with_root(token))
        self.keep([0], 1)
        return logits[0]

    def release(self) -> None:
        """End of a sequence: the cache and graphs stay for the next one."""
        self.cache.length = 0


_static_runners: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_static_lock = threading.Lock()


def needed_slots(n_prompt: int, max_new_tokens: int, max_nodes: int) -> int:
    return n_prompt + max_new_tokens + max_nodes


def static_runner(model, slots: int, graphs: bool) -> StaticRunner | None:
    """The model's shared static runner with at least ``slots`` slots, locked for the
    caller (release with ``runner.lock.release()``); a bigger one replaces a smaller one.
    None when the shared runner is busy with another sequence."""
    with _static_lock:
        runners = _static_runners.setdefault(model, {})
        runner = runners.get(graphs)
        if runner is not None and runner.max_len < slots:
            if not runner.lock.acquire(blocking=False):
                return None
            runner.lock.release()
            runner = None
        if runner is None:
            size = -(-slots // SLOT_ROUNDING) * SLOT_ROUNDING
            runner = runners[graphs] = StaticRunner(model, size, graphs=graphs)
        if not runner.lock.acquire(blocking=False):
            return None
        return runner


def open_runner(model, cache: str, graphs: bool, slots: int):
    """A runner for one sequence: static (shared per model, ``graphs`` on cuda) when asked
    and free, else dynamic. Close it with ``close_runner``."""
    if cache not in CACHE_KINDS:
        raise ValueError(f"cache must be one of {CACHE_KINDS}, not {cache!r}")
    if cache == "static":
        runner = static_runner(model, slots, graphs)
        if runner is not None:
            return runner
    return DynamicRunner(model)


def close_runner(runner) -> None:
    runner.release()
    if isinstance(runner, StaticRunner):
        runner.lock.release()
