"""Build the ``datastore`` kind: the corpus as one token stream (the generator's tokenizer)
with a suffix array, for REST-style drafts.

Files: ``tokens.npy`` (int32; documents separated by the value ``vocab_size``, which no
token takes), ``sa.npy`` (the suffix array, pydivsufsort) and ``doc_starts.npy``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from specrag.indexing.kinds.datastore.config import DatastoreConfig
from specrag.types import Corpus, Progress


@lru_cache(maxsize=4)
def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    from specrag.indexing.encoders.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path(name))


def encode_text(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def build_datastore(
    corpus: Corpus, out_dir: Path, config: DatastoreConfig, progress: Progress
) -> dict:
    from pydivsufsort import divsufsort

    tokenizer = load_tokenizer(config.tokenizer)
    separator = len(tokenizer)
    pieces, starts = [], []
    total, n = 0, len(corpus)
    for i, doc in enumerate(corpus):
        ids = encode_text(tokenizer, doc.full_text())
        starts.append(total)
        pieces.append(np.asarray(ids + [separator], dtype=np.int32))
        total += len(ids) + 1
        if i % 1000 == 0:
            progress(i, n, "datastore: tokenize")
    if n and total == n:
        raise ValueError(f"tokenizer {config.tokenizer!r} produced no tokens for any document")
    if total >= 2**31 - 1:
        raise ValueError(f"corpus has {total} tokens; the int32 datastore holds < 2**31")
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    progress(n, n, "datastore: suffix array")
    sa = np.asarray(divsufsort(tokens), dtype=np.int32)
    np.save(out_dir / "tokens.npy", tokens)
    np.save(out_dir / "sa.npy", sa)
    np.save(out_dir / "doc_starts.npy", np.asarray(starts, dtype=np.int64))
    return {"n_tokens": int(total), "separator": int(separator)}
