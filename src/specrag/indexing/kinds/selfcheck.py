"""The build's self-check of an approximate index (issue #17, point 3): recall@10 of the
approximate search against exact search over the same stored representation, on a sample
of the corpus's own documents used as queries. A kind records it in its manifest stats
(``stats["self_check"]``) and a version whose check fell below the kind's floor is never
made current (``VersionStore.activate`` refuses it), so an index broken by a bad knob, a
bad k-means or a GPU build gone wrong cannot start serving.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from specrag.indexing.kinds.base import KindConfig

K = 10


class SelfCheckError(RuntimeError):
    """A version's approximate index failed its recall self-check."""


class SelfCheckConfig(KindConfig):
    """The self-check knobs, inherited by the kinds that build an approximate index."""

    self_check_queries: int = Field(
        200,
        ge=0,
        description="Documents sampled as queries for the build's recall@10 self-check of an "
        "approximate index against exact search (0: no check).",
    )
    self_check_floor: float = Field(
        0.9,
        ge=0,
        le=1,
        description="A version whose self-check recall@10 is below this is not activated.",
    )


def sample_rows(n: int, n_sample: int, seed: int = 0) -> np.ndarray:
    """Sorted distinct rows, ``min(n, n_sample)`` of them."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, n_sample), replace=False))


def recall_at_k(approx: list[np.ndarray], exact: list[np.ndarray], k: int = K) -> float:
    """Mean share of each query's exact top-k rows that the approximate top-k holds."""
    shares = []
    for a, e in zip(approx, exact, strict=True):
        e = np.asarray(e)[:k]
        if len(e):
            shares.append(len(np.intersect1d(np.asarray(a)[:k], e)) / len(e))
    return float(np.mean(shares)) if shares else 1.0


def record(recall: float, n_queries: int, floor: float, what: str) -> dict[str, Any]:
    """The manifest entry of one self-check."""
    return {
        f"recall_at_{K}": round(recall, 4),
        "queries": int(n_queries),
        "floor": floor,
        "passed": recall >= floor,
        "approximate": what,
    }


def failed_checks(manifest: dict[str, Any]) -> list[str]:
    """One readable line per kind of ``manifest`` (and per shard, in a sharded version,
    whose kinds list their shards' stats) whose self-check failed."""
    lines = []
    for name, entry in manifest.get("kinds", {}).items():
        stats = entry.get("stats") or {}
        checks = [(name, stats.get("self_check"))] + [
            (f"{name} (shard {s})", (shard or {}).get("self_check"))
            for s, shard in enumerate(stats.get("shards") or [])
        ]
        for what, check in checks:
            if check and not check.get("passed", True):
                lines.append(
                    f"{what}: recall@{K} {check[f'recall_at_{K}']} of the "
                    f"{check['approximate']} against exact search on {check['queries']} "
                    f"sampled documents is below the floor {check['floor']} (self_check_floor)"
                )
    return lines
