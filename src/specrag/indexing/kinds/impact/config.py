"""Settings shared by the impact-index kinds (``bm25``, ``splade``): block layout,
reordering, and every knob of the BMP search."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from specrag.indexing.kinds.base import KindConfig


class ImpactConfig(KindConfig):
    """Build and search settings shared by the impact-index kinds (``bm25``, ``splade``)."""

    block_size: int = Field(
        32,
        ge=1,
        le=65536,
        description="Docs per block for block-max pruning (32: fastest of 32/64 at 1M docs for "
        "BM25 and SPLADE-like impacts, docs/benchmarks.md).",
    )
    impact_bits: Literal[8, 16] = Field(
        8, description="Width of the quantized impacts (the scale is recorded in the manifest)."
    )
    reorder: Literal["auto", "none", "bp"] = Field(
        "auto",
        description="Document reordering at build time for tighter block-max bounds: bp = "
        "recursive graph bisection (stored as a row permutation; results are unchanged); "
        "auto = bp from 50,000 documents on (indexing/reorder.py).",
    )
    bp_iterations: int = Field(20, ge=0, le=100, description="Swap rounds per BP bisection.")
    mode: Literal["bmp", "exhaustive"] = Field(
        "bmp", description="bmp: block-max pruning; exhaustive: score every posting."
    )
    alpha: float = Field(
        1.0,
        gt=0,
        le=1,
        description="BMP stops when alpha * (next block's bound) cannot beat the k-th score: "
        "1.0 is safe (exact); below 1 is faster and approximate.",
    )
    bmp_min_blocks: int = Field(
        1024,
        ge=0,
        description="Indexes with fewer blocks are scored exhaustively even in bmp mode: on "
        "SciFact (162 blocks of 32) the bounds admitted 40% of the blocks on 299 of 300 "
        "queries, so the bound pass was pure overhead (docs/benchmarks.md). 0: always BMP.",
    )
    blocks_per_hit: float = Field(
        1.0,
        ge=0,
        description="The up-front check, made per query before any bound is computed: "
        "BMP is expected to score this many blocks per document of the unfiltered top "
        "k * n_docs / allowed_rows (a mask keeping a share f of the rows makes the k-th "
        "allowed score about the (k/f)-th score overall, and block maxima, taken over all "
        "rows, cannot see the mask), at most the blocks its terms touch, of which only the "
        "share with an allowed row is visited. When that many blocks times the query's "
        "terms times ``term_block_cost``, plus the bound pass (one unit per (term, block) "
        "pair, a dense term's row counting every block) cost at least the query's postings, "
        "the exhaustive pass runs at once. 1 is the plain estimate (one block per hit; at "
        "200k BM25 documents BMP scored 0.6-1.7x that many, docs/benchmarks.md); 0 turns "
        "the check off.",
    )
    probe_blocks: int | None = Field(
        None,
        ge=0,
        description="After scoring this many blocks, BMP checks whether the blocks it could "
        "still visit (under a mask: those with an allowed row) would cost more than one "
        "exhaustive pass, and then does that instead. "
        "Default: n_blocks / 64 within [1, 256], enough for a useful k-th score.",
    )
    term_block_cost: float = Field(
        20.0,
        ge=0,
        description="That check's cost model: scoring one query term in one block costs as "
        "much as an exhaustive pass spends on this many postings (20 measured best at 1M "
        "documents, docs/benchmarks.md); 0 turns the model off.",
    )
    fallback_fraction: float = Field(
        0.4,
        ge=0,
        description="At the probe, a query whose still-admitted blocks are this share of all "
        "blocks falls back to the exhaustive pass (0: always; above 1: never on this rule).",
    )
    early_probe_blocks: int | None = Field(
        16,
        ge=0,
        description="An earlier, O(1) fallback check after this many blocks (None: off).",
    )
    early_fallback_fraction: float = Field(
        0.6,
        ge=0,
        description="At the early check, a query whose band of bounds being visited is still "
        "wholly admitted and holds this share of all blocks falls back at once (where bounds "
        "prune nothing it saves 10-15% a query; above 1: never).",
    )
