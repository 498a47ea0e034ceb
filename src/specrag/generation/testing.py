"""Tiny random-weight causal LMs for tests and cost curves (never for quality claims)."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM


def tiny_model(arch: str, vocab_size: int = 64, seed: int = 0, attn: str = "sdpa", **overrides):
    """A 2-layer ``llama`` or ``gpt2`` model with random weights, in eval mode."""
    torch.manual_seed(seed)
    if arch == "llama":
        cfg = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
            initializer_range=0.2,
            **overrides,
        )
        model = LlamaForCausalLM(cfg)
    elif arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=1024,
            initializer_range=0.2,
            **overrides,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(f"unknown tiny architecture {arch!r}; use llama or gpt2")
    model.config._attn_implementation = attn
    return model.eval()


def chain_task_batch(
    batch: int, length: int, successor: torch.Tensor, generator: torch.Generator, noise: float = 0.1
) -> torch.Tensor:
    """Token strings that mostly follow a fixed successor table (``next = successor[t]``),
    with a random token now and then: a bigram a tiny model learns in a few hundred steps,
    after which its greedy output cycles, so the context drafter's drafts get accepted."""
    vocab = len(successor)
    out = torch.empty(batch, length, dtype=torch.long)
    out[:, 0] = torch.randint(0, vocab, (batch,), generator=generator)
    for i in range(1, length):
        jump = torch.rand(batch, generator=generator) < noise
        rand = torch.randint(0, vocab, (batch,), generator=generator)
        out[:, i] = torch.where(jump, rand, successor[out[:, i - 1]])
    return out


def trained_tiny_model(
    arch: str = "gpt2",
    steps: int = 300,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    vocab_size: int = 64,
    seed: int = 0,
    attn: str = "sdpa",
    batch: int = 32,
    **overrides,
):
    """A tiny model briefly trained (fp32) on ``chain_task_batch``, then cast to ``dtype``:
    unlike random weights its bf16 logits have clear top-1 margins, so greedy identity
    tests in bf16 test acceptance and not tie-breaking. 300 steps take seconds on a GPU;
    ``model.final_loss`` is the last training loss."""
    model = tiny_model(arch, vocab_size=vocab_size, seed=seed, attn=attn, **overrides)
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    successor = torch.randperm(vocab_size, generator=g)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        ids = chain_task_batch(batch, 32, successor, g).to(device)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.final_loss = float(loss.detach())
    model.successor = successor
    return model.to(dtype).eval()


class EmulatedGraph:
    """Off cuda, stands in for a captured ``torch.cuda.CUDAGraph``: ``replay`` reruns the
    captured function and writes its result into the tensor the capture returned, as a
    replay refills a graph's static output."""

    def __init__(self, fn, bucket, out):
        self.fn, self.bucket, self.out = fn, bucket, out

    def replay(self) -> None:
        result = self.fn(self.bucket)
        if self.out is not None:
            self.out.copy_(result)


def emulate_cuda_graphs(runner):
    """Make a CPU ``StaticRunner`` take its graph path: capture runs the warm-ups as
    ``StaticRunner._capture`` does (they execute on cuda too) plus the captured run, and
    replays go through ``EmulatedGraph``. Catches warm-ups that are not harmless and
    callers that hold stale outputs."""

    def capture(fn, bucket):
        for _ in range(2):
            fn(bucket)
        out = fn(bucket)
        return EmulatedGraph(fn, bucket, out), out

    runner.graphs = True
    runner._capture = capture
    return runner
