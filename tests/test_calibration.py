"""Calibrated relevance: probabilities in [0, 1], monotone in the score for a fixed query,
and on synthetic data drawn from a known query-dependent rule the fit recovers that rule."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from specrag.retrieval.calibration import Calibrator, calibration_path, fit_calibration

#: The scores_record of a plain dense search (retrieval/pipeline.py).
DENSE = {"retrievers": [{"kind": "dense"}], "fusion": "none"}


def true_probability(scores: np.ndarray) -> np.ndarray:
    """The known rule: relevance depends on the gap to the query's top score, not on the
    raw score (whose level shifts from query to query)."""
    return expit(3.0 + 25.0 * (scores - scores.max()))


def synthetic_run(n_queries: int, seed: int):
    rng = np.random.default_rng(seed)
    run, qrels, truth = {}, {}, {}
    for q in range(n_queries):
        level = rng.uniform(0.2, 0.7)  # the query's own score level
        scores = np.sort(level + rng.normal(0, 0.08, size=60))[::-1]
        p = true_probability(scores)
        rel = rng.random(len(p)) < p
        qid = f"q{q}"
        run[qid] = [(f"{qid}-d{i}", float(s)) for i, s in enumerate(scores)]
        qrels[qid] = {f"{qid}-d{i}": 1 for i in np.flatnonzero(rel)}
        truth[qid] = p
    return run, qrels, truth


@pytest.fixture(scope="module")
def fitted():
    run, qrels, _ = synthetic_run(600, seed=0)
    return fit_calibration(run, qrels, top_n=60, pipeline=DENSE)


def test_recovers_the_known_rule(fitted):
    run, _, truth = synthetic_run(200, seed=1)
    err = [np.abs(fitted.predict(np.array([s for _, s in run[q]])) - truth[q]) for q in run]
    assert np.mean(np.concatenate(err)) < 0.04
    # and a raw-score rule would not do: the same raw score means different things
    raw = np.concatenate([[s for _, s in run[q]] for q in run])
    p = np.concatenate(list(truth.values()))
    assert np.corrcoef(raw, p)[0, 1] < 0.8


def test_probabilities_are_in_unit_interval_and_monotone_in_score(fitted):
    rng = np.random.default_rng(2)
    for _ in range(50):
        scores = rng.normal(rng.uniform(-3, 3), rng.uniform(0.01, 2), size=int(rng.integers(1, 80)))
        p = fitted.predict(scores)
        assert ((p >= 0) & (p <= 1)).all()
        order = np.argsort(scores, kind="stable")
        assert (np.diff(p[order]) >= -1e-12).all()
    ties = fitted.predict(np.array([0.5, 0.5, 0.4]))
    assert ties[0] == ties[1]


def test_save_and_load_round_trip(tmp_path, fitted):
    path = calibration_path(tmp_path / "version", "dense")
    fitted.save(path)
    assert path == tmp_path / "version" / "calibration" / "dense.json"
    again = Calibrator.load(path)
    scores = np.array([0.9, 0.5, 0.45, 0.1])
    np.testing.assert_allclose(again.predict(scores), fitted.predict(scores))
    assert again.meta["n_queries"] == 600


def test_bad_input_is_refused(fitted):
    with pytest.raises(ValueError, match="finite"):
        fitted.predict(np.array([0.3, -np.inf]))
    with pytest.raises(ValueError, match="qrels"):
        fit_calibration({"a": [("d", 1.0)]}, {"b": {"d": 1}})
    with pytest.raises(ValueError, match="both"):
        fit_calibration({"a": [("d", 1.0), ("e", 0.5)]}, {"a": {"d": 1, "e": 1}})
    with pytest.raises(ValueError, match="calibration key"):
        calibration_path("v", "../x")


def test_apply_relevance_annotates_and_filters(fitted):
    from specrag.retrieval.calibration import apply_relevance
    from specrag.types import Hit

    scores = np.linspace(0.9, 0.2, 30)
    hits = [Hit(f"d{i}", float(s), {"dense": float(s)}) for i, s in enumerate(scores)]
    probs = fitted.predict(scores)
    kept = apply_relevance(hits, fitted, 0.5)
    assert [h.doc_id for h in kept] == [f"d{i}" for i in np.flatnonzero(probs >= 0.5)]
    assert 0 < len(kept) < len(hits)
    assert all(h.scores["relevance"] >= 0.5 and "dense" in h.scores for h in kept)
    assert len(apply_relevance(hits, fitted)) == len(hits)
    with pytest.raises(ValueError, match="min_relevance"):
        apply_relevance(hits, fitted, 1.5)


def test_a_calibration_refuses_another_pipeline_and_a_k_beyond_its_depth(fitted):
    from specrag.errors import UserError
    from specrag.retrieval.calibration import CalibrationMismatch

    fitted.check_pipeline(dict(DENSE), k=60)  # its own pipeline, k up to its depth
    bm25 = {"retrievers": [{"kind": "bm25"}], "fusion": "none"}
    with pytest.raises(CalibrationMismatch, match="fitted on dense, not on bm25"):
        fitted.check_pipeline(bm25)
    with pytest.raises(CalibrationMismatch, match="beyond the depth"):
        fitted.check_pipeline(dict(DENSE), k=61)
    assert issubclass(CalibrationMismatch, UserError)


def test_a_file_without_the_pipeline_record_is_refused(fitted):
    from specrag.errors import UserError

    old = fitted.to_json() | {"format": 1}
    del old["pipeline"]
    with pytest.raises(UserError, match="re-run `specrag calibrate`"):
        Calibrator.from_json(old)
    with pytest.raises(ValueError, match="record of its pipeline"):
        Calibrator(fitted.weights, fitted.bias, fitted.center, fitted.spread, 60).save("x.json")
