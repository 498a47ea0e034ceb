"""What every benchmark sets before numpy, numba or torch load: a fixed thread count for
their math libraries (figures on a shared machine say how many threads ran) and no model
hub (models come from the local cache or the offline MiniLM package)."""

from __future__ import annotations

import os

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def offline_with_threads(threads: int) -> None:
    """Set (unless the caller's environment already does) ``threads`` for each math
    library and the hub-offline switches. Call before importing numpy."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(threads))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
