"""The static KV cache and CUDA-graph decoding (runner.py) are lossless: greedy output with
``cache="static"`` (and ``cuda_graphs=True``, eager off cuda) equals plain greedy with the
dynamic cache, token for token; the step region is capturable (static shapes, no host
reads); on cuda the captured graphs give the same tokens in fp32 and bf16."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from transformers import DynamicCache

from specrag.generation import runner as runner_mod
from specrag.generation.decode import DecodeConfig, generate, speculative_stream
from specrag.generation.drafters import CombinedDrafter, ContextDrafter, DatastoreDrafter
from specrag.generation.runner import StaticRunner, _Bucket, open_runner
from specrag.generation.testing import emulate_cuda_graphs, tiny_model, trained_tiny_model
from specrag.generation.tree import TokenTree
from specrag.generation.verify import accept_greedy
from tests.test_speculative import OracleDrafter, RandomDrafter, prompts

ARCHS = ["llama", "gpt2"]
STATIC = [
    pytest.param({"cache": "static"}, id="static"),
    pytest.param({"cache": "static", "cuda_graphs": True}, id="static+graphs"),
]
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (CUDA graphs, bf16)")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return tiny_model(request.param, attn="eager" if request.param == "gpt2" else "sdpa")


def cfg(mode: dict, **kw) -> DecodeConfig:
    return DecodeConfig(**kw, **mode)


@pytest.mark.parametrize("mode", STATIC)
def test_static_greedy_identical_to_plain_dynamic(model, mode):
    accepted = 0
    for i, prompt in enumerate(prompts(11, 10)):
        for kw in [
            {"max_new_tokens": 40},
            {"max_new_tokens": 33, "max_depth": 5, "max_nodes": 8, "adaptive": False},
            {"max_new_tokens": 20, "max_depth": 32, "max_nodes": 64},
        ]:
            ref, _ = generate(model, prompt, DecodeConfig(**kw))
            plain, _ = generate(model, prompt, cfg(mode, **kw))
            assert plain == ref, (i, kw)
            drafters = [ContextDrafter(max_ngram=4 + i % 3, max_paths=1 + i % 4)]
            if i % 3 == 0:
                drafters = [CombinedDrafter([RandomDrafter(i, n_paths=2), drafters[0]])]
            out, stats = generate(model, prompt, cfg(mode, **kw), drafters=drafters)
            assert out == ref, (i, kw)
            assert stats.target_forwards == stats.verify_steps + 1
            accepted += stats.accepted_draft_tokens
    assert accepted > 50


@pytest.mark.parametrize("mode", STATIC)
def test_static_oracle_and_eos(model, mode):
    """Deep acceptance (whole budget-filling chains), partial acceptance of corrupted
    drafts, EOS inside an accepted draft."""
    prompt = prompts(12, 1)[0]
    long_ref, _ = generate(model, prompt, DecodeConfig(max_new_tokens=60))
    for max_new in [1, 2, 3, 17, 45]:
        kw = {"max_new_tokens": max_new, "max_depth": 16, "max_nodes": 16, "adaptive": False}
        ref, _ = generate(model, prompt, DecodeConfig(**kw))
        oracle = OracleDrafter(prompt, long_ref)
        out, stats = generate(model, prompt, cfg(mode, **kw), drafters=[RandomDrafter(0), oracle])
        assert out == ref
        if max_new > 2:
            assert stats.accepted_draft_tokens > 0
        bad = OracleDrafter(prompt, long_ref, corrupt_after=2)
        out2, _ = generate(model, prompt, cfg(mode, **kw), drafters=[bad, RandomDrafter(1)])
        assert out2 == ref
    eos = long_ref[7]
    kw = {"max_new_tokens": 30, "eos_token_ids": (eos,), "max_depth": 16, "adaptive": False}
    ref, _ = generate(model, prompt, DecodeConfig(**kw))
    assert ref[-1] == eos
    out, _ = generate(model, prompt, cfg(mode, **kw), drafters=[OracleDrafter(prompt, long_ref)])
    assert out == ref


def test_emulated_graph_path_identical(model):
    """The graph path (capture with executing warm-ups, replays into static outputs,
    the compaction graph) emulated on the CPU: still plain greedy, token for token."""
    runner_mod._static_runners.pop(model, None)
    shared = emulate_cuda_graphs(StaticRunner(model, 512, graphs=True))
    runner_mod._static_runners[model] = {True: shared}
    mode = {"cache": "static", "cuda_graphs": True}
    moved = 0
    for i, prompt in enumerate(prompts(16, 8)):
        kw = {"max_new_tokens": 40, "max_nodes": 12 + i % 3}
        ref, _ = generate(model, prompt, DecodeConfig(**kw))
        assert generate(model, prompt, cfg(mode, **kw))[0] == ref
        drafters = [CombinedDrafter([RandomDrafter(i, n_paths=3), ContextDrafter(max_paths=3)])]
        out, _ = generate(model, prompt, cfg(mode, **kw), drafters=drafters)
        assert out == ref, i
        moved += sum(b.move_graph is not None for b in shared.buckets.values())
    assert runner_mod._static_runners[model][True] is shared
    assert shared.buckets[1].graph is not None and moved > 0
    runner_mod._static_runners.pop(model, None)


def test_static_sampling_runs_and_is_seeded(model):
    """Sampling reads the same logits rows: seeded runs agree with each other."""
    prompt = prompts(13, 1)[0]
    kw = {"max_new_tokens": 20, "temperature": 0.8, "seed": 3, "cache": "static"}
    a, _ = generate(model, prompt, DecodeConfig(**kw), drafters=[ContextDrafter()])
    b, _ = generate(model, prompt, DecodeConfig(**kw), drafters=[ContextDrafter()])
    assert a == b and len(a) == 20


def _assert_slots_hold(model, runner: StaticRunner, tokens: list[int]) -> None:
    """The static cache's first ``len(tokens)`` slots equal a plain forward's cache."""
    want = DynamicCache()
    with torch.inference_mode():
        model(input_ids=torch.tensor([tokens]), cache=want, use_cache=True)
    assert runner.length == len(tokens)
    for got, ref in zip(runner.cache.layers, want.layers, strict=True):
        n = len(tokens)
        torch.testing.assert_close(got.keys[..., :n, :], ref.keys, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(got.values[..., :n, :], ref.values, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "emulated-graphs"])
@pytest.mark.parametrize("shape", ["midway", "shifted"])
def test_static_compaction_of_a_non_contiguous_path(model, graphs, shape):
    """The accepted path leaves the first branch midway (``midway``), or is a later branch
    whose slots shift onto each other (``shifted``: slot 1 <- 2, 2 <- 3, 3 <- 4): its K/V
    are copied into the slots after the prefix, the slots equal a plain forward over the
    accepted tokens, and the next one-token step continues like greedy. With emulated
    graphs the compaction is captured on this first use (its warm-ups execute)."""
    prompt = [7, 3, 3, 8, 1, 9, 4]
    ref, _ = generate(model, prompt, DecodeConfig(max_new_tokens=8))
    runner = StaticRunner(model, 64)
    if graphs:
        emulate_cuda_graphs(runner)
    runner.prefill(prompt)
    _assert_slots_hold(model, runner, prompt)
    tree = TokenTree.with_root(ref[0])
    if shape == "midway":
        tree.insert_path(ref[1:3] + [(ref[3] + 1) % 64, 5, 6])  # diverges at depth 3
        tree.insert_path(ref[1:5])
    else:
        tree.insert_path([(ref[1] + 1) % 64])  # a wrong one-node branch first
        tree.insert_path(ref[1:5])
    logits = runner.forward(tree, budget=16)  # padded to 16 nodes
    assert logits.shape[0] == len(tree)
    path, nxt = accept_greedy(tree, logits)
    assert [tree.tokens[i] for i in path] == ref[:5] and nxt == ref[5]
    assert path != list(range(len(path)))
    if shape == "shifted":
        assert path == [0, 2, 3, 4, 5]
    runner.keep(path, len(tree))
    _assert_slots_hold(model, runner, prompt + ref[:5])
    assert int(runner.step(ref[5]).argmax()) == ref[6]
    _assert_slots_hold(model, runner, prompt + ref[:6])
    if graphs:
        assert runner.buckets[16].move_graph is not None and runner.buckets[1].graph is not None


def test_padding_does_not_change_logits(model):
    """A tree padded to 32 nodes gives its real nodes the logits of the unpadded tree and
    of the dynamic cache's tree forward."""
    prompt = prompts(14, 1)[0]
    tree = TokenTree.with_root(5)
    tree.insert_paths([[1, 2, 3], [1, 4], [6]])
    rows = []
    for budget in [len(tree), 32]:
        runner = StaticRunner(model, 128)
        runner.prefill(prompt)
        rows.append(runner.forward(tree, budget=budget).clone())
    dyn = open_runner(model, "dynamic", False, 0)
    dyn.prefill(prompt)
    rows.append(dyn.forward(tree))
    torch.testing.assert_close(rows[0], rows[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rows[0], rows[2], atol=1e-5, rtol=1e-5)


def test_shared_runner_reused_grown_and_released(model):
    """One static runner per model is reused across requests, replaced by a bigger one
    when a request needs more slots, released when a stream is abandoned, and a busy
    runner makes the request fall back to the dynamic cache (still greedy-identical)."""
    runner_mod._static_runners.pop(model, None)
    short = prompts(15, 1)[0][:10]
    kw = {"max_new_tokens": 20, "cache": "static"}
    generate(model, short, DecodeConfig(**kw), drafters=[ContextDrafter()])
    first = runner_mod._static_runners[model][False]
    assert first.max_len == 256 and not first.lock.locked()
    generate(model, short[:5], DecodeConfig(**kw))
    assert runner_mod._static_runners[model][False] is first
    long = (short * 30)[:250]
    ref, _ = generate(model, long, DecodeConfig(max_new_tokens=20))
    out, _ = generate(model, long, DecodeConfig(**kw), drafters=[ContextDrafter()])
    assert out == ref
    grown = runner_mod._static_runners[model][False]
    assert grown is not first and grown.max_len == 512
    stream = speculative_stream(model, short, [ContextDrafter()], DecodeConfig(**kw))
    next(stream)
    assert grown.lock.locked()
    # busy: a second sequence meanwhile runs on a dynamic cache
    ref2, _ = generate(model, long[:40], DecodeConfig(max_new_tokens=15))
    out2, _ = generate(model, long[:40], DecodeConfig(max_new_tokens=15, cache="static"))
    assert out2 == ref2
    stream.close()
    assert not grown.lock.locked()


def test_config_validation():
    with pytest.raises(ValueError, match="cache"):
        DecodeConfig(cache="paged")
    with pytest.raises(ValueError, match="static"):
        DecodeConfig(cuda_graphs=True)
    DecodeConfig(cache="static", cuda_graphs=True)


# -- the captured region ----------------------------------------------------------------

#: Calls that read tensor data on the host or build tensors from host data: any of them
#: inside the step would break (or silently freeze into) a CUDA graph capture.
HOST_CALLS = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.__index__,
    torch.Tensor.cpu,
    torch.Tensor.numpy,
    torch.Tensor.nonzero,
    torch.nonzero,
    torch.masked_select,
    torch.Tensor.masked_select,
    torch.tensor,
    torch.as_tensor,
    torch.unique,
}


