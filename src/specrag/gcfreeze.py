"""Keep Python's full garbage collections off the request path.

A full (generation-2) collection walks every object the collector tracks, and a serving
process holds ~620k of them after its first search (torch, transformers, the opened
searchers): each full collection then costs ~300 ms on these cores and lands on whichever
request crosses the threshold. The hybrid default's 1000 candidates per kind allocate
enough to trigger one every ~50 queries: p99 385 ms against a p50 of 29 ms, 35 ms with the
collector off (``docs/benchmarks.md``, retrieval section). What is loaded once and kept
(models, an opened index version) is moved out of the collector's reach with
``gc.freeze()``; request garbage is still collected, and reference counting frees
everything acyclic as before.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()


def freeze_after_load() -> None:
    """After loading something kept (a model, an index version), which may have replaced
    another: unfreeze, collect once (what was dropped -- an evicted model, the previous
    version -- has its reference cycles freed, so its memory and files are released), and
    freeze what is left. One full collection per load, none per request."""
    with _lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
