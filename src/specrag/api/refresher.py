"""The background refresher of a live server (issue #14): one daemon thread that, every
``TICK_S``, refreshes each collection whose ``refresh_interval`` has passed *and* that has
pending writes (its database generation is past what its served files cover), then
starts a merge when the delta exceeds the collection's merge policy.

One thread, so the refresher never runs two refreshes at once; the service's per-collection
lock keeps it from overlapping a ``POST .../refresh`` or a ``?refresh=wait_for`` write.
Errors are logged (once per collection and message, so a collection that cannot refresh
does not flood the log) and never stop the thread. ``stop`` ends it at shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from specrag.api.service import CollectionService

log = logging.getLogger(__name__)

#: Seconds between two looks at the collections (the finest refresh interval that works).
TICK_S = 0.1


class Refresher:
    def __init__(self, service: CollectionService, tick_s: float = TICK_S):
        self.service = service
        self.tick_s = tick_s
        self._last: dict[str, float] = {}  # storage folder -> monotonic time of last refresh
        self._reported: dict[str, str] = {}  # storage folder -> last error logged
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="specrag-refresher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the refresh in progress (if any) and wait for the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look now rather than at the next tick (a version switched under a delta)."""
        self._wake.set()

    def _refreshable(self, info) -> bool:
        """A collection no refresh can serve (no version yet) is skipped, not retried."""
        from specrag.indexing.delta import unrefreshable

        return unrefreshable(self.service.versions(info)) is None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - the database may be briefly unavailable
                log.exception("refresher: could not list the collections")

    def run_once(self) -> None:
        """One pass over the collections: refresh the due ones with pending writes, then
        check each one's merge policy."""
        for info in self.service.store.list_collections():
            if self._stop.is_set():
                return
            interval = info.live.refresh_interval
            now = time.monotonic()
            due = interval is not None and now - self._last.get(info.folder, -1e18) >= interval
            try:
                if due and self.service.pending(info) and self._refreshable(info):
                    self._last[info.folder] = now
                    self.service.refresh(info.name)
                self.service.maybe_merge(info)
                self.service.prune_released(info)
                self._reported.pop(info.folder, None)
            except Exception as exc:  # noqa: BLE001 - one collection must not stop the others
                message = f"{type(exc).__name__}: {exc}"
                if self._reported.get(info.folder) != message:
                    self._reported[info.folder] = message
                    log.warning("refresher: collection %r: %s", info.name, message)
