"""A small thread-safe LRU cache by count, for loaded models and per-version objects: a
server that sees many models or index versions keeps only the most recent ones, so old
versions' files and models are released instead of piling up."""

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
    def __init__(self, maxsize: int, name: str = "unnamed"):
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.name = name
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
            self._items[key] = value
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def all_caches() -> list[LRUCache]:
    """The caches alive now (a cache goes when its owner does)."""
    return list(_ALL)
