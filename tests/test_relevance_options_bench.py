"""The calibration-transfer figures of scripts/bench_relevance_options.py against hand
computation: expected calibration error and precision at min_relevance."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_script

bench = load_script("bench_relevance_options")


class Fixed:
    """A calibrator stub: the probability is the hit's score."""

    def predict(self, scores):
        return np.asarray(scores, dtype=float)


def test_ece_and_precision_by_hand():
    # Bin [0.9, 1.0): 4 hits at p=0.95, 3 relevant (rate 0.75); bin [0.1, 0.2): 6 hits at
    # p=0.15, none relevant. ECE = 0.4 * |0.75 - 0.95| + 0.6 * |0 - 0.15| = 0.17.
    run = {
        "a": [("a1", 0.95), ("a2", 0.95), ("a3", 0.15), ("a4", 0.15), ("a5", 0.15)],
        "b": [("b1", 0.95), ("b2", 0.95), ("b3", 0.15), ("b4", 0.15), ("b5", 0.15)],
    }
    qrels = {"a": {"a1": 1, "a2": 1}, "b": {"b1": 1, "b9": 1}}
    f = bench.transfer_figures(Fixed(), run, qrels)
    assert f["ece"] == pytest.approx(0.4 * 0.2 + 0.6 * 0.15)
    assert f["precision"] == pytest.approx(0.75)  # kept at p >= 0.5: a1 a2 b1 b2
    assert f["kept_per_query"] == pytest.approx(2.0)
    assert f["recall_kept"] == pytest.approx(1.0)  # b9 is not in the run
    assert f["base_rate"] == pytest.approx(0.3)
