"""Keep Python's full garbage collections off the request path.

A full (generation-2) collection walks every object the collector tracks, and a serving
process holds several hundred thousand of them after its first search (torch,
transformers, the opened searchers): each one lands on whichever request crosses the
threshold, and the hybrid default's 1000 candidates per kind allocate enough to cross it
every few dozen queries (its p99 was 385.6 ms against a p50 of 29 ms, docs/benchmarks.md;
docs/design.md has the figures after). What is loaded once and kept (models, an opened
index version) is moved out of the collector's reach with ``gc.freeze()``; request
garbage is still collected, and reference counting frees everything acyclic as before.
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
