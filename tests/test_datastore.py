"""The datastore kind: suffix-array search against brute force, drafts, reload."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from specrag.generation.decode import DecodeConfig, generate
from specrag.generation.drafters import DatastoreDrafter
from specrag.indexing.encoders.models import resolve_model_path
from specrag.indexing.kinds.datastore.build import build_datastore, load_tokenizer
from specrag.indexing.kinds.datastore.config import DatastoreConfig
from specrag.indexing.kinds.datastore.search import DatastoreSearcher
from specrag.types import Document, no_progress

DEMO = Path(__file__).resolve().parents[1] / "src" / "specrag" / "demo" / "scifact-1k.jsonl"


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
            order = sorted(
                (r for r in range(len(docs)) if np.isfinite(scores[r])),
                key=lambda r: (-scores[r], r),
            )
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
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, initializer_range=0.2)
    ).eval()
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


def reference_prefix_leaves(conts, separator, max_paths, max_nodes):
    """REST's count-weighted draft trie, spelled out with a Counter over every prefix."""
    from collections import Counter

    counts: Counter = Counter()
    for cont in conts.tolist():
        if separator in cont:
            cont = cont[: cont.index(separator)]
        for d in range(1, len(cont) + 1):
            counts[tuple(cont[:d])] += 1
    chosen = sorted(counts, key=lambda p: (-counts[p], len(p), p))[:max_nodes]
    parents = {p[:-1] for p in chosen}
    leaves = [p for p in chosen if p not in parents]
    leaves.sort(key=lambda p: (-counts[p], -len(p)))
    return [list(p) for p in leaves[:max_paths]]


def test_vectorized_draft_trie_against_counter_reference():
    from specrag.indexing.kinds.datastore.search import _frequent_prefix_leaves

    rng = np.random.default_rng(7)
    for _ in range(400):
        n, depth, vocab = int(rng.integers(1, 40)), int(rng.integers(1, 9)), int(rng.integers(2, 5))
        conts = rng.integers(0, vocab + 1, size=(n, depth))  # vocab = the separator
        for max_paths, max_nodes in ((1, 4), (3, 8), (8, 64)):
            got = _frequent_prefix_leaves(conts, vocab, max_paths, max_nodes)
            assert got == reference_prefix_leaves(conts, vocab, max_paths, max_nodes)


def test_local_document_drafts_after_a_deviation(store):
    """A prompt span pins its document down; after a token the corpus has never seen after
    that text, the corpus-wide match is too short to draft, but the tail's last token is
    still found inside the pinned document, whose continuation is proposed."""
    _, s, _ = store
    row = 3
    doc = s.doc_tokens(row)
    present = set(np.asarray(s.tokens).tolist())
    unseen = next(t for t in range(1000, 30000) if t not in present)
    counts = {t: int((doc == t).sum()) for t in doc.tolist()}
    pos = next(
        i
        for i in range(25, len(doc) - 8)
        if counts[int(doc[i])] == 1 and occurrences(np.asarray(s.tokens), [int(doc[i])]) < 50
    )
    prompt = doc[:24]
    context = np.concatenate([prompt, [unseen], doc[pos : pos + 1]]).astype(np.int64)
    local = DatastoreDrafter(s, max_paths=2, min_match=2, anchor_len=8, anchor_stride=4)
    paths = local.propose(context, len(prompt), max_depth=5)
    assert row in local._local_rows
    assert doc[pos + 1 : pos + 6].tolist() in paths
    assert DatastoreDrafter(s, min_match=2, local_docs=0).propose(context, len(prompt), 5) == []
    # a new prompt (another document) replaces the pinned documents
    other = s.doc_tokens(10)[:24]
    local.propose(np.concatenate([other, other[:1]]).astype(np.int64), len(other), 5)
    assert 10 in local._local_rows and row not in local._local_rows
