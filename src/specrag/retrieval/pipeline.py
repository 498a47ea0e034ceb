"""The search pipeline over one opened version: retrievers -> fusion -> stages -> cut-offs.

``search_batch(version, queries, request, allowed, stages)`` runs every first-stage
retriever the request names (one batched call per index kind, the DocMask applied inside
each search), fuses their lists, runs the later ``stages`` in order (rerank, calibrated
relevance: ``retrieval/stages.py``), applies ``min_score`` and cuts to ``k``. Every hit keeps
each retriever's raw score in ``Hit.scores``.

Which retrievers run (``plan``):
- ``retrievers=[...]``: exactly those kinds, with their weights and candidate depths;
- ``retriever="<kind>"``: that kind alone, its raw scores unchanged;
- ``retriever="hybrid"`` (default): the recipe (``retrieval/recipe.py``) over the version's
  searchable kinds except the late-interaction ones. Explicitly set request fields
  ``fusion``/``rrf_k``/``normalization`` override it.

Which rerank runs (``rerank_spec``): the request's, or for a hybrid request that does not
mention ``rerank``, the recipe's default when the version has a late-interaction kind.

Options that need more than the index are lent by the service: ``texts`` (documents' texts,
for bm25 RM3 feedback, ``prf.py``) and ``calibrators`` (per-kind calibrations, for
``fusion="calibrated"``: each retriever's probability of relevance is fused instead of its
normalized score). ``scores_record`` says which pipeline made a request's scores: what a
calibration records and is checked against (``calibration.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from specrag.errors import UserError
from specrag.indexing.registry import searchable
from specrag.retrieval.calibration import Calibrator
from specrag.retrieval.fusion import convex, rrf
from specrag.retrieval.prf import PRF_KIND, expanded_search, fused_feedback, prf_search
from specrag.retrieval.recipe import HYBRID, Recipe
from specrag.retrieval.request import RerankSpec, RetrieverSpec, SearchRequest
from specrag.retrieval.stages import Stage, TextSource
from specrag.retrieval.version import OpenVersion
from specrag.types import DocMask, Hit


class SearchError(UserError, ValueError):
    """A request that cannot run against this collection (a client error, HTTP 400)."""


class NotAvailable(SearchError):
    """A feature (rerank, min_relevance) that this collection or service does not offer."""


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


def plan(version: OpenVersion, request: SearchRequest, recipe: Recipe = HYBRID) -> Plan:
    """Resolve the request's retriever choice against the kinds this version holds."""
    available = searchable(version.searchers)
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
        specs = [RetrieverSpec(kind=k, weight=recipe.weight(k)) for k in first_stage]
        method = request.fusion if "fusion" in explicit else recipe.fusion
        rrf_k = request.rrf_k if "rrf_k" in explicit else recipe.rrf_k
        norm = request.normalization if "normalization" in explicit else recipe.normalization
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
    if request.prf is not None and PRF_KIND not in [s.kind for s in specs]:
        raise SearchError(f"prf expands {PRF_KIND} queries: this search has no {PRF_KIND}")
    if request.prf is not None and request.prf.feedback == "fused" and method == "calibrated":
        raise SearchError(
            'prf feedback "fused" needs fusion rrf or convex (a calibrated fusion fuses '
            "per-kind calibrations fitted on bm25's own feedback)"
        )
    return Plan(specs, method, rrf_k, norm)


def scores_record(version: OpenVersion, request: SearchRequest, recipe: Recipe = HYBRID) -> dict:
    """Everything that makes ``request``'s final scores on ``version``, except the depth:
    the retrievers (with weights and candidate depths when fused), the fusion and its
    settings, bm25 PRF, the rerank and its fusion weights. A calibration records it and
    is only applied to scores with the same record."""
    the_plan = plan(version, request, recipe)
    fused = the_plan.fusion != "none"
    record: dict = {
        "retrievers": [
            {"kind": s.kind, "weight": s.weight, "k": s.k} if fused else {"kind": s.kind}
            for s in the_plan.specs
        ],
        "fusion": the_plan.fusion,
    }
    if the_plan.fusion == "rrf":
        record["rrf_k"] = the_plan.rrf_k
    if the_plan.fusion == "convex":
        record["normalization"] = the_plan.normalization
    if request.prf is not None:
        record["prf"] = request.prf.model_dump()
        # bm25's own feedback (what "fused" is without a fusion) is recorded as before the
        # field existed, so calibrations fitted then still apply.
        if request.prf.feedback == "bm25" or the_plan.fusion == "none":
            del record["prf"]["feedback"]
    spec = rerank_spec(version, request, recipe)
    if spec is not None:
        record["rerank"] = spec.model_dump()
        if spec.method == "maxsim":
            record["rerank"]["fusion"] = dict(recipe.maxsim_fusion)
    return record


