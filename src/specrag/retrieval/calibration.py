"""Calibrated relevance: a retriever's raw scores -> probability of relevance.

Raw cosine or fused scores mean different things for different queries, so one global
threshold keeps too much for some queries and too little for others. Following the idea of
the Cosine Adapter ("Relevance Filtering for Embedding-based Retrieval"), the mapping is
query-dependent: a logistic model over features of each hit *and* of its query's score
list, fitted on training queries with qrels:

    score, score - top score, z-score within the query's top-N, -log(1 + rank),
    and the query's top score, mean and std of its top-N.

Monotone in the score for a fixed query, by construction: every feature that moves with the
score is oriented to grow with it and gets a non-negative weight (bounded L-BFGS in scipy),
and ties share the lower rank. Saved as JSON (atomically) inside the version directory,
``<version>/calibration/<key>.json``, one file per scoring pipeline (``pipeline.py``
``calibration_key``: ``bm25``, ``dense``, ``bm25+dense-convex``, ``...-maxsim``).

A probability must not depend on the request's ``k``, nor be read off another retriever's
scores. So a calibrator records the pipeline whose scores it was fitted on (``pipeline``:
retrievers, weights, fusion and its settings, PRF, rerank; ``pipeline.py``
``scores_record``) and the candidate depth (``top_n``, the hits per query it was fitted
on); it refuses scores of any other pipeline (``check_pipeline``), and the relevance stage
sees the same ``top_n`` fused hits whatever ``k`` is, ``k`` being at most ``top_n``. Files
written before the record (format 1) are refused with the advice to calibrate again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import rankdata

from specrag.atomic import write_json_atomic
from specrag.errors import UserError
from specrag.types import Hit

FORMAT = 2
RECALIBRATE = "re-run `specrag calibrate` for this retriever"
FEATURES = ("score", "minus_gap", "zscore", "minus_log_rank", "top", "mean", "std")
#: Features that grow with the hit's score inside one query: their weights stay >= 0.
MONOTONE = ("score", "minus_gap", "zscore", "minus_log_rank")


class CalibrationError(UserError, ValueError):
    """Training data a calibration cannot be fitted on, or a calibration file it cannot read."""


class CalibrationMismatch(CalibrationError):
    """A calibration asked to turn into probabilities the scores of a pipeline (retriever,
    fusion, rerank, depth) it was not fitted on."""


def query_features(scores: np.ndarray, top_n: int) -> np.ndarray:
    """(n, len(FEATURES)) features of one query's hits, from that query's scores only.
    Query statistics use its ``top_n`` best scores; ranks are 1-based, ties share the lowest."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores of one query must be 1-D, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (drop -inf hits before calibrating)")
    if len(s) == 0:
        return np.zeros((0, len(FEATURES)))
    head = np.sort(s)[::-1][:top_n]
    top, mean, std = head[0], head.mean(), head.std()
    rank = rankdata(-s, method="min")
    return np.column_stack(
        [
            s,
            s - top,
            (s - mean) / (std + 1e-6),
            -np.log1p(rank),
            np.full_like(s, top),
            np.full_like(s, mean),
            np.full_like(s, std),
        ]
    )


@dataclass
class Calibrator:
    """``predict(scores of one query) -> probabilities``; the scores must come from the
    pipeline it was fitted on (``pipeline``, checked by ``check_pipeline``), its top
    ``top_n`` hits per query."""

    weights: np.ndarray
    bias: float
    center: np.ndarray
    spread: np.ndarray
    top_n: int
    meta: dict = field(default_factory=dict)
    #: The scoring pipeline the calibrator was fitted on (``pipeline.scores_record``).
    pipeline: dict = field(default_factory=dict)

    def check_pipeline(self, record: dict, k: int | None = None) -> None:
        """Refuse scores of another pipeline than the fitted one, and a ``k`` beyond the
        fitted depth (below it, hits have no calibrated probability)."""
        if record != self.pipeline:
            raise CalibrationMismatch(
                f"the calibration was fitted on {describe_pipeline(self.pipeline)}, not on "
                f"{describe_pipeline(record)}; calibrate this retriever with `specrag "
                "calibrate` (its --retriever and --rerank settings)"
            )
        if k is not None and k > self.top_n:
            raise CalibrationMismatch(
                f"k={k} is beyond the depth the calibration was fitted on ({self.top_n} hits "
                f"per query); ask k <= {self.top_n} or calibrate with --depth {k}"
            )

    def predict(self, scores: np.ndarray) -> np.ndarray:
        x = (query_features(scores, self.top_n) - self.center) / self.spread
        return expit(x @ self.weights + self.bias)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "features": list(FEATURES),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "center": self.center.tolist(),
            "spread": self.spread.tolist(),
            "top_n": self.top_n,
            "pipeline": self.pipeline,
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Calibrator:
        if obj.get("format") == 1 or (obj.get("format") == FORMAT and not obj.get("pipeline")):
            raise CalibrationError(
                "this calibration file was written without a record of the retriever it was "
                f"fitted on, so it cannot be checked against a search's scores: {RECALIBRATE}"
            )
        if obj.get("format") != FORMAT or obj.get("features") != list(FEATURES):
            raise CalibrationError(
                f"calibration file has an unknown format or feature set: {RECALIBRATE}"
            )
        return cls(
            np.asarray(obj["weights"], float),
            float(obj["bias"]),
            np.asarray(obj["center"], float),
            np.asarray(obj["spread"], float),
            int(obj["top_n"]),
            obj.get("meta", {}),
            obj["pipeline"],
        )

    def save(self, path: Path) -> None:
        if not self.pipeline:
            raise ValueError("a calibration is saved with the record of its pipeline")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        return cls.from_json(json.loads(Path(path).read_text()))