class HostCallGuard(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_CALLS:
            self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


class OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = tree_map(
            lambda a: ("T", tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a,
            (args, kwargs or {}),
        )
        self.ops.append((str(func), repr(shapes)))
        return func(*args, **(kwargs or {}))


def test_guard_sees_host_reads():
    guard = HostCallGuard()
    with guard:
        torch.ones(2).sum().item()
    assert guard.calls == ["item"]


def test_step_and_compaction_are_capturable(model):
    """What cuda captures (``_step_body``, ``_compact_body``) makes no host reads and
    builds no tensors from host data, and runs the same ops on the same shapes for
    different trees, cache lengths and paths: one graph per bucket replays them all."""
    runner = StaticRunner(model, 128)
    runner.prefill(list(range(1, 12)))
    traces = []
    for past, paths, path in [
        (11, [[1, 2, 3]], [0, 1, 2]),
        (30, [[4], [5, 6, 7, 8], [9]], [0, 2, 3]),
    ]:
        runner.cache.length = past
        tree = TokenTree.with_root(3)
        tree.insert_paths(paths)
        bucket = _Bucket(8, runner.device, pin=False)
        bucket.fill(tree, past)
        bucket.move_host[0] = past
        bucket.move_host[1 : 1 + len(path)] = torch.tensor(path)
        bucket.move_dev.copy_(bucket.move_host)
        guard, ops = HostCallGuard(), OpRecorder()
        with torch.inference_mode(), guard, ops:
            runner._step_body(bucket)
            runner._compact_body(bucket)
        assert guard.calls == []
        traces.append(ops.ops)
    assert traces[0] == traces[1]
    assert len(traces[0]) > 20


# -- with the corpus datastore's drafts ---------------------------------------------------

DEMO = Path(__file__).resolve().parents[1] / "src" / "specrag" / "demo" / "scifact-1k.jsonl"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from specrag.indexing.encoders.models import resolve_model_path
    from specrag.indexing.kinds.datastore.build import build_datastore, load_tokenizer
    from specrag.indexing.kinds.datastore.config import DatastoreConfig
    from specrag.indexing.kinds.datastore.search import DatastoreSearcher
    from specrag.types import Document, no_progress

    docs = []
    with open(DEMO) as f:
        for line in f:
            d = json.loads(line)
            docs.append(Document(d["_id"], d["text"][:600], d.get("title")))
            if len(docs) == 40:
                break
    config = DatastoreConfig(tokenizer=resolve_model_path("all-MiniLM-L6-v2"), max_match=12)
    out = tmp_path_factory.mktemp("datastore")
    build_datastore(docs, out, config, no_progress)
    searcher = DatastoreSearcher.load(out, config, np.array([d.id for d in docs]))
    return searcher, len(load_tokenizer(config.tokenizer))


@pytest.mark.parametrize("arch", ARCHS)
def test_static_with_datastore_and_context_drafters(store, arch):
    """Prompts of corpus text, drafts from the corpus datastore and the prompt."""
    searcher, vocab = store
    model = tiny_model(arch, vocab_size=vocab, seed=1)
    tokens = np.asarray(searcher.tokens)
    drafted = accepted = 0
    for start in [0, 250, 700, 1100]:
        prompt = [t for t in tokens[start : start + 40].tolist() if t != searcher.separator]
        prompt = prompt + prompt[:12]  # the answer starts by quoting the prompt
        ref, _ = generate(model, prompt, DecodeConfig(max_new_tokens=24))
        for mode in ({"cache": "static"}, {"cache": "static", "cuda_graphs": True}):
            drafters = [ContextDrafter(), DatastoreDrafter(searcher, min_match=1)]
            out, stats = generate(model, prompt, cfg(mode, max_new_tokens=24), drafters=drafters)
            assert out == ref, (arch, start, mode)
            drafted += stats.drafted_tokens
            accepted += stats.accepted_draft_tokens
    assert drafted > 0
    print(f"{arch}: {drafted} drafted, {accepted} accepted")


def test_trained_tiny_model_learns():
    """The briefly trained model the bf16 cuda test uses: its loss drops below the random
    model's (ln 64 = 4.16) within a few dozen CPU steps."""
    model = trained_tiny_model("gpt2", steps=40, batch=8)
    assert model.final_loss < 2.5
    assert not model.training


# -- cuda: captured graphs, fp32 and bf16 --------------------------------------------------


def _cuda_identity(model, prompt_sets, max_new=48) -> int:
    accepted = 0
    for prompt in prompt_sets:
        ref, _ = generate(model, prompt, DecodeConfig(max_new_tokens=max_new))
        for mode in ({"cache": "static"}, {"cache": "static", "cuda_graphs": True}):
            plain, _ = generate(model, prompt, cfg(mode, max_new_tokens=max_new))
            assert plain == ref, (mode, prompt[:8])
            for kw in ({}, {"max_nodes": 64, "max_depth": 24}):
                out, stats = generate(
                    model, prompt, cfg(mode, max_new_tokens=max_new, **kw), [ContextDrafter()]
                )
                assert out == ref, (mode, kw, prompt[:8])
                accepted += stats.accepted_draft_tokens
    runners = runner_mod._static_runners[model]
    assert any(b.graph is not None for b in runners[True].buckets.values())
    return accepted


@needs_cuda
@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_graphs_fp32_identical(arch):
    model = tiny_model(arch).cuda()
    assert _cuda_identity(model, prompts(21, 8)) > 0


@needs_cuda
@pytest.mark.parametrize("arch", ARCHS)
def test_cuda_graphs_bf16_trained_identical(arch):
    """bf16 needs trained weights (random ones tie in bf16): a tiny model trained on the
    chain task for a few seconds on the GPU."""
    model = trained_tiny_model(arch, steps=300, device="cuda", dtype=torch.bfloat16)
    assert model.final_loss < 1.5
    rng = np.random.default_rng(3)
    prompt_sets = [rng.integers(0, 64, size=int(rng.integers(5, 60))).tolist() for _ in range(8)]
    assert _cuda_identity(model, prompt_sets) > 50


@needs_cuda
@pytest.mark.skipif(
    not os.environ.get("SPECRAG_TEST_READER"),
    reason="set SPECRAG_TEST_READER to a trained reader (scripts/train_reader_lm.py) folder",
)
def test_cuda_graphs_bf16_reader_identical():
    """The trained reader in bf16 on RAG-like prompts (a passage, then its start again)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = os.environ["SPECRAG_TEST_READER"]
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).cuda().eval()
    prompt_sets = []
    with open(DEMO) as f:
        for _, line in zip(range(6), f, strict=False):
            ids = tok(json.loads(line)["text"][:1200])["input_ids"][:300]
            prompt_sets.append(ids + ids[:10])
    assert _cuda_identity(model, prompt_sets, max_new=64) > 0
