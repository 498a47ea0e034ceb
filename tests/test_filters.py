"""Metadata filters: the SQL compilation selects exactly what the Python reference
evaluator selects (randomized), the semantics of each rule, and validation errors.

PostgreSQL runs the same equivalence test when SPECRAG_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import random
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from specrag.storage.db import create_engine_for, init_db
from specrag.storage.filters import FilterError, compile_filter, matches, validate_filter
from specrag.storage.models import DocumentRow
from specrag.storage.store import DocumentStore
from specrag.types import Document
from tests.conftest import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    with database_url(request.param, tmp_path / "db") as url:
        engine = create_engine_for(url)
        init_db(engine)
        store = DocumentStore(engine)
        store.name = f"filters-{uuid.uuid4().hex[:8]}"
        store.create_collection(store.name)
        yield store
        engine.dispose()


# -- random metadata and filters ------------------------------------------------------
SCALARS = [
    None,
    True,
    False,
    0,
    1,
    2,
    -3,
    1.0,
    1.5,
    -0.5,
    2.25,
    10,
    "",
    "a",
    "b",
    "ab",
    "B",
    "é",
    "10",
    "2",
    "a b",
    "Z",
]
FIELDS = ["a", "b", "c", "n.x", "n.y", "n", "missing", "n.x.z", "l.0", "d.e.f"]


def random_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if r < 0.75 or depth > 1:
        return rng.choice(SCALARS)
    if r < 0.85:
        return [rng.choice(SCALARS) for _ in range(rng.randint(0, 2))]
    return {k: random_value(rng, depth + 1) for k in rng.sample(["x", "y", "z", "e", "f"], 2)}


def random_metadata(rng: random.Random) -> dict:
    meta = {k: random_value(rng) for k in ["a", "b", "c", "n", "l", "d"] if rng.random() < 0.7}
    if rng.random() < 0.5:
        meta["n"] = {k: random_value(rng, 1) for k in ["x", "y"] if rng.random() < 0.8}
    if rng.random() < 0.2:
        meta["d"] = {"e": {"f": rng.choice(SCALARS)}}
    return meta


def random_leaf(rng: random.Random) -> dict:
    field = rng.choice(FIELDS)
    op = rng.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "bare"])
    if op == "bare":
        return {field: rng.choice(SCALARS)}
    if op == "$exists":
        return {field: {"$exists": rng.random() < 0.5}}
    if op in ("$in", "$nin"):
        return {field: {op: rng.sample(SCALARS, rng.randint(0, 4))}}
    if op in ("$eq", "$ne"):
        return {field: {op: rng.choice(SCALARS)}}
    orderable = [v for v in SCALARS if v is not None and not isinstance(v, bool)]
    ops = {op: rng.choice(orderable)}
    if rng.random() < 0.3:  # two operators on one field
        ops[rng.choice(["$lt", "$lte", "$ne"])] = rng.choice(orderable)
    return {field: ops}


def random_filter(rng: random.Random, depth: int = 0) -> dict:
    r = rng.random()
    if depth >= 3 or r < 0.45:
        return random_leaf(rng)
    if r < 0.6:
        return {"$not": random_filter(rng, depth + 1)}
    if r < 0.8:
        op = rng.choice(["$and", "$or"])
        return {op: [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    merged: dict = {}  # several keys in one object
    for _ in range(rng.randint(2, 3)):
        merged.update(random_leaf(rng))
    return merged


def test_sql_selects_exactly_what_the_reference_selects(store):
    rng = random.Random(20240601)
    docs = [Document(f"d{i}", "text", None, random_metadata(rng)) for i in range(300)]
    docs.append(Document("empty", "text", None, {}))
    store.upsert(store.name, docs)
    nontrivial = 0
    for _ in range(400):
        filt = random_filter(rng)
        expected = [d.id for d in docs if matches(filt, d.metadata)]
        got = store.matching_ids(store.name, filt)
        assert got == expected, f"filter {filt}"
        nontrivial += 0 < len(expected) < len(docs)
    assert nontrivial > 200  # the generator produces filters that actually discriminate


# -- the semantics, rule by rule ------------------------------------------------------
META = {
    "int": 1,
    "float": 1.0,
    "half": 1.5,
    "str": "b",
    "num_str": "10",
    "yes": True,
    "no": False,
    "null": None,
    "arr": [1, 2],
    "obj": {"k": "v", "n": {"deep": 3}},
    "uni": "é",
}
CASES = [
    ({"int": 1}, True),
    ({"int": 1.0}, True),
    ({"float": 1}, True),  # numbers numerically
    ({"yes": True}, True),
    ({"yes": 1}, False),
    ({"int": True}, False),  # booleans apart
    ({"no": False}, True),
    ({"no": 0}, False),
    ({"num_str": 10}, False),
    ({"num_str": "10"}, True),  # strings are not numbers
    ({"str": {"$gt": "a"}}, True),
    ({"str": {"$gt": 0}}, False),  # cross-class: false
    ({"half": {"$gt": "a"}}, False),
    ({"num_str": {"$lt": 2}}, False),
    ({"num_str": {"$lt": "2"}}, True),  # lexicographic
    ({"uni": {"$gt": "z"}}, True),
    ({"str": {"$lt": "B"}}, False),  # code point order
    ({"half": {"$gte": 1.5, "$lt": 2}}, True),
    ({"half": {"$gt": 1.5}}, False),
    ({"null": None}, True),
    ({"missing": None}, False),
    ({"null": {"$exists": True}}, True),
    ({"missing": {"$exists": False}}, True),
    ({"obj.k": {"$exists": True}}, True),
    ({"missing": {"$ne": 1}}, True),
    ({"missing": {"$nin": [1]}}, True),
    ({"missing": {"$gt": 1}}, False),
    ({"missing": {"$in": [1, None]}}, False),
    ({"$not": {"missing": {"$gt": 1}}}, True),
    ({"arr": 1}, False),
    ({"arr": {"$ne": 1}}, True),
    ({"obj": {"$exists": True}}, True),
    ({"arr.0": 1}, False),
    ({"arr.0": {"$exists": True}}, False),  # no array indexing
    ({"obj.n.deep": {"$in": [3, "x"]}}, True),
    ({"obj.k": {"$in": []}}, False),
    ({"obj.k": {"$nin": []}}, True),
    ({"int": {"$in": [True, "1"]}}, False),
    ({"$and": [{"int": 1}, {"str": "b"}]}, True),
    ({"$or": [{"int": 2}, {"str": "c"}]}, False),
    ({"int": 1, "str": "c"}, False),
    ({}, True),
]


@pytest.mark.parametrize(("filt", "expected"), CASES)
def test_rule(filt, expected, store):
    assert matches(filt, META) is expected
    store.upsert(store.name, [Document("m", "text", None, META)])
    assert store.matching_ids(store.name, filt) == (["m"] if expected else [])


BAD = [
    ("not a dict", "must be an object"),
    ({"$and": []}, "$and needs a non-empty list"),
    ({"$or": {"a": 1}}, "$or needs a non-empty list"),
    ({"$not": [1]}, "$not needs a filter object"),
    ({"$nor": []}, "unknown operator '$nor'"),
    ({"a": {"$regex": "x"}}, "field 'a': unknown operator '$regex'"),
    ({"a": {"b": 1}}, "'b' is not an operator"),
    ({"a": {}}, "empty operator object"),
    ({"a": [1, 2]}, "use {'$in'"),
    ({"a": {"$in": 3}}, "$in needs a list"),
    ({"a": {"$in": [[1]]}}, "$in needs a scalar"),
    ({"a": {"$gt": True}}, "$gt needs a number or a string"),
    ({"a": {"$lte": None}}, "$lte needs a number or a string"),
    ({"a": {"$exists": 1}}, "$exists needs true or false"),
    ({"a": {"$eq": {"x": 1}}}, "$eq needs a scalar"),
    ({"a": float("nan")}, "not a finite number"),
    ({"a": 2**70}, "does not fit in 64 bits"),
    ({"a..b": 1}, "empty path segment"),
    ({'a"b': 1}, "quotes"),
    ({"a.$b": 1}, "starts with '$'"),
]


@pytest.mark.parametrize(("filt", "message"), BAD)
def test_bad_filters_name_the_problem(filt, message):
    for check in (validate_filter, compile_filter, lambda f: matches(f, {})):
        with pytest.raises(FilterError) as info:
            check(filt)
        assert message in str(info.value)


def test_deep_nesting_is_refused():
    filt: dict = {"a": 1}
    for _ in range(40):
        filt = {"$not": filt}
    with pytest.raises(FilterError, match="deeper"):
        validate_filter(filt)


def test_postgresql_compilation_uses_jsonb_and_binary_collation():
    filt = {
        "$or": [
            {"a.b": {"$gt": "x"}},
            {"c": {"$in": [1, 2.5, True, None]}},
            {"d.0": {"$exists": True}},
        ]
    }
    sql = str(
        select(DocumentRow.id).where(compile_filter(filt)).compile(dialect=postgresql.dialect())
    )
    assert "jsonb_typeof" in sql and 'COLLATE "C"' in sql and "#>>" in sql
    sqlite_sql = str(
        select(DocumentRow.id).where(compile_filter(filt)).compile(dialect=sqlite.dialect())
    )
    assert "json_type" in sqlite_sql and "json_extract" in sqlite_sql
