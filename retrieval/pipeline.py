"""The search pipeline over one opened version: retrievers -> fusion -> cut-offs.

``search_batch(version, queries, request, allowed)`` runs every first-stage retriever the
request names (one batched call per index kind, the DocMask applied inside each search),
fuses their lists, applies the optional rerank and relevance hooks, ``min_score``, and
cuts to ``k``. Every hit keeps each retriever's raw score in ``Hit.scores``.

Which retrievers run:
- ``retrievers=[...]``: exactly those kinds, with their weights and candidate depths;
- ``retriever="<kind>"``: that kind alone, its raw scores unchanged;
- ``retriever="hybrid"`` (default): :data:`HYBRID`, the fusion recommended by measurement
  on SciFact train queries (docs/benchmarks.md), over the version's searchable kinds except
  the late-interaction ones. Explicitly set request fields ``fusion``/``rrf_k``/
  ``normalization`` override it.

The default pipeline: a hybrid request that does not mention ``rerank`` gets the recipe's
rerank stage (MaxSim over the version's ``colbert`` token store, fused with the first-stage
scores) when the version has that kind; ``"rerank": null`` turns it off.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from specrag.indexing.registry import KINDS
from specrag.retrieval.fusion import RRF_K, convex, rrf
from specrag.retrieval.request import RerankSpec, RetrieverSpec, SearchRequest
from specrag.retrieval.version import OpenVersion
from specrag.types import DocMask, Hit

#: Candidates each retriever contributes to a fusion when its spec gives no ``k``.
DEFAULT_DEPTH = 100


class SearchError(ValueError):
    """A request that cannot run against this collection (a client error, HTTP 400)."""


class NotAvailable(SearchError):
    """A feature (rerank, min_relevance) that this collection or service does not offer."""


@dataclass(frozen=True)
class HybridRecipe:
    """How ``retriever="hybrid"`` fuses a collection's kinds."""

    fusion: str = "rrf"
    rrf_k: float = RRF_K
    normalization: str = "minmax"
    #: Per-kind weights; kinds not listed get ``default_weight``.
    weights: dict[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    depth: int = DEFAULT_DEPTH
    #: Late-interaction kinds: they serve the rerank stage, not the fused first stage
    #: (unless they are all the version has).
    late_kinds: tuple[str, ...] = ()
    #: The rerank stage a hybrid request gets by default when the version has a late kind.
    rerank: RerankSpec | None = None


#: The recommended hybrid, chosen on SciFact *train* queries (809; docs/benchmarks.md
#: has the grid of RRF k x weights and convex minmax/zscore x weights, and test figures):
#: convex z-score fusion, bm25 0.6 : dense 0.4, 100 candidates each (train nDCG@10 0.737
#: vs 0.717 for plain RRF k=60). Kinds without a measured weight get 0.5. With a ``colbert``
#: token store the top-100 is reranked by MaxSim fused with the first-stage scores
#: (``rerank/maxsim.py``; SciFact test nDCG@10 in docs/benchmarks.md).
HYBRID = HybridRecipe(
    fusion="convex",
    normalization="zscore",
    weights={"bm25": 0.6, "dense": 0.4},
    default_weight=0.5,
    late_kinds=("colbert",),
    rerank=RerankSpec(method="maxsim", top_n=DEFAULT_DEPTH),
)

#: rerank(version, query, hits, spec) -> hits re-scored and re-ordered (best first).
RerankHook = Callable[[OpenVersion, str, list[Hit], RerankSpec], list[Hit]]
#: relevance(version, query, hits) -> calibrated probability of relevance per hit.
RelevanceHook = Callable[[OpenVersion, str, list[Hit]], Sequence[float]]


@dataclass
class Hooks:
    """Optional later stages, wired by the service when the collection supports them."""

    rerank: RerankHook | None = None
    relevance: RelevanceHook | None = None


@dataclass
class SearchOutcome:
    hits: list[list[Hit]]  # one list per query, best first
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class Plan:
    specs: list[RetrieverSpec]
    fusion: str  # "none" for a single retriever
    rrf_k: float
    normalization: str


def searchable_kinds(version: OpenVersion) -> list[str]:
    kinds = [k for k in version.searchers if k not in KINDS or KINDS[k].searchable]
    return sorted(kinds)


def plan(version: OpenVersion, request: SearchRequest, recipe: HybridRecipe = HYBRID) -> Plan:
    """Resolve the request's retriever choice against the kinds this version holds."""
    available = searchable_kinds(version)
    explicit = request.model_fields_set
    if request.retrievers:
        specs = list(request.retrievers)
        seen = [s.kind for s in specs]
        if len(set(seen)) != len(seen):
            raise SearchError(f"a kind appears twice in retrievers: {seen}")
        if sum(s.weight for s in specs) <= 0:
            raise SearchError("retriever weights must not all be zero")
        method = request.fusion
        rrf_k, norm = request.rrf_k, request.normalization
    elif request.retriever == "hybrid":
        if not available:
            raise SearchError("this collection's index has no searchable kind")
        first_stage = [k for k in available if k not in recipe.late_kinds] or available
        specs = [
            RetrieverSpec(kind=k, weight=recipe.weights.get(k, recipe.default_weight))
            for k in first_stage
        ]
        method = request.fusion if "fusion" in explicit else recipe.fusion
        rrf_k = request.rrf_k if "rrf_k" in explicit else recipe.rrf_k
        norm = request.normalization if "normalization" in explicit else recipe.normalization
        specs = [s.model_copy(update={"k": recipe.depth}) for s in specs]
    else:
        specs = [RetrieverSpec(kind=request.retriever)]
        method, rrf_k, norm = request.fusion, request.rrf_k, request.normalization
    for spec in specs:
        if spec.kind not in available:
            raise SearchError(
                f"retriever {spec.kind!r} is not indexed in this collection; "
                f"available: {', '.join(available) or 'none'}, or hybrid"
            )
    if len(specs) == 1:
        method = "none"
    return Plan(specs, method, rrf_k, norm)


def rerank_stage(version: OpenVersion, request: SearchRequest, recipe: HybridRecipe = HYBRID) -> RerankSpec | None:
    """The request's rerank, or for a hybrid request that does not mention ``rerank``, the
    recipe's default when the version has a late-interaction kind to serve it."""
    if "rerank" in request.model_fields_set or request.retrievers or request.retriever != "hybrid":
        return request.rerank
    if recipe.rerank is not None and any(k in version.searchers for k in recipe.late_kinds):
        return recipe.rerank
    return None


def search(
    version: OpenVersion,
    request: SearchRequest,
    allowed: DocMask | None = None,
    hooks: Hooks | None = None,
    recipe: HybridRecipe = HYBRID,
) -> SearchOutcome:
    """One query: ``request.query``."""
    return search_batch(version, [request.query], request, allowed, hooks, recipe)


def search_batch(
    version: OpenVersion,
    queries: list[str],
    request: SearchRequest,
    allowed: DocMask | None = None,
    hooks: Hooks | None = None,
    recipe: HybridRecipe = HYBRID,
) -> SearchOutcome:
    """Run ``request`` (its settings; its ``query`` is ignored) for every query."""
    hooks = hooks or Hooks()
    # Without a rerank hook (library use, no service) there is no default rerank stage.
    rerank = rerank_stage(version, request, recipe) if hooks.rerank else request.rerank
    if rerank is not None and hooks.rerank is None:
        raise NotAvailable("rerank is not available for this collection")
    if request.min_relevance is not None and hooks.relevance is None:
        raise NotAvailable("min_relevance is not available for this collection")
    the_plan = plan(version, request, recipe)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (version.n_docs,):
            raise ValueError(f"allowed mask has shape {allowed.shape}, expected ({version.n_docs},)")
        if not allowed.any():
            return SearchOutcome([[] for _ in queries], {"total": _ms(started)})
    # How many fused hits the later stages need before the final cut.
    keep = max(request.k, rerank.top_n) if rerank else request.k

    per_kind: dict[str, list[list[Hit]]] = {}
    for spec in the_plan.specs:
        depth = keep if the_plan.fusion == "none" else spec.k or max(keep, DEFAULT_DEPTH)
        depth = min(depth, version.n_docs)
        t0 = time.perf_counter()
        per_kind[spec.kind] = version.searchers[spec.kind].search(queries, depth, allowed)
        timings[spec.kind] = _ms(t0)

    t0 = time.perf_counter()
    if the_plan.fusion == "none":
        fused = per_kind[the_plan.specs[0].kind]
    else:
        fused = [_fuse(version, the_plan, per_kind, qi) for qi in range(len(queries))]
        timings["fusion"] = _ms(t0)
    fused = [hits[:keep] for hits in fused]

    if rerank is not None:
        t0 = time.perf_counter()
        fused = [hooks.rerank(version, q, hits, rerank) for q, hits in zip(queries, fused, strict=True)]
        timings["rerank"] = _ms(t0)
    if request.min_relevance is not None:
        t0 = time.perf_counter()
        fused = [
            _keep_relevant(hooks.relevance(version, q, hits), hits, request.min_relevance)
            for q, hits in zip(queries, fused, strict=True)
        ]
        timings["relevance"] = _ms(t0)
    if request.min_score is not None:
        fused = [[h for h in hits if h.score >= request.min_score] for hits in fused]
    timings["total"] = _ms(started)
    return SearchOutcome([hits[: request.k] for hits in fused], timings)


def _fuse(version: OpenVersion, the_plan: Plan, per_kind: dict[str, list[list[Hit]]], qi: int) -> list[Hit]:
    """Fuse one query's lists over internal rows, so ties go to the lower row."""
    raw: dict[int, dict[str, float]] = {}
    lists: list[list[tuple[int, float]]] = []
    for spec in the_plan.specs:
        pairs = []
        for hit in per_kind[spec.kind][qi]:
            row = version.row_of(hit.doc_id)
            pairs.append((row, hit.score))
            raw.setdefault(row, {})[spec.kind] = hit.score
        lists.append(pairs)
    weights = [s.weight for s in the_plan.specs]
    if the_plan.fusion == "rrf":
        ranked = rrf(
            [[row for row, _ in pairs] for pairs in lists], weights, the_plan.rrf_k, tie_key=_row_key
        )
    elif the_plan.fusion == "convex":
        ranked = convex(lists, weights, the_plan.normalization, tie_key=_row_key)
    else:
        raise SearchError(f"unknown fusion {the_plan.fusion!r}; use rrf or convex")
    return [
        Hit(doc_id=str(version.doc_ids[row]), score=float(score), scores=dict(raw[row]))
        for row, score in ranked
    ]


def _keep_relevant(probabilities: Sequence[float], hits: list[Hit], threshold: float) -> list[Hit]:
    kept = []
    for p, hit in zip(probabilities, hits, strict=True):
        hit.scores["relevance"] = float(p)
        if p >= threshold:
            kept.append(hit)
    return kept


def _row_key(row: int) -> int:
    return row


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
