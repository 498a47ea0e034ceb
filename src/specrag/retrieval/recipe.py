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


#: The recommended hybrid, chosen on SciFact *train* queries (809; the grid of RRF k x
#: weights and convex minmax/zscore x weights is in docs/benchmarks.md): convex z-score
#: fusion, bm25 0.6 : dense 0.4, 100 candidates each (train nDCG@10 0.737 vs 0.717 for
#: plain RRF k=60). Kinds without a measured weight get 0.5.
#:
#: No default rerank: MaxSim over a ``colbert`` token store, fused with the first-stage
#: scores (``maxsim_fusion``, weights from the same train queries), adds +0.0034 nDCG@10 on
#: SciFact test at 2.7x the latency (p50 20.6 -> 55.9 ms), and a paired test over the 300
#: queries finds no significant difference (t-test p = 0.52, bootstrap 95% interval
#: [-0.0071, +0.0141]; docs/benchmarks.md). It stays one request field away:
#: ``"rerank": {"method": "maxsim"}``.
HYBRID = Recipe(
    fusion="convex",
    normalization="zscore",
    weights={"bm25": 0.6, "dense": 0.4},
    default_weight=0.5,
    late_kinds=("colbert",),
    rerank=None,
    maxsim_fusion={"dense": 0.4, "bm25": 0.8},
)
