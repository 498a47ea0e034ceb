"""The ``colbert`` part of a delta segment (``indexing/delta.py``): the delta documents'
token vectors in a token store coded with the *base version's* codec (its fitted int8
range, binary thresholds), so delta and base MaxSim scores are the same function of the
query. No centroids: the delta is small, and its documents are scored by exact MaxSim
over every allowed row (``retrieval/live.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.encodings.gc import STORE_DIR
from specrag.indexing.encodings.session import Encoded
from specrag.indexing.kinds.colbert.build import open_token_store
from specrag.indexing.kinds.colbert.token_store import TokenStore, TokenStoreWriter

TOKENS_DIR = "tokens"


def write_colbert_delta(
    encoded: Encoded, space_key: str, out_dir: Path, base_dir: Path, previous: Path | None
) -> dict[str, Any]:
    """Write the delta's token store (row order of ``encoded``) with the codec of the base
    index in ``base_dir``. A document the previous delta over the same base (folder
    ``previous``) already coded -- same encoding hash, same codec, so the same codes -- is
    copied from it: a refresh codes only what arrived since, not the whole delta again."""
    writer = TokenStoreWriter(Path(out_dir) / TOKENS_DIR, open_token_store(base_dir).codec)
    prev_store, prev_row = _previous_codes(previous, space_key)
    src = [prev_row.get(h, -1) for h in encoded.hashes.tolist()]
    fresh = iter(encoded.store.get(encoded.hashes[[j < 0 for j in src]], "tokens"))
    lengths = []
    for j in src:
        if j >= 0 and prev_store is not None:
            lo, hi = int(prev_store.offsets[j]), int(prev_store.offsets[j + 1])
            writer.append_codes(prev_store.codes[lo:hi])
            lengths.append(hi - lo)
        else:
            tokens = np.asarray(next(fresh), np.float32)
            writer.append_rows(tokens)
            lengths.append(len(tokens))
    store = writer.close(np.array(lengths, np.int64))
    return {
        "n_docs": store.n_docs,
        "n_tokens": int(store.offsets[-1]),
        "compression": store.codec.name,
        "bytes": store.nbytes(),
        "copied": sum(j >= 0 for j in src),
    }


def _previous_codes(previous: Path | None, space_key: str) -> tuple[TokenStore | None, dict]:
    """The previous delta's token store and encoding hash -> row, or (None, {})."""
    if previous is None:
        return None, {}
    refs, tokens = previous / STORE_DIR / f"{space_key}.npy", previous / "colbert" / TOKENS_DIR
    if not refs.exists() or not (tokens / "store.json").exists():
        return None, {}
    store = TokenStore.open(tokens)
    hashes = np.load(refs).tolist()
    if len(hashes) != store.n_docs:
        return None, {}
    return store, {h: j for j, h in enumerate(hashes)}
