"""The bounded worker pool that runs answers (/ask).

A fixed number of worker threads (``max_concurrent_generations``) and a short queue
(``max_queued_generations``); an answer past both is refused at once with 429 and
``Retry-After``, never left waiting. A worker pulls one step of the answer at a time (one
event of ``CollectionService.ask``: retrieval and the first tokens, then one decode step
per event) and hands it to the request's event loop without waiting for the client, so a
slow or vanished client holds no worker, no lock and no other client's answer. Between two
steps the worker checks the job's cancel flag, set when the client disconnects or its time
runs out: a cancelled answer stops after the step in progress.

The disconnect is seen the same way for a streamed and a plain answer: ``submit`` starts a
task on the request's loop that awaits the request's ASGI ``receive`` until it says
``http.disconnect`` (the body has been read by then; a streaming response listening too
sees the same message) and then cancels the job; the job's end cancels that task. A plain JSON answer has no
send to fail when the client goes, so without it the answer would run to
``ask_timeout_s``.

The pool counts what ``/metrics`` shows (``api/observability.py``): answers running and
queued now, and asks refused because both were full.

The bridge to the request is asyncio's (``loop.call_soon_threadsafe``): uvicorn and
Starlette's test client both run the app on asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from specrag.api.request_limits import RequestTimeout, TooBusy
from specrag.settings import Settings

Event = tuple[str, Any]

Receive = Callable[[], Awaitable[dict[str, Any]]]  # an ASGI receive (Starlette's Request.receive)

_END = object()  # the worker's last item: the answer's iterator is exhausted or stopped


class GenerationJob:
    """One admitted answer: its cancel flag, the steps its worker ran, and the queue of
    events (or the exception) the request awaits."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.running = False  # a worker has taken it (else it is queued)
        self.steps = 0  # events pulled from the answer's iterator by the worker
        self._loop = loop
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._watcher: asyncio.Task | None = None

    def cancel(self) -> None:
        """Stop the answer before its next step (a no-op once it has finished)."""
        self.cancelled.set()

    def _watch(self, receive: Receive) -> None:
        """Cancel the job when the client disconnects (on the request's loop)."""

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.cancel()

        self._watcher = self._loop.create_task(watch())

    def _ended(self) -> None:
        """The worker is done: stop watching the client (from the worker's thread)."""
        self.finished.set()
        watcher = self._watcher
        if watcher is not None:
            # RuntimeError: the request's loop is closed, and the task went with it
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(watcher.cancel)

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the request's loop is closed: nobody is waiting any more
            self.cancel()

    async def next_event(self, deadline: float, setting: str, timeout_s: float) -> Event:
        """The answer's next event, by ``deadline`` (the loop's clock); past it the job is
        cancelled and RequestTimeout (504) raised. The worker's exception is re-raised."""
        remaining = deadline - self._loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            item = await asyncio.wait_for(self._queue.get(), remaining)
        except TimeoutError:
            self.cancel()
            raise RequestTimeout(
                f"the answer took longer than {setting}={timeout_s:g} s and was stopped"
            ) from None
        if isinstance(item, BaseException):
            raise item
        if item is _END:
            raise RuntimeError("the answer ended without its final event")
        return item


class GenerationPool:
    """``workers`` threads running answers, ``queued`` more waiting; 429 past both."""

    def __init__(self, workers: int, queued: int):
        self.workers = workers
        self.queued = queued
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="specrag-ask")
        self._lock = threading.Lock()
        self._jobs: set[GenerationJob] = set()  # admitted and not finished
        self.rejected = 0  # asks refused (429) since the pool started
        self._mean_s = 1.0  # moving average of an answer's time in a worker: Retry-After

    @classmethod
    def from_settings(cls, settings: Settings) -> GenerationPool:
        return cls(settings.max_concurrent_generations, settings.max_queued_generations)

    @property
    def admitted(self) -> int:
        """Answers running or queued now."""
        with self._lock:
            return len(self._jobs)

    def jobs(self) -> list[GenerationJob]:
        with self._lock:
            return list(self._jobs)

    def counts(self) -> tuple[int, int, int]:
        """(running, queued, rejected): answers in a worker now, admitted ones waiting for
        one, and asks refused since the pool started."""
        with self._lock:
            running = sum(job.running for job in self._jobs)
            return running, len(self._jobs) - running, self.rejected

    def submit(self, events: Callable[[], Iterator[Event]], receive: Receive) -> GenerationJob:
        """Admit the answer ``events()`` (called in the worker) or raise TooBusy (429);
        the client's disconnect (read from ``receive``, the request's ASGI receive) cancels
        it. Called from the request's event loop."""
        job = GenerationJob(asyncio.get_running_loop())
        with self._lock:
            if len(self._jobs) >= self.workers + self.queued:
                self.rejected += 1
                raise TooBusy(
                    f"{self.workers} answers are being generated and {self.queued} are "
                    f"waiting (max_concurrent_generations, max_queued_generations); "
                    "try again shortly",
                    retry_after_s=max(1, math.ceil(self._mean_s)),
                )
            self._jobs.add(job)
        job._watch(receive)
        context = contextvars.copy_context()  # the worker logs under the request's id
        try:
            self._executor.submit(context.run, self._run, job, events)
        except BaseException:
            self._done(job, None)
            raise
        return job

    def _run(self, job: GenerationJob, events: Callable[[], Iterator[Event]]) -> None:
        started = time.perf_counter()
        iterator: Iterator[Event] | None = None
        with self._lock:
            job.running = True
        try:
            if job.cancelled.is_set():  # cancelled while queued: no step at all
                return
            iterator = events()
            for event in iterator:  # one step per event
                job.steps += 1
                if job.cancelled.is_set():
                    break
                job._put(event)
        except BaseException as exc:  # noqa: BLE001 -- handed to the request, raised there
            job._put(exc)
        finally:
            if iterator is not None and hasattr(iterator, "close"):
                iterator.close()  # the generator's cleanup (its runner, its KV cache) now
            job._put(_END)
            self._done(job, time.perf_counter() - started)

    def _done(self, job: GenerationJob, seconds: float | None) -> None:
        with self._lock:
            self._jobs.discard(job)
            if seconds is not None:
                self._mean_s = 0.8 * self._mean_s + 0.2 * seconds
        job._ended()

    def close(self) -> None:
        """Cancel every answer and stop the workers (the server is shutting down)."""
        for job in self.jobs():
            job.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