def calibration_key(record: dict) -> str:
    """The file name of the calibration of a scoring pipeline (``scores_record``): the
    kinds, then the fusion, ``prf`` (``prf-fused`` for feedback from the fused list) and the
    rerank method, e.g. ``bm25``, ``bm25-prf``, ``bm25+dense-convex-prf-fused``,
    ``bm25+dense-convex-maxsim``. Weights and depths are not in the name; a calibration
    fitted with others is refused by its record."""
    parts = ["+".join(r["kind"] for r in record["retrievers"])]
    if record["fusion"] != "none":
        parts.append(record["fusion"])
    if "prf" in record:
        parts.append("prf-fused" if record["prf"].get("feedback") == "fused" else "prf")
    if "rerank" in record:
        parts.append(record["rerank"]["method"])
    return "-".join(parts)


def kind_request(request: SearchRequest, kind: str) -> SearchRequest:
    """The single-retriever search of ``kind`` inside ``request``'s fusion (its PRF when
    the kind is bm25): what a per-kind calibration for ``fusion="calibrated"`` is fitted on."""
    return SearchRequest(
        query=request.query,
        k=request.k,
        retriever=kind,
        prf=request.prf if kind == PRF_KIND else None,
        rerank=None,
    )


def rerank_spec(
    version: OpenVersion, request: SearchRequest, recipe: Recipe = HYBRID
) -> RerankSpec | None:
    """The request's rerank, or for a hybrid request that does not mention ``rerank``, the
    recipe's default when the version has a late-interaction kind to serve it."""
    if "rerank" in request.model_fields_set or request.retrievers or request.retriever != "hybrid":
        return request.rerank
    if recipe.rerank is not None and any(k in version.searchers for k in recipe.late_kinds):
        return recipe.rerank
    return None


def search_batch(
    version: OpenVersion,
    queries: list[str],
    request: SearchRequest,
    allowed: DocMask | None = None,
    stages: Sequence[Stage] = (),
    recipe: Recipe = HYBRID,
    texts: TextSource | None = None,
    calibrators: Mapping[str, Calibrator] | None = None,
) -> SearchOutcome:
    """Run ``request`` (its settings; its ``query`` is ignored) for every query.
    ``texts`` serve bm25 PRF; ``calibrators`` (kind -> calibration of that kind alone)
    serve ``fusion="calibrated"``."""
    the_plan = plan(version, request, recipe)
    calibrators = calibrators or {}
    if the_plan.fusion == "calibrated":
        missing = [s.kind for s in the_plan.specs if s.kind not in calibrators]
        if missing:
            raise NotAvailable(
                "fusion calibrated needs a calibration of each fused retriever; missing: "
                f"{', '.join(missing)} (run `specrag calibrate --retriever KIND` for each)"
            )
        short = [s.kind for s in the_plan.specs if s.k and s.k < calibrators[s.kind].top_n]
        if short:
            raise SearchError(
                f"fusion calibrated: retrievers {short} give fewer candidates (k) than their "
                "calibration's depth; leave their k out"
            )
    if request.prf is not None and texts is None:
        raise NotAvailable("prf is not available here: it needs the documents' texts")
    names = {stage.name for stage in stages}
    if request.min_relevance is not None and "relevance" not in names:
        raise NotAvailable("min_relevance is not available here: it needs a calibrated collection")
    if (
        "rerank" in request.model_fields_set
        and request.rerank is not None
        and "rerank" not in names
    ):
        raise NotAvailable("rerank is not available here")
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != (version.n_docs,):
            raise ValueError(
                f"allowed mask has shape {allowed.shape}, expected ({version.n_docs},)"
            )
        if not allowed.any():
            return SearchOutcome([[] for _ in queries], {"total": _ms(started)})
    # How many fused hits the later stages need before the final cut.
    keep = max([request.k, *(stage.depth for stage in stages)])

    # PRF from the fused list: every kind searches plainly first, bm25 again after fusion.
    fused_prf = (
        request.prf is not None and request.prf.feedback == "fused" and the_plan.fusion != "none"
    )
    per_kind: dict[str, list[list[Hit]]] = {}
    depths: dict[str, int] = {}
    for spec in the_plan.specs:
        # A fused kind gives its spec's k, else at least the recipe's depth and ``keep``
        # (and its calibration's depth when fused by calibrated relevance).
        floor = calibrators[spec.kind].top_n if the_plan.fusion == "calibrated" else 0
        depth = keep if the_plan.fusion == "none" else spec.k or max(recipe.depth, keep, floor)
        depth = depths[spec.kind] = min(depth, version.n_docs)
        t0 = time.perf_counter()
        searcher = version.searchers[spec.kind]
        expands = request.prf is not None and spec.kind == PRF_KIND
        if expands and not hasattr(searcher, "search_weighted"):
            raise NotAvailable("prf is not available on this version's bm25 (sharded)")
        if expands and not fused_prf:
            per_kind[spec.kind] = prf_search(
                searcher, queries, depth, allowed, request.prf, lambda ids: texts(version, ids)
            )
        else:
            per_kind[spec.kind] = searcher.search(queries, depth, allowed)
        timings[spec.kind] = _ms(t0)

    t0 = time.perf_counter()
    if the_plan.fusion == "none":
        fused = [hits[:keep] for hits in per_kind[the_plan.specs[0].kind]]
    else:
        # The whole fused list only where PRF's feedback weights need its lowest score.
        limit = None if fused_prf else keep
        fused = [_fuse(version, the_plan, per_kind, qi, calibrators, limit) for qi in range(len(queries))]  # fmt: skip  # noqa: E501
        timings["fusion"] = _ms(t0)
    if fused_prf:
        t0 = time.perf_counter()
        feedback = [fused_feedback(hits, request.prf.fb_docs) for hits in fused]
        per_kind[PRF_KIND] = expanded_search(
            version.searchers[PRF_KIND], queries, feedback, depths[PRF_KIND], allowed,
            request.prf, lambda ids: texts(version, ids),
        )  # fmt: skip
        fused = [_fuse(version, the_plan, per_kind, qi, calibrators, keep) for qi in range(len(queries))]  # fmt: skip  # noqa: E501
        timings["prf"] = _ms(t0)

    for stage in stages:
        t0 = time.perf_counter()
        fused = stage(version, queries, fused)
        timings[stage.name] = _ms(t0)
    # A hit whose final score is not finite could not match (-inf): never one to return
    # (JSON has no -inf; it would come back as "score": null).
    fused = [[h for h in hits if math.isfinite(h.score)] for hits in fused]
    if request.min_score is not None:
        fused = [[h for h in hits if h.score >= request.min_score] for hits in fused]
    timings["total"] = _ms(started)
    return SearchOutcome([hits[: request.k] for hits in fused], timings)


