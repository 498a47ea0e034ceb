"""Which shard a document lives in: a stable hash of its id.

``shard_of(id, S) = int(blake2b(id, 8 bytes), big-endian) mod S``: the same on every
machine, process and Python version (Python's ``hash`` of a string is salted per process,
so it must never route). A document keeps its shard across builds as long as ``S`` stays;
changing ``S`` is a rebuild of every shard (versions are immutable anyway).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from specrag.errors import UserError

#: Written into the manifest, so a reader can tell how the rows were routed.
ROUTING = "blake2b-64(utf8(id)) mod shards"
#: The most shards a collection may have (each shard is a process at build time).
MAX_SHARDS = 256


class ShardingError(UserError, ValueError):
    """A shard count or a kind that a sharded collection cannot have (HTTP 400)."""


def check_shards(n_shards: int) -> int:
    if isinstance(n_shards, bool) or not isinstance(n_shards, int | np.integer):
        raise ShardingError(f"shards must be an integer, got {n_shards!r}")
    if not 1 <= n_shards <= MAX_SHARDS:
        raise ShardingError(f"shards must be in [1, {MAX_SHARDS}], got {n_shards}")
    return int(n_shards)


def shard_of(doc_id: str, n_shards: int) -> int:
    """The shard of ``doc_id`` among ``n_shards``."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n_shards


def partition(doc_ids: Iterable[str], n_shards: int) -> list[np.ndarray]:
    """The corpus rows of each shard (int64, increasing): row i goes to
    ``shard_of(doc_ids[i])``."""
    check_shards(n_shards)
    of = np.fromiter((shard_of(d, n_shards) for d in doc_ids), dtype=np.int64)
    return [np.flatnonzero(of == s).astype(np.int64) for s in range(n_shards)]
