"""Limits on what one request may ask for, beyond those of ``CollectionService.check_limits``
(``k``, query length) and the schemas: filter size, rerank depth, prompt size, ids per
delete (422), and the admission of builds and generations (429: try again later).
Every bound is a setting (docs/security.md has the table)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from specrag.api.service import RequestTooLarge
from specrag.errors import UserError
from specrag.retrieval.request import SearchRequest
from specrag.settings import Settings


class TooBusy(UserError, RuntimeError):
    """The server is at its limit of queued builds or concurrent generations (HTTP 429)."""


def filter_nodes(value: Any) -> int:
    """Nodes of a filter: each object key, list item and scalar counts one."""
    if isinstance(value, dict):
        return 1 + sum(1 + filter_nodes(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(filter_nodes(v) for v in value)
    return 1


def check_search(settings: Settings, request: SearchRequest) -> None:
    if request.filter is not None:
        nodes = filter_nodes(request.filter)
        if nodes > settings.max_filter_nodes:
            raise RequestTooLarge(
                f"the filter has {nodes} nodes; the limit is max_filter_nodes="
                f"{settings.max_filter_nodes}"
            )
    if request.rerank is not None and request.rerank.top_n > settings.max_rerank_top_n:
        raise RequestTooLarge(
            f"rerank.top_n={request.rerank.top_n} is over the limit max_rerank_top_n="
            f"{settings.max_rerank_top_n}"
        )


def check_ask(settings: Settings, body) -> None:
    check_search(settings, body)
    if "max_prompt_tokens" not in body.model_fields_set:  # the default fits any limit
        body.max_prompt_tokens = min(body.max_prompt_tokens, settings.max_prompt_tokens)
    if body.max_prompt_tokens > settings.max_prompt_tokens:
        raise RequestTooLarge(
            f"max_prompt_tokens={body.max_prompt_tokens} is over the limit "
            f"max_prompt_tokens={settings.max_prompt_tokens}"
        )


def check_delete(settings: Settings, ids: list[str]) -> None:
    if len(ids) > settings.max_delete_ids:
        raise RequestTooLarge(
            f"{len(ids)} ids in one delete; the limit is max_delete_ids={settings.max_delete_ids}"
        )


class Admission:
    """Counts what runs: generations now, builds queued or running in this server."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._generations = threading.BoundedSemaphore(settings.max_concurrent_generations)
        self._builds = 0
        self._lock = threading.Lock()

    @contextmanager
    def generation(self) -> Iterator[None]:
        if not self._generations.acquire(blocking=False):
            raise TooBusy(
                f"{self.settings.max_concurrent_generations} answers are being generated "
                "(max_concurrent_generations); try again shortly"
            )
        try:
            yield
        finally:
            self._generations.release()

    def build_started(self) -> None:
        with self._lock:
            if self._builds >= self.settings.max_queued_builds:
                raise TooBusy(
                    f"{self._builds} builds are queued or running (max_queued_builds="
                    f"{self.settings.max_queued_builds}); try again when one has finished"
                )
            self._builds += 1

    def build_ended(self, _job: Any = None) -> None:
        with self._lock:
            self._builds = max(0, self._builds - 1)
