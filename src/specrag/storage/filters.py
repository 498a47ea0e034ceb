"""Metadata filters: a Mongo-like language compiled to SQL (SQLite and PostgreSQL), with a
pure-Python evaluator of identical semantics that the tests hold the SQL to.

Language::

    {"year": 2020}                                  equality ($eq)
    {"year": {"$gte": 2010, "$lt": 2020}}           several operators on a field: AND
    {"topic": {"$in": ["bio", "med"]}}              $in / $nin: a list of scalars
    {"source.name": "pubmed"}                       dotted path into nested objects
    {"$and": [...]}, {"$or": [...]}, {"$not": {...}}   several keys in one object: AND

Semantics (one definition, in :func:`matches` and :func:`compile_filter` alike):

- Values fall in four scalar classes: null, boolean, number, string. Arrays and objects
  equal nothing and order with nothing (no array-contains).
- ``$eq``: same class and equal; numbers compare numerically (1 == 1.0), booleans are not
  numbers (true != 1), null equals null. ``$ne`` is its negation.
- ``$gt $gte $lt $lte``: the operand is a number or a string; a value of another class is
  simply not matched (no error). Strings compare by Unicode code point (binary UTF-8 order;
  ``COLLATE "C"`` on PostgreSQL), whatever the database locale.
- ``$in``: equal to one of the listed scalars; ``$nin``: to none of them.
- ``$exists: true``: the path is present (even when its value is null).
- A missing field matches nothing except ``$ne``, ``$nin``, ``$exists: false`` and
  whatever ``$not`` turns around: SQL is kept two-valued so negation never meets NULL.
- A dotted path walks objects only: ``a.0`` never indexes into an array.

Bad filters raise :class:`FilterError` naming the operator, field or value.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Text, and_, bindparam, false, func, not_, or_, true
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles

from specrag.errors import UserError
from specrag.storage.models import DocumentRow

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}
LOGICAL = ("$and", "$or", "$not")
#: Limits that keep a filter's SQL within every backend's bounds.
MAX_DEPTH = 32
MAX_IN_VALUES = 10_000
INT64 = 2**63 - 1
_INDEX_LIKE = re.compile(r"-?\d+")


class FilterError(UserError, ValueError):
    """An invalid filter; the message names the operator, field or value at fault."""


# -- parsed form ----------------------------------------------------------------------
@dataclass(frozen=True)
class Leaf:
    path: tuple[str, ...]
    op: str
    operand: Any


@dataclass(frozen=True)
class Logical:
    op: str  # "$and" | "$or" | "$not"
    children: tuple[Node, ...]


Node = Leaf | Logical


def validate_filter(filter: Mapping[str, Any]) -> None:
    """Raise FilterError when ``filter`` is not a valid filter."""
    parse_filter(filter)


def filter_key(filter: Mapping[str, Any] | None) -> str | None:
    """A cache key of a valid filter (raises FilterError otherwise): its canonical JSON,
    keys sorted. Equal keys are equal filters; ``1`` and ``1.0`` or reordered list items
    give different keys for the same selection, which only costs a cache miss."""
    if filter is None:
        return None
    validate_filter(filter)
    return json.dumps(filter, sort_keys=True, separators=(",", ":"))


def parse_filter(filter: Mapping[str, Any]) -> Node:
    """The validated tree of ``filter`` (an empty filter is an empty ``$and``: all)."""
    return _parse(filter, depth=0, where="filter")


def _parse(obj: Any, depth: int, where: str) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(f"filter nests deeper than {MAX_DEPTH} levels")
    if not isinstance(obj, Mapping):
        raise FilterError(f"{where} must be an object, got {_show(obj)}")
    parts: list[Node] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise FilterError(f"{where}: key {key!r} is not a string")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} needs a non-empty list of filters, got {_show(value)}")
            children = tuple(_parse(item, depth + 1, f"{key}[{i}]") for i, item in enumerate(value))
            parts.append(Logical(key, children))
        elif key == "$not":
            if not isinstance(value, Mapping):
                raise FilterError(f"$not needs a filter object, got {_show(value)}")
            parts.append(Logical("$not", (_parse(value, depth + 1, "$not"),)))
        elif key.startswith("$"):
            raise FilterError(
                f"unknown operator {key!r} at the top of {where}; use one of "
                f"{', '.join(LOGICAL)} or a field name"
            )
        else:
            parts.extend(_parse_field(_field_path(key), key, value))
    return parts[0] if len(parts) == 1 else Logical("$and", tuple(parts))


def _field_path(field: str) -> tuple[str, ...]:
    segments = tuple(field.split("."))
    for seg in segments:
        if not seg:
            raise FilterError(f"invalid field {field!r}: empty path segment")
        if seg.startswith("$"):
            raise FilterError(f"invalid field {field!r}: a segment starts with '$'")
        if '"' in seg or "\\" in seg:
            raise FilterError(f"invalid field {field!r}: quotes and backslashes are not allowed")
    return segments


def _parse_field(path: tuple[str, ...], field: str, value: Any) -> list[Leaf]:
    if isinstance(value, Mapping):
        if not value:
            raise FilterError(f"field {field!r}: empty operator object")
        leaves = []
        for op, operand in value.items():
            if not isinstance(op, str) or not op.startswith("$"):
                raise FilterError(
                    f"field {field!r}: {op!r} is not an operator (objects are not compared "
                    "by value; use a dotted path such as 'a.b')"
                )
            if op not in COMPARISONS:
                raise FilterError(
                    f"field {field!r}: unknown operator {op!r}; one of {', '.join(COMPARISONS)}"
                )
            leaves.append(Leaf(path, op, _check_operand(field, op, operand)))
        return leaves
    if isinstance(value, list):
        raise FilterError(f"field {field!r}: a list is not a value; use {{'$in': [...]}}")
    return [Leaf(path, "$eq", _check_operand(field, "$eq", value))]


def _check_operand(field: str, op: str, operand: Any) -> Any:
    if op == "$exists":
        if not isinstance(operand, bool):
            raise FilterError(f"field {field!r}: $exists needs true or false, got {_show(operand)}")
        return operand
    if op in ("$in", "$nin"):
        if not isinstance(operand, list):
            raise FilterError(
                f"field {field!r}: {op} needs a list of scalars, got {_show(operand)}"
            )
        if len(operand) > MAX_IN_VALUES:
            raise FilterError(
                f"field {field!r}: {op} lists {len(operand)} values; at most {MAX_IN_VALUES}"
            )
        return tuple(_check_scalar(field, op, item) for item in operand)
    if op in ORDERINGS:
        cls = scalar_class(operand)
        if cls not in ("number", "string"):
            raise FilterError(
                f"field {field!r}: {op} needs a number or a string, got {_show(operand)}"
            )
        return _check_scalar(field, op, operand)
    return _check_scalar(field, op, operand)  # $eq, $ne


def _check_scalar(field: str, op: str, value: Any) -> Any:
    cls = scalar_class(value)
    if cls is None:
        raise FilterError(
            f"field {field!r}: {op} needs a scalar (string, number, boolean or null), "
            f"got {_show(value)}"
        )
    if cls == "number":
        if isinstance(value, float) and not math.isfinite(value):
            raise FilterError(f"field {field!r}: {op} value {value} is not a finite number")
        if isinstance(value, int) and abs(value) > INT64:
            raise FilterError(f"field {field!r}: {op} value {value} does not fit in 64 bits")
    return value


def scalar_class(value: Any) -> str | None:
    """ "null" | "boolean" | "number" | "string", or None for arrays, objects and others."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the reference evaluator ----------------------------------------------------------
