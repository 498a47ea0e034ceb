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
``<version>/calibration/<retriever>.json``.
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

FORMAT = 1
FEATURES = ("score", "minus_gap", "zscore", "minus_log_rank", "top", "mean", "std")
#: Features that grow with the hit's score inside one query: their weights stay >= 0.
MONOTONE = ("score", "minus_gap", "zscore", "minus_log_rank")


class CalibrationError(UserError, ValueError):
    """Training data a calibration cannot be fitted on, or a calibration file it cannot read."""


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
    same retriever (and depth) the calibrator was fitted on."""

    weights: np.ndarray
    bias: float
    center: np.ndarray
    spread: np.ndarray
    top_n: int
    meta: dict = field(default_factory=dict)

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
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Calibrator:
        if obj.get("format") != FORMAT or obj.get("features") != list(FEATURES):
            raise CalibrationError("calibration file has an unknown format or feature set")
        return cls(
            np.asarray(obj["weights"], float),
            float(obj["bias"]),
            np.asarray(obj["center"], float),
            np.asarray(obj["spread"], float),
            int(obj["top_n"]),
            obj.get("meta", {}),
        )

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        return cls.from_json(json.loads(Path(path).read_text()))


def calibration_path(version_dir: Path, retriever: str) -> Path:
    """Where a version keeps the calibrator of one retriever (a kind name or `hybrid`)."""
    if not retriever or "/" in retriever or retriever.startswith("."):
        raise ValueError(f"bad retriever name {retriever!r} for a calibration file")
    return Path(version_dir) / "calibration" / f"{retriever}.json"


def fit_calibration(
    run: dict[str, list[tuple[str, float]]],
    qrels: dict[str, dict[str, int]],
    top_n: int = 100,
    l2: float = 1e-3,
) -> Calibrator:
    """Fit on a run (qid -> [(doc_id, score)], the retriever's top hits per training query)
    and qrels (qid -> {doc_id: grade}; grade > 0 is relevant). Queries without qrels are
    skipped: unjudged is not the same as irrelevant for them."""
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
    return Calibrator(result.x[:n_feat], float(result.x[n_feat]), center, spread, top_n, meta)


def apply_relevance(
    hits: list[Hit], calibrator: Calibrator, min_relevance: float | None = None
) -> list[Hit]:
    """Annotate each hit with ``scores["relevance"]`` (its probability) and, when
    ``min_relevance`` is given, keep only hits at or above it (order unchanged). Pass the
    query's whole candidate list (the depth the calibrator was fitted on, e.g. 100) *before*
    cutting to k: the query's score statistics come from that list."""
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
