"""The default search recipe, in one named object: how ``retriever="hybrid"`` fuses a
collection's kinds and which rerank a hybrid request gets when it does not name one.

Every weight here was chosen by measurement (``docs/benchmarks.md``, with the commands that
produced the figures); change it there and here together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from specrag.retrieval.fusion import RRF_K
from specrag.retrieval.request import RerankSpec

#: Candidates each retriever contributes to a fusion when its spec gives no ``k``.
DEFAULT_DEPTH = 100


@dataclass(frozen=True)
class Recipe:
    """How ``retriever="hybrid"`` runs on a version."""

    fusion: str = "rrf"
    rrf_k: float = RRF_K
    normalization: str = "minmax"
    #: Per-kind fusion weights; kinds not listed get ``default_weight``.
    weights: dict[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    #: Candidates per kind: at least this many, and at least the request's ``k``.
    depth: int = DEFAULT_DEPTH
    #: Late-interaction kinds serve the rerank stage, not the fused first stage (unless
    #: they are all the version has).
    late_kinds: tuple[str, ...] = ()
    #: The rerank a hybrid request gets when it omits ``rerank`` and the version has a
    #: late-interaction kind to serve it; None: no default rerank.
    rerank: RerankSpec | None = None
    #: The MaxSim rerank's fusion with the first stage: ``z(maxsim) + sum w * z(score)``
    #: over the reranked list, per retriever name (``rerank/maxsim.py``).
    maxsim_fusion: dict[str, float] = field(default_factory=dict)

    def weight(self, kind: str) -> float:
        return self.weights.get(kind, self.default_weight)


#: The recommended hybrid, chosen leave-one-collection-out on four collections (SciFact,
#: Cranfield, CISI, NPL; ``docs/relevance.md``, ``scripts/bench_relevance.py``): convex
#: min-max fusion with equal weights (no weight to fit), 1000 candidates per kind. Why:
#: it had the best mean choosing-split nDCG@10 over those collections (0.557 vs 0.549 for
#: plain RRF k=60 and 0.550 for the earlier SciFact-tuned z-score bm25 0.6 : dense 0.4).
#: Over nine collections it is ahead of RRF on six test splits (mean +0.0037). The rule
#: those nine choose, bm25 RM3 from the fused list (``prf.feedback="fused"``), is not the
#: default: SciFact test 0.7205 against 0.7310, not ahead of this one everywhere, and
#: +10 ms p50 (docs/relevance.md, "Outcome"). SciFact test nDCG@10 0.7310 (0.7296
#: before, p = 0.77); hybrid latency p50 18.1 -> 22.4 ms (1.24x with the vectorized
#: fusion, measured side by side by bench_retrieval.py, load ~1) for the deeper lists.
#:
#: No default rerank: MaxSim over a ``colbert`` token store, fused with the first-stage
#: scores (``maxsim_fusion``, weights from SciFact train), does not beat its first stage on
#: every collection (issue #19: opt-in unless it wins everywhere): +0.0034 nDCG@10 on
#: SciFact test (p = 0.52), -0.0135 on Cranfield after equal z-score weights (p = 0.02), at
#: 2.7x the latency. It stays
#: one request field away: ``"rerank": {"method": "maxsim"}``.
HYBRID = Recipe(
    fusion="convex",
    normalization="minmax",
    weights={},
    default_weight=1.0,
    depth=1000,
    late_kinds=("colbert",),
    rerank=None,
    maxsim_fusion={"dense": 0.4, "bm25": 0.8},
)
