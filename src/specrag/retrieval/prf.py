"""RM3 pseudo-relevance feedback for the ``bm25`` retriever (opt-in: ``"prf"`` in a search).

The relevance model of Lavrenko and Croft, interpolated with the query as Anserini's RM3
does it: the query's top ``fb_docs`` documents (a first bm25 pass) vote for terms, each with
its term distribution ``tf(t, D) / |D|`` weighted by its share of the documents' bm25 scores;
the ``fb_terms`` terms with the most votes, renormalized, are mixed with the query's own
distribution ``qtf(t) / |Q|`` as ``orig_weight * query + (1 - orig_weight) * feedback``, and
the weighted query is searched again through the same impact index (BMP or exhaustive).

``feedback="fused"`` takes the feedback documents from the fused hybrid list instead of
bm25's own first pass (each weighted by its fused score above the list's lowest): documents
the dense retriever found and bm25 missed then lend their terms, and bm25 is searched again
and fused again (``pipeline.search_batch``). Measured across collections in
``docs/benchmarks.md`` ("Relevance defaults chosen leave-one-collection-out").

Documents are re-analyzed from their texts with the bm25 kind's own analyzer: the impact
index keeps quantized BM25 weights per term, not term frequencies, and no forward index.
Weights are scaled by ``|Q|`` so that ``orig_weight=1`` is exactly plain bm25 (each query
term weighted by its frequency, as ``BM25Searcher.encode_queries`` does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from specrag.retrieval.request import PrfSpec
from specrag.types import DocMask, Hit

#: The kind PRF applies to: it needs the searcher's analyzer and weighted-term search.
PRF_KIND = "bm25"


def rm3_weights(
    query_terms: Sequence[str],
    feedback: Sequence[tuple[float, Sequence[str]]],
    fb_terms: int,
    orig_weight: float,
) -> dict[str, float]:
    """The expanded query, term -> weight, from the query's analyzed terms and its feedback
    documents as (bm25 score, analyzed terms). Ties among expansion terms go to the
    lexicographically smaller term, so the expansion is deterministic."""
    counts = Counter(query_terms)
    total = sum(counts.values())
    if total == 0:
        return {}
    expanded = {t: orig_weight * c for t, c in counts.items()}
    mass = sum(max(score, 0.0) for score, _ in feedback)
    votes: Counter[str] = Counter()
    if orig_weight < 1 and mass > 0:
        for score, terms in feedback:
            if terms and score > 0:
                share = score / mass / len(terms)
                for term, tf in Counter(terms).items():
                    votes[term] += share * tf
    top = sorted(votes.items(), key=lambda item: (-item[1], item[0]))[:fb_terms]
    kept = sum(v for _, v in top)
    for term, vote in top:
        expanded[term] = expanded.get(term, 0.0) + (1 - orig_weight) * total * vote / kept
    return {t: w for t, w in expanded.items() if w > 0}


def prf_search(
    searcher,
    queries: list[str],
    k: int,
    allowed: DocMask | None,
    spec: PrfSpec,
    texts: Callable[[list[str]], list[str]],
) -> list[list[Hit]]:
    """bm25 with RM3 feedback from its own first pass: the top ``spec.fb_docs`` documents,
    their ``texts`` (doc ids -> texts) re-analyzed, then the expanded queries searched for
    ``k`` hits (the ``allowed`` mask applies to both passes)."""
    first = searcher.search(queries, spec.fb_docs, allowed)
    return expanded_search(searcher, queries, first, k, allowed, spec, texts)


def fused_feedback(fused: Sequence[Hit], fb_docs: int) -> list[Hit]:
    """The top ``fb_docs`` of a fused list as feedback, each scored by its fused score
    above the list's lowest one (so every fusion, RRF, min-max or z-score, gives
    non-negative shares that keep the fused order)."""
    if not fused:
        return []
    floor = min(h.score for h in fused)
    return [Hit(doc_id=h.doc_id, score=h.score - floor) for h in fused[:fb_docs]]


def expanded_search(
    searcher,
    queries: list[str],
    feedback: Sequence[Sequence[Hit]],
    k: int,
    allowed: DocMask | None,
    spec: PrfSpec,
    texts: Callable[[list[str]], list[str]],
) -> list[list[Hit]]:
    """Each query expanded by RM3 from its ``feedback`` hits (doc id and weight), searched
    for ``k`` hits through the bm25 impact index."""
    ids = list(dict.fromkeys(h.doc_id for hits in feedback for h in hits))
    terms_of = dict(zip(ids, (searcher.analyze(t) for t in texts(ids)), strict=True))
    expanded = [
        rm3_weights(
            searcher.analyze(query),
            [(h.score, terms_of[h.doc_id]) for h in hits[: spec.fb_docs]],
            spec.fb_terms,
            spec.orig_weight,
        )
        for query, hits in zip(queries, feedback, strict=True)
    ]
    return searcher.search_weighted(expanded, k, allowed)
