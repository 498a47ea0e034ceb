"""The datastore kind: suffix-array search against brute force, drafts, reload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from specrag.generation.datastore import DatastoreSearcher, build_datastore, load_tokenizer
from specrag.generation.decode import DecodeConfig, generate
from specrag.generation.drafters import DatastoreDrafter
from specrag.indexing.configs import DatastoreConfig
from specrag.indexing.encoders import resolve_model_path
from specrag.types import Document, no_progress

DEMO = Path(__file__).resolve().parents[1] / "demo" / "scifact-1k.jsonl"


def demo_docs(n: int) -> list[Document]:
    docs = []
    with open(DEMO) as f:
        for line in f:
            d = json.loads(line)
            docs.append(Document(d["_id"], d["text"][:600], d.get("title")))
            if len(docs) == n:
                break
    return docs


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    docs = demo_docs(60)
    cfg = DatastoreConfig(tokenizer=resolve_model_path("all-MiniLM-L6-v2"), max_match=12)
    out = tmp_path_factory.mktemp("datastore")
    stats = build_datastore(docs, out, cfg, no_progress)
    assert stats["n_tokens"] > 1000
    ids = np.array([d.id for d in docs])
    return docs, DatastoreSearcher.load(out, cfg, ids), cfg


def occurrences(tokens: np.ndarray, pattern: list[int]) -> int:
    windows = np.lib.stride_tricks.sliding_window_view(tokens, len(pattern))
    return int(np.all(windows == np.asarray(pattern), axis=1).sum())


def test_find_and_longest_match_against_brute_force(store):
    _, s, _ = store
    tokens = np.asarray(s.tokens)
    rng = np.random.default_rng(0)
    for _ in range(30):
        start = int(rng.integers(0, len(tokens) - 8))
        length = int(rng.integers(1, 6))
        pat = tokens[start : start + length].tolist()
        if s.separator in pat:
            continue
        lo, hi = s.find(pat)
        assert hi - lo == occurrences(tokens, pat)
        for i in range(lo, hi):
            assert tokens[s.sa[i] : s.sa[i] + length].tolist() == pat
    # a tail that ends in corpus text but starts with noise: longest match is the corpus part
    tail = [7, 7, 7, 7] + tokens[100:106].tolist()
    length, lo, hi = s.longest_match(tail)
    assert length >= 6 and hi > lo
    assert occurrences(tokens, tail[-(length + 1) :]) == 0 or length == len(tail)
    assert s.find([999_999]) == (s.find([999_999])[0],) * 2


def test_search_is_top_k_of_reference_scores(store):
    docs, s, _ = store
    probe = " ".join(docs[3].text.split()[5:25])
    queries = [probe, docs[10].title or "x", "cells and the immune response", "zzzz qqq"]
    ref = s.reference_scores(queries)
    rng = np.random.default_rng(1)
    for mask in [None, rng.random(len(docs)) < 0.5]:
        hits = s.search(queries, k=5, allowed=mask)
        for qi, row_hits in enumerate(hits):
            scores = ref[qi].copy()
            if mask is not None:
                scores[~mask] = -np.inf
            order = sorted((r for r in range(len(docs)) if np.isfinite(scores[r])), key=lambda r: (-scores[r], r))
            want = [(docs[r].id, scores[r]) for r in order[:5]]
            assert [(h.doc_id, h.score) for h in row_hits] == want
    assert s.search([probe], k=1)[0][0].doc_id == docs[3].id


def test_drafts_are_corpus_continuations(store):
    _, s, _ = store
    tokens = np.asarray(s.tokens)
    tail = tokens[200:210].tolist()
    paths = s.draft(tail, max_depth=6, max_paths=3)
    assert paths and paths[0] == tokens[210:216].tolist()[: len(paths[0])]
    for p in paths:
        length, _, _ = s.longest_match(tail)
        assert occurrences(tokens, tail[-length:] + p) >= 1
    assert s.draft([5, 5, 5, 5, 5, 5, 5, 5][-1:] + [123456], max_depth=4) == []


def test_speculative_with_datastore_is_greedy_identical(store):
    from transformers import GPT2Config, GPT2LMHeadModel

    _, s, cfg = store
    torch.manual_seed(0)
    tok = load_tokenizer(cfg.tokenizer)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, initializer_range=0.2)).eval()
    tokens = np.asarray(s.tokens)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for start in [0, 300, 900]:
            prompt = tokens[start : start + 30].tolist()
            prompt = [t for t in prompt if t != s.separator]
            c = DecodeConfig(max_new_tokens=20)
            ref, _ = generate(model, prompt, c)
            out, _ = generate(model, prompt, c, drafters=[DatastoreDrafter(s, min_match=1)])
            assert out == ref
    finally:
        torch.set_num_threads(before)
