"""The ``colbert`` part of a delta segment (``indexing/delta.py``): the delta documents'
token vectors in a token store coded with the *base version's* codec (its fitted int8
range, binary thresholds), so delta and base MaxSim scores are the same function of the
query. No centroids: the delta is small, and its documents are scored by exact MaxSim
over every allowed row (``retrieval/live.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.kinds.colbert.build import open_token_store
from specrag.indexing.kinds.colbert.token_store import TokenStoreWriter

TOKENS_DIR = "tokens"


def write_colbert_delta(
    batches: Iterable[list[np.ndarray]], out_dir: Path, base_dir: Path
) -> dict[str, Any]:
    """Write the delta's token store from batches of per-document token matrices (in
    row order) with the codec of the base index in ``base_dir``."""
    writer = TokenStoreWriter(Path(out_dir) / TOKENS_DIR, open_token_store(base_dir).codec)
    for batch in batches:
        writer.append([np.asarray(tokens, np.float32) for tokens in batch])
    store = writer.close()
    return {
        "n_docs": store.n_docs,
        "n_tokens": int(store.offsets[-1]),
        "compression": store.codec.name,
        "bytes": store.nbytes(),
    }
