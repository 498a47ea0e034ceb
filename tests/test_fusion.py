"""Fusion math against hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from specrag.retrieval.fusion import convex, normalize, rrf


def approx_pairs(got, want):
    assert [d for d, _ in got] == [d for d, _ in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-12)


def test_rrf_unweighted_by_hand():
    # a: 1/61 + 1/62; b: 1/62 + 1/61; c: 1/63; d: 1/63 (list 2, rank 3).
    got = rrf([["a", "b", "c"], ["b", "a", "d"]], k=60)
    approx_pairs(
        got,
        [("a", 1 / 61 + 1 / 62), ("b", 1 / 62 + 1 / 61), ("c", 1 / 63), ("d", 1 / 63)],
    )


def test_rrf_weighted_and_small_k():
    # k=1: ranks give 1/2, 1/3, ... ; weights 2 and 1.
    # x: 2/2 + 0 = 1.0 ; y: 2/3 + 1/2 = 1.1667 ; z: 1/3
    got = rrf([["x", "y"], ["y", "z"]], weights=[2, 1], k=1)
    approx_pairs(got, [("y", 2 / 3 + 1 / 2), ("x", 1.0), ("z", 1 / 3)])


def test_rrf_ties_by_first_appearance_or_tie_key():
    # a and b tie exactly; first appearance puts a first, tie_key can reverse it.
    lists = [["a", "b"], ["b", "a"]]
    assert [d for d, _ in rrf(lists)] == ["a", "b"]
    assert [d for d, _ in rrf(lists, tie_key={"a": 1, "b": 0}.get)] == ["b", "a"]


def test_rrf_rejects_bad_input():
    with pytest.raises(ValueError, match="weights"):
        rrf([["a"]], weights=[1, 2])
    with pytest.raises(ValueError, match=">= 0"):
        rrf([["a"]], weights=[-1])
    with pytest.raises(ValueError, match="all be zero"):
        rrf([["a"], ["b"]], weights=[0, 0])
    with pytest.raises(ValueError, match="twice"):
        rrf([["a", "a"]])
    with pytest.raises(ValueError, match="positive"):
        rrf([["a"]], k=0)


def test_normalize_by_hand():
    assert normalize([3.0, 1.0, 2.0], "minmax").tolist() == [1.0, 0.0, 0.5]
    z = normalize([1.0, 2.0, 3.0], "zscore")
    s = math.sqrt(2 / 3)  # population std of 1, 2, 3
    assert z.tolist() == pytest.approx([-1 / s, 0.0, 1 / s])
    # A constant list carries no ranking information.
    assert normalize([5.0, 5.0], "minmax").tolist() == [0.0, 0.0]
    assert normalize([5.0, 5.0], "zscore").tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="normalization"):
        normalize([1.0], "l2")
    with pytest.raises(ValueError, match="non-finite"):
        normalize([1.0, float("-inf")], "minmax")


def test_convex_minmax_missing_gets_zero():
    # list 1 (bm25-like): a=10, b=6, c=2 -> 1, .5, 0
    # list 2 (dense-like): b=.9, d=.5, a=.1 -> 1, .5, 0 ; c missing -> 0
    # weights .75/.25 (given as 3 and 1):
    # a: .75*1 + .25*0 = .75 ; b: .75*.5 + .25*1 = .625 ; c: 0 ; d: .75*0 + .25*.5 = .125
    got = convex(
        [[("a", 10.0), ("b", 6.0), ("c", 2.0)], {"b": 0.9, "d": 0.5, "a": 0.1}],
        weights=[3, 1],
        normalization="minmax",
    )
    approx_pairs(got, [("a", 0.75), ("b", 0.625), ("d", 0.125), ("c", 0.0)])


def test_convex_zscore_missing_gets_list_minimum():
    # list 1: a=3, b=1 -> mean 2, std 1 -> a=+1, b=-1
    # list 2: c=4, a=2, d=0 -> mean 2, std sqrt(8/3) -> c=+1.2247, a=0, d=-1.2247
    # equal weights (.5 each); b missing from list 2 -> -1.2247; c, d missing from list 1 -> -1
    s = math.sqrt(8 / 3)
    got = convex(
        [[("a", 3.0), ("b", 1.0)], [("c", 4.0), ("a", 2.0), ("d", 0.0)]],
        normalization="zscore",
    )
    want = {
        "a": 0.5 * 1 + 0.5 * 0,
        "b": 0.5 * -1 + 0.5 * (-2 / s),
        "c": 0.5 * -1 + 0.5 * (2 / s),
        "d": 0.5 * -1 + 0.5 * (-2 / s),
    }
    # b and d tie exactly: first appearance (b, from list 1) wins.
    approx_pairs(got, sorted(want.items(), key=lambda kv: -kv[1]))
    assert [d for d, _ in got] == ["a", "c", "b", "d"]


def test_convex_single_list_keeps_order_and_empty_lists():
    got = convex([[("x", 0.2), ("y", 0.9)]])
    approx_pairs(got, [("y", 1.0), ("x", 0.0)])
    assert convex([[], [("a", 1.0)]], weights=[1, 1]) == [("a", 0.0)]


def test_convex_rejects_duplicates():
    with pytest.raises(ValueError, match="twice"):
        convex([[("a", 1.0), ("a", 2.0)]])


@pytest.mark.parametrize("normalization", ["minmax", "zscore"])
@pytest.mark.parametrize("tie", ["row", "first", "name"])
def test_convex_equals_the_formula_document_by_document(normalization, tie):
    """The vectorized fusion against the definition, summed per document in plain Python:
    same scores bit for bit, same order, on lists with many ties, missing documents and
    empty lists."""
    rng = np.random.default_rng(7)
    for _ in range(30):
        lists = []
        for _ in range(rng.integers(1, 4)):
            docs = rng.choice(40, size=rng.integers(0, 25), replace=False).tolist()
            scores = np.round(rng.random(len(docs)) * 4) / 4  # few distinct values: ties
            lists.append(list(zip(docs, scores.tolist(), strict=True)))
        weights = (rng.random(len(lists)) + 0.1).tolist()
        tie_key = {"row": int, "first": None, "name": lambda d: f"doc-{d:02d}"}[tie]
        got = convex(lists, weights, normalization, tie_key=tie_key)
        total = sum(weights)
        tables, floors = [], []
        for pairs in lists:
            norm = normalize([s for _, s in pairs], normalization)
            tables.append(dict(zip([d for d, _ in pairs], norm.tolist(), strict=True)))
            floors.append(float(norm.min()) if norm.size else 0.0)
        order = list(dict.fromkeys(d for pairs in lists for d, _ in pairs))
        want = {
            d: sum(w / total * t.get(d, f) for t, f, w in zip(tables, floors, weights, strict=True))
            for d in order
        }
        first = {d: i for i, d in enumerate(order)}
        key = {"row": int, "first": first.__getitem__, "name": tie_key}[tie]
        expected = sorted(want.items(), key=lambda item: (-item[1], key(item[0])))
        assert got == expected


def test_convex_ties_by_keys_beyond_int64():
    keys = {"a": 2**64, "b": 2**64 - 1}
    assert convex([[("a", 0.0)], [("b", 0.0)]], tie_key=keys.__getitem__) == [
        ("b", 0.0),
        ("a", 0.0),
    ]