def describe_pipeline(record: dict) -> str:
    """A scoring pipeline in words, for error messages."""
    if not record:
        return "an unrecorded pipeline"
    kinds = "+".join(
        r["kind"] if "weight" not in r else f"{r['kind']}:{r['weight']:g}"
        for r in record.get("retrievers", [])
    )
    words = [kinds]
    if record.get("fusion", "none") != "none":
        words.append(f"fused by {record['fusion']}")
        words += [f"{key} {record[key]}" for key in ("normalization", "rrf_k") if key in record]
    if record.get("prf"):
        words.append(f"bm25 PRF {record['prf']}")
    if record.get("rerank"):
        words.append(f"reranked by {record['rerank'].get('method')}")
    return ", ".join(words)


def calibration_path(version_dir: Path, key: str) -> Path:
    """Where a version keeps the calibrator of one scoring pipeline (``pipeline.py``
    ``calibration_key``: a kind name, ``bm25+dense-convex``, ...)."""
    if not key or "/" in key or key.startswith("."):
        raise ValueError(f"bad calibration key {key!r} for a calibration file")
    return Path(version_dir) / "calibration" / f"{key}.json"


def fit_calibration(
    run: dict[str, list[tuple[str, float]]],
    qrels: dict[str, dict[str, int]],
    top_n: int = 100,
    l2: float = 1e-3,
    pipeline: dict | None = None,
) -> Calibrator:
    """Fit on a run (qid -> [(doc_id, score)], the retriever's top hits per training query)
    and qrels (qid -> {doc_id: grade}; grade > 0 is relevant), recording ``pipeline`` (the
    ``scores_record`` of the search that made the run). Queries without qrels are skipped:
    unjudged is not the same as irrelevant for them."""
    xs, ys = [], []
    for qid, hits in run.items():
        if qid not in qrels or not hits:
            continue
        hits = sorted(hits, key=lambda h: -h[1])[:top_n]
        xs.append(query_features(np.array([s for _, s in hits]), top_n))
        ys.append(np.array([qrels[qid].get(d, 0) > 0 for d, _ in hits], dtype=np.float64))
    if not xs:
        raise CalibrationError("no training query of the run has qrels")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if y.min() == y.max():
        raise CalibrationError("calibration needs both relevant and non-relevant hits in the run")
    center, spread = x.mean(axis=0), x.std(axis=0)
    spread[spread < 1e-12] = 1.0
    xn = (x - center) / spread
    n_feat = xn.shape[1]

    def loss(theta):
        w, b = theta[:n_feat], theta[n_feat]
        z = xn @ w + b
        p = expit(z)
        nll = np.mean(np.logaddexp(0.0, z) - y * z)
        grad_z = (p - y) / len(y)
        return nll + l2 * w @ w, np.concatenate([xn.T @ grad_z + 2 * l2 * w, [grad_z.sum()]])

    bounds = [(0.0, None) if f in MONOTONE else (None, None) for f in FEATURES] + [(None, None)]
    result = minimize(loss, np.zeros(n_feat + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    if not result.success:
        raise RuntimeError(f"calibration fit did not converge: {result.message}")
    meta = {
        "n_queries": len(xs),
        "n_hits": len(y),
        "positive_rate": float(y.mean()),
        "log_loss": float(result.fun),
    }
    return Calibrator(
        result.x[:n_feat], float(result.x[n_feat]), center, spread, top_n, meta, pipeline or {}
    )


def apply_relevance(
    hits: list[Hit], calibrator: Calibrator, min_relevance: float | None = None
) -> list[Hit]:
    """Annotate each hit with ``scores["relevance"]`` (its probability) and, when
    ``min_relevance`` is given, keep only hits at or above it (order unchanged). Pass the
    query's whole candidate list (the depth the calibrator was fitted on, e.g. 100) *before*
    cutting to k: the query's score statistics come from that list (the relevance stage
    does this; the pipeline keeps ``top_n`` hits before it whatever ``k`` is)."""
    if min_relevance is not None and not 0.0 <= min_relevance <= 1.0:
        raise ValueError(f"min_relevance must be in [0, 1], got {min_relevance}")
    if not hits:
        return []
    probs = calibrator.predict(np.array([h.score for h in hits], dtype=np.float64))
    out = []
    for hit, p in zip(hits, probs.tolist(), strict=True):
        if min_relevance is None or p >= min_relevance:
            out.append(Hit(hit.doc_id, hit.score, {**hit.scores, "relevance": p}))
    return out


class RelevanceStage:
    """The pipeline stage behind ``min_relevance`` (the ``Stage`` contract): annotates each
    hit with its calibrated probability and keeps those at or above the threshold. It sees
    the calibrator's whole fitting depth (``top_n``) whatever the request's ``k``, so a
    hit's probability does not depend on ``k``."""

    name = "relevance"

    def __init__(self, calibrator: Calibrator, min_relevance: float | None):
        self.calibrator = calibrator
        self.min_relevance = min_relevance
        self.depth = calibrator.top_n

    def __call__(self, version, queries: list[str], hits: list[list[Hit]]) -> list[list[Hit]]:
        return [apply_relevance(h, self.calibrator, self.min_relevance) for h in hits]
