"""A small thread-safe LRU cache by count (and optionally by bytes), for loaded models and
per-version objects: a server that sees many models or index versions keeps only the most
recent ones, so old versions' files and models are released instead of piling up."""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

#: Every live cache, for the metrics (``/metrics``: entries and capacity per cache name).
_ALL: weakref.WeakSet[LRUCache] = weakref.WeakSet()


class LRUCache(Generic[V]):
    def __init__(
        self,
        maxsize: int,
        name: str = "unnamed",
        max_bytes: int | None = None,
        size_of: Callable[[V], int] | None = None,
    ):
        """``max_bytes`` with ``size_of`` (a value's bytes) also bounds the total size: the
        oldest values go until the rest fit (the newest always stays)."""
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        if (max_bytes is None) != (size_of is None):
            raise ValueError("max_bytes and size_of go together")
        self.maxsize = maxsize
        self.name = name
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._bytes = 0
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        _ALL.add(self)

    def get_or_create(self, key: Hashable, create: Callable[[], V]) -> V:
        """The cached value of ``key``, else ``create()`` (under the lock, so one load per
        key), inserted as the newest; the oldest values beyond ``maxsize`` are dropped."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = create()
            self._insert(key, value)
            return value

    def get(self, key: Hashable) -> V | None:
        """The cached value of ``key`` (now the newest), or None. With ``put``: for values
        too slow to build under the lock (other keys' lookups would wait on it)."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: V) -> None:
        """Insert ``value`` as the newest (replacing any value of ``key``)."""
        with self._lock:
            self._insert(key, value)

    def _insert(self, key: Hashable, value: V) -> None:
        if key in self._items:
            self._forget(key)
        self._items[key] = value
        if self._size_of is not None:
            self._bytes += self._size_of(value)
        while len(self._items) > 1 and (
            len(self._items) > self.maxsize
            or (self.max_bytes is not None and self._bytes > self.max_bytes)
        ):
            self._forget(next(iter(self._items)))

    def _forget(self, key: Hashable) -> None:
        value = self._items.pop(key)
        if self._size_of is not None:
            self._bytes -= self._size_of(value)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


def all_caches() -> list[LRUCache]:
    """The caches alive now (a cache goes when its owner does)."""
    return list(_ALL)
