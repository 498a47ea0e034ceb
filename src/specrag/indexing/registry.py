"""The index kinds by name: the one place a kind is registered (``docs/layout.md`` says how
to add one), and the one place kind names and configs are resolved.

Each kind is checked against the Builder and Searcher protocols when this module is
imported (``kinds/base.py``), so a kind with a wrong signature fails at start, not at its
first build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from specrag.errors import UserError
from specrag.indexing.kinds import binary, bm25, colbert, datastore, dense, lucene, splade
from specrag.indexing.kinds.base import IndexKind, KindConfig, check_kind

KINDS: dict[str, IndexKind] = {
    kind.name: check_kind(kind)
    for kind in (
        bm25.KIND,
        splade.KIND,
        dense.KIND,
        binary.KIND,
        colbert.KIND,
        lucene.KIND,
        datastore.KIND,
    )
}

#: What clients may send as kinds: names (default configs) or names with configs.
KindsSpec = Mapping[str, KindConfig | Mapping[str, Any] | None] | Sequence[str]


class KindsError(UserError, ValueError):
    """Kinds or kind configs a request or a command gives that are not valid."""


class UnknownKind(KindsError):
    """A kind name that no registered kind has."""


def get_kind(name: str) -> IndexKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(
            f"unknown index kind {name!r}; known: {', '.join(sorted(KINDS))}"
        ) from None


def parse_kinds(kinds: KindsSpec) -> dict[str, KindConfig]:
    """Validate kind names and their configs (a list of names means default configs).
    Raises KindsError naming the kind and the problem."""
    if isinstance(kinds, str):
        raise KindsError(f"kinds must be a list of names or an object, got the string {kinds!r}")
    if not isinstance(kinds, Mapping):
        kinds = dict.fromkeys(kinds)
    if not kinds:
        raise KindsError("kinds must name at least one index kind")
    parsed: dict[str, KindConfig] = {}
    for name, raw in kinds.items():
        kind = get_kind(name)
        if raw is not None and not isinstance(raw, Mapping | KindConfig):
            raise KindsError(f"config of kind {name!r} must be an object, got {type(raw).__name__}")
        try:
            parsed[name] = kind.parse_config(dict(raw) if isinstance(raw, Mapping) else raw)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise KindsError(f"invalid config for kind {name!r}: {exc}") from None
    return parsed


def merge_kinds(
    configured: Mapping[str, Mapping[str, Any]], requested: KindsSpec | None
) -> dict[str, KindConfig]:
    """A collection's kinds after a request names ``requested``: every configured kind
    stays (a version always holds all of them); a requested kind is added, with its
    given config or its default; a configured kind keeps its config unless the request
    gives one."""
    merged = parse_kinds(configured) if configured else {}
    if requested:
        explicit = requested if isinstance(requested, Mapping) else {}
        for name, config in parse_kinds(requested).items():
            if name not in merged or explicit.get(name) is not None:
                merged[name] = config
    if not merged:
        raise KindsError("no index kinds: name at least one (e.g. bm25)")
    return merged


def searchable(names: list[str] | Any) -> list[str]:
    """The names among ``names`` that are document retrievers, sorted."""
    return sorted(n for n in names if n in KINDS and KINDS[n].searchable)


def register(kind: IndexKind) -> None:
    """Add a kind at run time (tests, plugins); checked like the built-in ones."""
    KINDS[kind.name] = check_kind(kind)
