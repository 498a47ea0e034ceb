"""Limits on what one request may ask for, beyond those of ``CollectionService.check_limits``
(``k``, query length) and the schemas: filter size, rerank depth, prompt size, ids per
delete (422), the admission of builds (429: try again later; generations are admitted by
``api/generation_pool.py``), and the time one request may take (504).
Every bound is a setting (docs/security.md has the table)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio

from specrag.api.service import RequestTooLarge
from specrag.errors import UserError
from specrag.retrieval.request import SearchRequest
from specrag.settings import Settings

T = TypeVar("T")


class TooBusy(UserError, RuntimeError):
    """The server is at its limit of queued builds or concurrent generations (HTTP 429,
    with ``Retry-After``: the seconds after which trying again is reasonable)."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}


class RequestTimeout(UserError, RuntimeError):
    """A search or answer took longer than its setting allows (HTTP 504): the client gets
    the message, the work is abandoned (an answer stops at its next step)."""


async def in_thread_within(timeout_s: float, setting: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread, answered within ``timeout_s`` or RequestTimeout.
    A thread cannot be stopped safely mid-search: past the time the request stops waiting
    and the thread's result, when it comes, is dropped."""
    with anyio.move_on_after(timeout_s):
        return await anyio.to_thread.run_sync(partial(fn, *args), abandon_on_cancel=True)
    raise RequestTimeout(
        f"the request took longer than {setting}={timeout_s:g} s; its result was abandoned"
    )


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


#: Retry-After of a refused build: builds take seconds to minutes.
BUILD_RETRY_AFTER_S = 10


class Admission:
    """Counts the builds queued or running in this server."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._builds = 0
        self._lock = threading.Lock()

    def build_started(self) -> None:
        with self._lock:
            if self._builds >= self.settings.max_queued_builds:
                raise TooBusy(
                    f"{self._builds} builds are queued or running (max_queued_builds="
                    f"{self.settings.max_queued_builds}); try again when one has finished",
                    retry_after_s=BUILD_RETRY_AFTER_S,
                )
            self._builds += 1

    def build_ended(self, _job: Any = None) -> None:
        with self._lock:
            self._builds = max(0, self._builds - 1)
