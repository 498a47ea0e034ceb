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
