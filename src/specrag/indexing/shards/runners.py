"""Where shard tasks run: inline, in local processes (``concurrent.futures``), or as Ray
tasks. A runner maps a module-level function over argument tuples and returns the results
in order; the shard build (``build.py``) is written against this one method.

Tasks get and return small picklable values (paths, configs, statistics); documents and
index files go through the version's folder, so a Ray cluster needs that folder on storage
every node sees (one machine: nothing to do).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol


class Runner(Protocol):
    def map(self, fn: Callable[..., Any], args: Sequence[tuple]) -> list[Any]: ...

    def close(self) -> None: ...


class InlineRunner:
    """Runs every task in this process, one after the other (S = 1, tests)."""

    name = "inline"

    def map(self, fn, args):
        return [fn(*a) for a in args]

    def close(self) -> None:
        pass


class ProcessRunner:
    """A pool of ``workers`` local processes (started with ``spawn``: the service holds
    threads and database connections that must not be forked), kept for every round of
    one build."""

    name = "processes"

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn, args):
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=min(self.workers, max(1, len(args))),
                mp_context=multiprocessing.get_context("spawn"),
            )
        futures = [self._pool.submit(fn, *a) for a in args]
        return [f.result() for f in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class RayRunner:
    """Ray tasks on the cluster at ``address`` (None: the running one, or a local one)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1.0):
        from specrag.indexing.ray_support import ensure_ray

        self.ray = ensure_ray(address)
        self.num_cpus = num_cpus

    def map(self, fn, args):
        remote = self.ray.remote(num_cpus=self.num_cpus)(fn)
        return self.ray.get([remote.remote(*a) for a in args])

    def close(self) -> None:
        pass  # the cluster (or the local one ensure_ray started) outlives one build


def make_runner(kind: str, n_tasks: int, ray_address: str | None = None) -> Runner:
    """``inline``, ``processes`` (one per shard, at most the CPU count) or ``ray``."""
    if kind == "inline" or (kind == "processes" and n_tasks <= 1):
        return InlineRunner()
    if kind == "processes":
        return ProcessRunner(min(n_tasks, os.cpu_count() or 1))
    if kind == "ray":
        return RayRunner(ray_address)
    raise ValueError(f"unknown shard runner {kind!r}; use inline, processes or ray")
