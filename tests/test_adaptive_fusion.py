"""The query-adaptive fusion rules of the relevance benchmark (scripts/adaptive_fusion.py):
hand-computed examples and the property that raising a document's score, order kept, never
lowers its fused rank."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import load_script

af = load_script("adaptive_fusion")


def test_head_minmax_scales_by_the_top_n_only():
    # top 3: 10, 8, 6 -> low 6, high 10; rank 4 falls below 0
    assert af.head_minmax(np.array([10.0, 8.0, 6.0, 2.0]), 3).tolist() == [1.0, 0.5, 0.0, -1.0]


def test_gap_weights_by_hand():
    a = [(1, 3.0), (2, 1.0), (3, 0.0)]
    b = [(3, 0.9), (2, 0.8), (1, 0.1)]
    # a: mean 4/3, sd sqrt(42/27); b: mean 0.6, sd sqrt(0.38/3)
    wa = (3 - 4 / 3) / math.sqrt(42 / 27)
    wb = (0.9 - 0.6) / math.sqrt(0.38 / 3)
    wa, wb = wa / (wa + wb), wb / (wa + wb)
    # min-max: a 1, 1/3, 0; b (doc 3, 2, 1) 1, 0.875, 0
    expected = {1: wa, 2: wa / 3 + wb * 0.875, 3: wb}
    fused = af.fuse([a, b], weighting="gap", gap_k=3)
    assert [d for d, _ in fused] == [1, 2, 3]
    assert dict(fused) == pytest.approx(expected)
    # equal weights rank doc 2 first (0.604 > 0.5): the weights are what moved doc 1 up
    assert [d for d, _ in af.fuse([a, b])] == [2, 1, 3]


def test_flat_lists_fall_back_to_equal_weights():
    a, b = [(1, 1.0), (2, 1.0)], [(2, 5.0), (1, 5.0)]
    assert af.fuse([a, b], weighting="gap") == af.fuse([a, b])


@pytest.mark.parametrize("normalization", ["minmax", "zscore"])
@pytest.mark.parametrize("weighting", ["equal", "gap", "topz"])
def test_a_retriever_that_found_nothing_leaves_the_other_ranking(normalization, weighting):
    # NFCorpus has queries with no term in bm25's vocabulary: an empty list
    other = [(4, 0.9), (2, 0.5), (7, 0.1)]
    for fused in (af.fuse([[], other], normalization, head=2, weighting=weighting),
                  af.rank_biased([[], other]), af.combmnz([[], other])):  # fmt: skip
        assert [row for row, _ in fused] == [4, 2, 7]


def test_combmnz_by_hand():
    a, b = [(1, 1.0), (2, 0.0)], [(2, 1.0), (3, 0.0)]
    # min-max mean x lists holding the doc: 1 -> 0.5 x 1; 2 -> 0.5 x 2; 3 -> 0 x 1
    assert af.combmnz([a, b]) == [(2, 1.0), (1, 0.5), (3, 0.0)]


def test_rank_biased_by_hand():
    a, b = [(1, 2.0), (2, 1.0)], [(2, 5.0), (3, 4.0), (1, 3.0)]
    a1, a2 = 0.5 + 0.5, 0.5 * 61 / 62
    b2, b3, b1 = 0.5 + 0.5, 0.25 + 0.5 * 61 / 62, 0.5 * 61 / 63
    expected = {2: (a2 + b2) / 2, 1: (a1 + b1) / 2, 3: (a2 + b3) / 2}  # 3: a's lowest
    fused = af.rank_biased([a, b])
    assert [d for d, _ in fused] == [2, 1, 3]
    assert dict(fused) == pytest.approx(expected)


#: z-score rules are left out: raising one score moves the list's mean and deviation, and
#: can lift another document of the same list above it (the plain z-score fusion too).
RULES = {
    "minmax@3": lambda lists: af.fuse(lists, head=3),
    "combmnz": af.combmnz,
    "rank-biased": af.rank_biased,
}


@pytest.mark.parametrize("rule", RULES)
def test_raising_a_score_never_lowers_the_rank(rule):
    fuse, rng = RULES[rule], np.random.default_rng(0)
    for _ in range(200):
        lists = []
        for _ in range(2):
            rows = rng.permutation(8)[: rng.integers(3, 8)]
            scores = np.sort(rng.normal(size=len(rows)))[::-1]
            lists.append([(int(r), float(s)) for r, s in zip(rows, scores, strict=True)])
        which = int(rng.integers(2))
        pos = int(rng.integers(1, len(lists[which])))
        row, score = lists[which][pos]
        above = lists[which][pos - 1][1]
        raised = [list(p) for p in lists]
        raised[which][pos] = (row, score + rng.uniform(0, 1) * (above - score))
        rank = [d for d, _ in fuse(lists)].index(row)
        assert [d for d, _ in fuse(raised)].index(row) <= rank