def search(
    version: OpenVersion,
    request: SearchRequest,
    allowed: DocMask | None = None,
    stages: Sequence[Stage] = (),
    recipe: Recipe = HYBRID,
    texts: TextSource | None = None,
    calibrators: Mapping[str, Calibrator] | None = None,
) -> SearchOutcome:
    """One query: ``request.query``."""
    return search_batch(
        version, [request.query], request, allowed, stages, recipe, texts, calibrators
    )


def _fuse(
    version: OpenVersion,
    the_plan: Plan,
    per_kind: dict[str, list[list[Hit]]],
    qi: int,
    calibrators: Mapping[str, Calibrator],
    limit: int | None,
) -> list[Hit]:
    """Fuse one query's lists over internal rows, so ties go to the lower row; the best
    ``limit`` hits (all when None)."""
    row_of = version.row_of
    lists = [[(row_of(h.doc_id), h.score) for h in per_kind[s.kind][qi]] for s in the_plan.specs]
    # Each kind's raw scores, looked up only for the hits returned.
    raw = [(spec.kind, dict(pairs)) for spec, pairs in zip(the_plan.specs, lists, strict=True)]
    weights = [s.weight for s in the_plan.specs]
    if the_plan.fusion == "rrf":
        ranked = rrf(
            [[row for row, _ in pairs] for pairs in lists], weights, the_plan.rrf_k, tie_key=int
        )
    elif the_plan.fusion == "convex":
        ranked = convex(lists, weights, the_plan.normalization, tie_key=int)
    elif the_plan.fusion == "calibrated":
        # Each list's scores as its retriever's probabilities of relevance (its whole list:
        # the calibration's query statistics), fused as they are: a weighted mean.
        probabilities = []
        for spec, pairs in zip(the_plan.specs, lists, strict=True):
            scores = np.array([s for _, s in pairs], dtype=np.float64)
            p = np.zeros(len(scores))  # a hit that cannot match (-inf): probability 0
            finite = np.isfinite(scores)
            if finite.any():
                p[finite] = calibrators[spec.kind].predict(scores[finite])
            probabilities.append(list(zip([row for row, _ in pairs], p.tolist(), strict=True)))
        ranked = convex(probabilities, weights, "none", tie_key=int)
    else:
        raise SearchError(f"unknown fusion {the_plan.fusion!r}; use rrf, convex or calibrated")
    return [
        Hit(
            doc_id=str(version.doc_ids[row]),
            score=float(score),
            scores={kind: table[row] for kind, table in raw if row in table},
        )
        for row, score in ranked[:limit]
    ]


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
