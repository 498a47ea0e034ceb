"""The one place a build happens: the CLI and the API's build worker both call
:func:`run_build`.

A build reads a consistent snapshot of the collection (``DocumentStore.corpus``), writes a
new immutable version (``VersionStore.build``) while the job row reports progress, records
the version row and finishes the job as succeeded or failed with a readable message.

A version is made current only when no newer data is already serving: if another build
that started later (from a later collection generation) finished first, this one is kept
on disk and listed but not activated, so a slow build never rolls the index back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from specrag.errors import UserError
from specrag.indexing.encodings.session import summary
from specrag.indexing.registry import parse_kinds
from specrag.indexing.scaleout import RayOptions, build_version
from specrag.indexing.versions import VersionStore
from specrag.storage.store import DocumentStore, NotFound

log = logging.getLogger(__name__)

#: Least seconds between two progress writes to the job row.
PROGRESS_INTERVAL_S = 0.5
#: Seconds between two heartbeats of a running build (settings.job_stale_after_s, the
#: age at which a server fails a silent job, must be well above it).
HEARTBEAT_INTERVAL_S = 10.0


class NothingToBuild(UserError, ValueError):
    """A collection without kinds or documents cannot be built."""


class BuildCancelled(RuntimeError):
    """The build's collection was deleted (its job row went with it), or the service
    cancelled it: the build stops at its next progress report and activates nothing."""


def run_build(
    store: DocumentStore,
    versions: VersionStore,
    collection: str,
    job_id: str | None = None,
    progress_bar: bool = False,
    cancelled: Callable[[], bool] | None = None,
    ray: RayOptions | None = None,
    full: bool = False,
) -> str:
    """Build every kind the collection is configured with (a version always holds all of
    them; ``registry.merge_kinds`` changes the configuration) over its current documents;
    return the version id. ``job_id``: the queued job to report on; a new job is created
    when None. ``cancelled``: polled at every progress report; True stops the build
    (BuildCancelled), as does a job row that is gone (its collection was deleted, maybe by
    another process). ``ray``: build on Ray (``scaleout.py``; shards come from the
    collection). ``full``: retrain every kind's trained parts instead of reusing the
    current version's (``VersionStore.build``; merges). Raises what the build raised, after
    marking the job failed.
    """
    info = store.get_collection(collection)
    build_kinds = parse_kinds(info.kinds) if info.kinds else {}
    if not build_kinds:
        raise NothingToBuild(f"collection {collection!r} has no index kinds to build")
    if job_id is None:
        job_id = store.create_job(collection, list(build_kinds)).id
    reporter = JobProgress(store, job_id, progress_bar=progress_bar, cancelled=cancelled)
    started = time.perf_counter()
    try:
        store.update_job(
            job_id,
            status="running",
            stage="snapshot",
            progress=0.0,
            done=0,
            total=0,
            message=None,
            error=None,
        )
        with Heartbeat(store, job_id), store.corpus(collection) as corpus:
            n_docs = len(corpus)
            if n_docs == 0:
                raise NothingToBuild(f"collection {collection!r} has no documents to index")
            generation = corpus.generation
            version_id = build_version(
                versions,
                corpus,
                build_kinds,
                reporter,
                ray=ray,
                full=full,
                activate=False,
                extra_manifest={"collection": collection, "generation": generation, "job": job_id},
            )
        reporter.stage = "activate"
        reporter.check_cancelled()
        store.get_job(job_id)  # NotFound: the collection was deleted meanwhile
        newer = newer_current_version(versions, generation)
        if newer is None:
            versions.activate(version_id)
        store.record_version(
            collection,
            version_id,
            {name: config.model_dump() for name, config in build_kinds.items()},
            n_docs,
            generation=generation,
            current=newer is None,
            job_id=job_id,
        )
    except NotFound as exc:
        reporter.close()
        raise BuildCancelled(f"build of {collection!r} cancelled: {exc}") from exc
    except BaseException as exc:
        reporter.close()
        with contextlib.suppress(Exception):  # the job row may be gone with its collection
            store.update_job(
                job_id,
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                message=f"build failed during {reporter.stage!r}: {exc}",
            )
        raise
    reporter.close()
    message = (
        f"built {n_docs} documents ({', '.join(build_kinds)}) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    encoded = versions.manifest(version_id).get("encodings")
    if encoded:
        message += f"; {summary(encoded)}"
    if newer is not None:
        message += f"; not made current: version {newer} was built from newer documents"
    store.update_job(
        job_id,
        status="succeeded",
        stage="done",
        progress=1.0,
        version_id=version_id,
        message=message,
    )
    return version_id


def newer_current_version(versions: VersionStore, generation: int) -> str | None:
    """The current version when it was built from a later generation than ``generation``."""
    current = versions.current()
    if current is None:
        return None
    try:
        current_generation = versions.manifest(current).get("generation")
    except (OSError, ValueError):
        return None
    if isinstance(current_generation, int) and current_generation > generation:
        return current
    return None


class JobProgress:
    """A Progress that writes to the job row (at most every ``interval`` seconds, and on
    every stage change) and optionally drives a tqdm bar per stage. A failed progress
    write is logged, never allowed to fail the build."""

    def __init__(
        self,
        store: DocumentStore,
        job_id: str,
        progress_bar: bool = False,
        interval: float = PROGRESS_INTERVAL_S,
        cancelled: Callable[[], bool] | None = None,
    ):
        self.store = store
        self.cancelled = cancelled
        self.job_id = job_id
        self.progress_bar = progress_bar
        self.interval = interval
        self.stage = "queued"
        self._last_write = float("-inf")
        self._bar: Any = None
        self.writes = 0

    def check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise BuildCancelled(f"build job {self.job_id} was cancelled")

    def __call__(self, done: int, total: int, stage: str, unit: str = "doc") -> None:
        self.check_cancelled()
        changed = stage != self.stage
        self.stage = stage
        if self.progress_bar:
            self._update_bar(done, total, stage, unit, changed)
        now = time.monotonic()
        finished_stage = total > 0 and done >= total
        if not (changed or finished_stage or now - self._last_write >= self.interval):
            return
        self._last_write = now
        fraction = min(1.0, max(0.0, done / total)) if total > 0 else 0.0
        try:
            self.store.update_job(
                self.job_id, stage=stage[:200], done=int(done), total=int(total), progress=fraction
            )
            self.writes += 1
        except NotFound as exc:  # the job went with its collection: stop building
            raise BuildCancelled(f"build job {self.job_id} is gone: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - progress is advisory
            log.warning("could not record progress of job %s: %s", self.job_id, exc)

    def _update_bar(self, done: int, total: int, stage: str, unit: str, changed: bool) -> None:
        from tqdm.auto import tqdm

        if changed or self._bar is None:
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total or None, desc=stage, unit=f" {unit}", leave=True)
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.update(max(0, done - self._bar.n))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Heartbeat:
    """Stamps the job's heartbeat every ``interval`` seconds from a daemon thread while the
    build runs, so that another process can tell a silent build from a dead one (a
    stage that reports no progress for minutes still beats)."""

    def __init__(self, store: DocumentStore, job_id: str, interval: float = HEARTBEAT_INTERVAL_S):
        self.store = store
        self.job_id = job_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.job_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat must not fail the build
                log.warning("could not record the heartbeat of job %s: %s", self.job_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
