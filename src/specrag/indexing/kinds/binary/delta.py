"""The ``binary`` part of a delta segment (``indexing/delta.py``): the delta documents'
sign codes and int8 rescoring rows, quantized with the *base version's* calibration.

The binarization is the kind's own (``binarize``, sign bits of the same pooled vectors as
``dense``); the int8 rows use the base's per-dimension (lo, step), frozen as bm25's
statistics are, so a delta row and a base row rescore to the same function of the query.
A value outside the base's range clips to its end level (a full build recalibrates over
all documents; its scores then differ by that quantization only). The delta is always a
flat index: it is small, and its searcher (the kind's own) rescores every allowed delta
row, exactly, up to ``min_candidates`` rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.kinds.binary.build import CALIBRATION_FILE, write_binary_index
from specrag.indexing.kinds.binary.config import BinaryConfig
from specrag.indexing.kinds.binary.search import BinarySearcher


def delta_config(config: BinaryConfig) -> BinaryConfig:
    """The base's settings with a flat Hamming index (HNSW/IVF do not pay on a delta)."""
    return config.model_copy(update={"index": "flat"})


def write_binary_delta(
    embeddings: np.ndarray, out_dir: Path, base_dir: Path, config: BinaryConfig
) -> dict[str, Any]:
    """Write the delta's binary index for its pooled ``embeddings`` (non-empty, normalized
    as the base's were) with the calibration of the base index in ``base_dir``."""
    calibration = np.load(Path(base_dir) / CALIBRATION_FILE)
    return write_binary_index(embeddings, out_dir, delta_config(config), calibration)


def open_binary_delta(path: Path, config: BinaryConfig, doc_ids: np.ndarray) -> BinarySearcher:
    """The kind's searcher over a delta's binary part (rows = the delta's rows)."""
    return BinarySearcher.load(path, delta_config(config), doc_ids)
