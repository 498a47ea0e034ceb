"""Retrieval evaluation with ir-measures, and TREC run files.

Runs are ``{query_id: [Hit, ...]}`` in rank order. ir-measures sorts by score and breaks
ties its own way, so the run handed to it carries rank-derived scores (strictly
decreasing) and the measures see exactly our order; the TREC file keeps the real scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import ir_measures
from ir_measures import RR, R, nDCG

from specrag.atomic import write_text_atomic
from specrag.errors import UserError
from specrag.types import Hit

#: The measures reported everywhere: nDCG@10, Recall@100, MRR@10.
MEASURES = {"nDCG@10": nDCG @ 10, "R@100": R @ 100, "MRR@10": RR @ 10}

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[Hit]]


def judged_queries(queries: Mapping[str, str], qrels: Qrels) -> tuple[dict[str, str], int]:
    """The queries that have at least one judgment, and how many were skipped."""
    kept = {qid: text for qid, text in queries.items() if qrels.get(qid)}
    return kept, len(queries) - len(kept)


def evaluate(run: Run, qrels: Qrels) -> dict[str, float]:
    """Mean nDCG@10, R@100 and MRR@10 over the run's queries that have judgments
    (a judged query missing from the run counts as 0, as in trec_eval -c)."""
    judged = {qid: dict(rels) for qid, rels in qrels.items() if qid in run and rels}
    if not judged:
        raise EvaluationError("no query of the run has relevance judgments")
    ranked = {
        qid: {hit.doc_id: float(len(hits) - i) for i, hit in enumerate(hits)}
        for qid, hits in run.items()
        if qid in judged
    }
    per_query: dict[str, dict[str, float]] = {name: {} for name in MEASURES}
    names = {measure: name for name, measure in MEASURES.items()}
    for metric in ir_measures.iter_calc(list(MEASURES.values()), judged, ranked):
        per_query[names[metric.measure]][metric.query_id] = metric.value
    return {
        name: sum(values.get(qid, 0.0) for qid in judged) / len(judged)
        for name, values in per_query.items()
    }


class EvaluationError(UserError, ValueError):
    """Runs and judgments that cannot be evaluated together."""


class TrecFormatError(UserError, ValueError):
    """A run the TREC format cannot hold: its columns are whitespace-separated, so an id
    or tag with whitespace in it would shift them."""


def write_trec_run(path: Path, run: Run, tag: str = "specrag", depth: int = 1000) -> None:
    """Write ``qid Q0 docid rank score tag`` lines (top ``depth`` per query), atomically.
    Raises TrecFormatError (writing nothing) when an id or the tag holds whitespace."""
    lines = []
    _check_trec_field("tag", tag)
    for qid, hits in run.items():
        _check_trec_field("query id", qid)
        for rank, hit in enumerate(hits[:depth], start=1):
            _check_trec_field("document id", hit.doc_id)
            lines.append(f"{qid} Q0 {hit.doc_id} {rank} {hit.score:.6f} {tag}")
    write_text_atomic(Path(path), "\n".join(lines) + ("\n" if lines else ""))


def _check_trec_field(what: str, value: str) -> None:
    if not value or any(ch.isspace() for ch in value):
        raise TrecFormatError(
            f"{what} {value!r} is empty or holds whitespace, which a TREC run file cannot "
            "hold (its columns are whitespace-separated); no run file was written"
        )
