"""The ``splade`` part of a delta segment (``indexing/delta.py``): a splade index over the
delta's documents, their stored SparseEncoder weights quantized with the *base version's*
scale over the base's term ids, so delta and base scores are in the same units. SPLADE
weights depend on no collection statistic: with the same scale a delta document scores
exactly as in the base (a weight above the base's largest saturates at the top impact,
counted as ``saturated``; a full build whose largest weight grew rescales every impact).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from specrag.indexing.encodings.session import encodings_for
from specrag.indexing.kinds.impact.index import META_FILE
from specrag.indexing.kinds.splade.build import read_weights, splade_encodings, write_splade_index
from specrag.indexing.kinds.splade.config import SpladeConfig
from specrag.types import Corpus, Progress, no_progress


def write_splade_delta(
    corpus: Corpus, out_dir: Path, base_dir: Path, config: SpladeConfig,
    progress: Progress = no_progress,
) -> dict[str, Any]:  # fmt: skip
    """Write the splade index of ``corpus`` (the delta's documents, non-empty) into
    ``out_dir`` with the scale and term ids of the base index in ``base_dir``."""
    header = json.loads((Path(base_dir) / META_FILE).read_text())
    scale, n_terms = float(header["scale"]), int(header["n_terms"])
    (need,) = splade_encodings(config)
    with encodings_for(corpus, need, Path(out_dir), progress) as encoded:
        term_ids, doc_ids, weights = read_weights(encoded, len(corpus), progress)
    if len(term_ids) and term_ids.max() >= n_terms:
        raise ValueError(f"splade term id {term_ids.max()} outside the base's {n_terms} terms")
    top = (1 << config.impact_bits) - 1
    saturated = int(np.count_nonzero(np.rint(weights / scale) > top))
    stats = write_splade_index(
        out_dir, term_ids, doc_ids, weights, len(corpus), n_terms, config, progress, scale
    )
    return {**stats, "saturated": saturated}