_MISSING = object()


def matches(filter: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` satisfies ``filter`` (raises FilterError for a bad filter)."""
    return evaluate(parse_filter(filter), metadata)


def evaluate(node: Node, metadata: Mapping[str, Any]) -> bool:
    if isinstance(node, Logical):
        if node.op == "$and":
            return all(evaluate(child, metadata) for child in node.children)
        if node.op == "$or":
            return any(evaluate(child, metadata) for child in node.children)
        return not evaluate(node.children[0], metadata)
    value = _resolve(metadata, node.path)
    op, operand = node.op, node.operand
    if op == "$exists":
        return (value is not _MISSING) is operand
    if op == "$eq":
        return _equal(value, operand)
    if op == "$ne":
        return not _equal(value, operand)
    if op == "$in":
        return any(_equal(value, item) for item in operand)
    if op == "$nin":
        return not any(_equal(value, item) for item in operand)
    if value is _MISSING or scalar_class(value) != scalar_class(operand):
        return False
    return ORDERINGS[op](value, operand)


def _resolve(metadata: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metadata
    for seg in path:
        if not isinstance(value, Mapping) or seg not in value:
            return _MISSING
        value = value[seg]
    return value


def _equal(value: Any, operand: Any) -> bool:
    if value is _MISSING:
        return False
    cls = scalar_class(value)
    return cls is not None and cls == scalar_class(operand) and value == operand


# -- SQL ------------------------------------------------------------------------------
def compile_filter(filter: Mapping[str, Any]) -> ColumnElement[bool]:
    """A boolean SQL expression over ``documents.metadata`` (SQLite or PostgreSQL) that
    selects exactly the rows :func:`matches` accepts. Raises FilterError."""
    return _sql(parse_filter(filter))


def _sql(node: Node) -> ColumnElement[bool]:
    if isinstance(node, Logical):
        if node.op == "$not":
            return not_(_sql(node.children[0]))
        parts = [_sql(child) for child in node.children]
        if not parts:
            return true()
        return and_(*parts) if node.op == "$and" else or_(*parts)
    return MetadataPredicate(node)


class MetadataPredicate(ColumnElement[bool]):
    """One field test, compiled per dialect (SQLite JSON1 functions / PostgreSQL jsonb).
    It always evaluates to true or false, never NULL, so ``NOT`` is plain negation."""

    type = Boolean()
    inherit_cache = False  # each filter is its own statement; no cache key needed

    def __init__(self, leaf: Leaf):
        self.leaf = leaf


@compiles(MetadataPredicate)
def _compile_other(element: MetadataPredicate, compiler, **kw) -> str:
    raise CompileError(
        f"metadata filters support SQLite and PostgreSQL, not {compiler.dialect.name}"
    )


@compiles(MetadataPredicate, "sqlite")
def _compile_sqlite(element: MetadataPredicate, compiler, **kw) -> str:
    return compiler.process(_leaf_sql(element.leaf, _SqliteJson(element.leaf.path)), **kw)


@compiles(MetadataPredicate, "postgresql")
def _compile_postgresql(element: MetadataPredicate, compiler, **kw) -> str:
    return compiler.process(_leaf_sql(element.leaf, _PostgresJson(element.leaf.path)), **kw)


def _metadata_column():
    return DocumentRow.__table__.c.metadata


class _SqliteJson:
    """json_type() names: null true false integer real text array object; NULL = missing."""

    def __init__(self, path: tuple[str, ...]):
        json_path = "$" + "".join(f'."{seg}"' for seg in path)
        col = _metadata_column()
        self.type = func.json_type(col, json_path)
        self.value = func.json_extract(col, json_path)

    def exists(self):
        return self.type.is_not(None)

    def of_class(self, cls: str, bool_value: bool | None = None):
        if cls == "number":
            return self.type.in_(("integer", "real"))
        if cls == "string":
            return self.type == "text"
        if cls == "null":
            return self.type == "null"
        if bool_value is None:
            return self.type.in_(("true", "false"))
        return self.type == ("true" if bool_value else "false")

    def typed(self, cls: str):
        return self.value  # numbers compare numerically, text by BINARY (code point) order

    def bind(self, cls: str, value: Any):
        return value


class _PostgresJson:
    """jsonb_typeof() names: object array string number boolean null; NULL = missing."""

    def __init__(self, path: tuple[str, ...]):
        col = _metadata_column()
        self.path = path
        self.node = col.op("#>", return_type=JSONB)(_pg_path(path))
        self.text = col.op("#>>", return_type=Text)(_pg_path(path))
        self.type = func.jsonb_typeof(self.node)
        # ``#>`` indexes into arrays with numeric segments; dotted paths walk objects only.
        self.walkable = and_(
            true(),
            *(
                func.jsonb_typeof(col.op("#>", return_type=JSONB)(_pg_path(path[:i]))) == "object"
                for i in range(1, len(path))
                if _INDEX_LIKE.fullmatch(path[i])
            ),
        )

    def exists(self):
        return and_(self.walkable, self.node.is_not(None))

    def of_class(self, cls: str, bool_value: bool | None = None):
        name = {"number": "number", "string": "string", "null": "null", "boolean": "boolean"}[cls]
        test = and_(self.walkable, self.type == name)
        if cls == "boolean" and bool_value is not None:
            test = and_(test, self.text == ("true" if bool_value else "false"))
        return test

    def typed(self, cls: str):
        # jsonb numbers compare numerically; strings in byte (code point) order.
        return self.node if cls == "number" else self.text.collate("C")

    def bind(self, cls: str, value: Any):
        return bindparam(None, value, type_=JSONB) if cls == "number" else value


def _pg_path(path: tuple[str, ...]):
    return bindparam(None, list(path), type_=ARRAY(Text))


def _leaf_sql(leaf: Leaf, json) -> ColumnElement[bool]:
    op, operand = leaf.op, leaf.operand
    if op == "$exists":
        return _two_valued(json.exists()) if operand else not_(_two_valued(json.exists()))
    if op in ("$eq", "$ne"):
        test = _two_valued(_equal_sql(json, (operand,)))
        return test if op == "$eq" else not_(test)
    if op in ("$in", "$nin"):
        test = _two_valued(_equal_sql(json, operand))
        return test if op == "$in" else not_(test)
    cls = scalar_class(operand)
    compare = ORDERINGS[op](json.typed(cls), json.bind(cls, operand))
    return _two_valued(and_(json.of_class(cls), compare))


def _equal_sql(json, values: tuple[Any, ...]) -> ColumnElement[bool]:
    """Equal to one of ``values``: grouped by class, one IN per class."""
    by_class: dict[str, list[Any]] = {}
    for value in values:
        by_class.setdefault(scalar_class(value), []).append(value)
    tests = []
    for cls, items in by_class.items():
        if cls == "null":
            tests.append(json.of_class("null"))
        elif cls == "boolean":
            for flag in sorted(set(items)):
                tests.append(json.of_class("boolean", flag))
        else:
            typed = json.typed(cls)
            binds = [json.bind(cls, v) for v in dict.fromkeys(items)]
            member = typed == binds[0] if len(binds) == 1 else typed.in_(binds)
            tests.append(and_(json.of_class(cls), member))
    if not tests:
        return false()
    return or_(*tests)


def _two_valued(expr: ColumnElement[bool]) -> ColumnElement[bool]:
    """NULL (a missing field) becomes false."""
    return func.coalesce(expr, false())
