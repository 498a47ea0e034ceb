"""CollectionService: the one object behind the REST routes and the CLI.

It owns the database engine and the DocumentStore, opens index versions lazily and caches
one per collection (reloaded when ``CURRENT`` changes; the old one keeps serving while the
new one loads), caches tombstone and filter masks per (version, collection generation), and runs
builds in one background worker thread so that no request waits for a build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from specrag import __version__ as specrag_version
from specrag.api.refresher import Refresher
from specrag.api.schemas import (
    AskRequest,
    AskResponse,
    CitationOut,
    CollectionOut,
    CollectionPatch,
    DocumentOut,
    Health,
    JobOut,
    LiveOut,
    LiveSettingsIn,
    RefreshOut,
    SearchHit,
    SearchResponse,
)
from specrag.api.stages import StageBuilder
from specrag.cache import LRUCache
from specrag.errors import UserError
from specrag.faults import pause_point
from specrag.gcfreeze import freeze_after_load
from specrag.indexing.registry import KindsSpec, merge_kinds, parse_kinds
from specrag.indexing.scaleout import RayOptions, check_layout, read_shards, write_shards
from specrag.indexing.versions import VersionStore
from specrag.retrieval import pipeline
from specrag.retrieval.calibration import calibration_path, fit_calibration
from specrag.retrieval.live import live_id, with_delta
from specrag.retrieval.request import SearchRequest
from specrag.retrieval.version import OpenVersion, open_version
from specrag.settings import Settings
from specrag.storage.db import create_engine_for, init_db
from specrag.storage.filters import filter_key
from specrag.storage.store import (
    CollectionInfo,
    DocumentStore,
    LiveSettings,
    MetadataLimits,
    NotFound,
)
from specrag.types import DocMask, Document, Hit

log = logging.getLogger(__name__)

#: Documents per store.upsert call when indexing from a file.
UPSERT_CHUNK = 1000
#: Masks kept (tombstones and filters, per collection, version and generation), and
#: their bytes at most (one byte per row: 128 masks of a 1M-document collection).
MASK_CACHE_SIZE = 256
MASK_CACHE_BYTES = 128 << 20
#: Least seconds between two looks for jobs whose process died.
STALE_CHECK_INTERVAL_S = 2.0
#: Seconds a collection delete waits for its running build to stop.
BUILD_STOP_TIMEOUT_S = 60.0
#: Least seconds between two background merges of one collection (a failed merge is
#: not retried at every tick).
MERGE_RETRY_S = 60.0
#: ``?refresh=`` values of writes: answer once the change is searchable (both: the write's
#: request refreshes unless a refresh that covers it has already run, as Elasticsearch's
#: ``true``; one refresh covers every write committed before its snapshot).
REFRESH_MODES = ("true", "wait_for")


class NotReady(UserError, LookupError):
    """The collection has no built index version yet (HTTP 409)."""


class RequestTooLarge(UserError, ValueError):
    """A request over one of the service's limits (HTTP 422)."""


class ModelNotAllowed(UserError, ValueError):
    """A request names a model that is not configured (HTTP 400)."""


class CollectionService:
    def __init__(self, settings: Settings):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine_for(settings.db_url)
        init_db(self.engine)
        self.store = DocumentStore(
            self.engine,
            MetadataLimits(settings.max_metadata_depth, settings.max_metadata_bytes),
        )
        #: Rerank and calibrated-relevance stages, bound to the document store.
        self.stages = StageBuilder(self.store)
        self._versions: dict[str, OpenVersion] = {}
        self._bases: dict[str, OpenVersion] = {}  # the version under a live delta
        self._refresh_locks: dict[str, threading.Lock] = {}
        self._load_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._masks: LRUCache[DocMask] = LRUCache(
            MASK_CACHE_SIZE, "masks", max_bytes=MASK_CACHE_BYTES, size_of=lambda m: m.nbytes
        )
        self._worker: ThreadPoolExecutor | None = None
        self._stale_checked = float("-inf")
        #: Builds running in this process per storage folder, and folders being deleted.
        self._building: dict[str, int] = {}
        self._cancelled: set[str] = set()
        self._builds_guard = threading.Lock()
        self._builds_changed = threading.Condition(self._builds_guard)
        #: Searches in flight per (storage folder, version id): never pruned under them.
        self._held: dict[tuple[str, str], int] = {}
        self._held_guard = threading.Lock()
        #: Folders where a version that is no longer served was let go (by the last search
        #: holding it, or by the served-view cache): the refresher prunes them (a build's
        #: own prune skips versions held at that moment).
        self._prune_due: set[str] = set()
        #: Called with the job row (None when it is gone with its collection) when a build
        #: job of the worker ends: the metrics, the build admission count.
        self.build_listeners: list[Callable[[Any], None]] = []
        #: Monotonic time of the last background merge started, per storage folder.
        self._merged: dict[str, float] = {}
        #: The background refresher (``api/refresher.py``), started by ``start_refresher``.
        self.refresher = Refresher(self)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Mark jobs left running by a dead process as failed, remove what killed builds
        left, make the database follow each CURRENT file and prune old versions; start the
        build worker."""
        self.store.fail_stale_jobs(self.settings.job_stale_after_s)
        self._recover_files()
        self._stale_checked = time.monotonic()
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="specrag-build")

    def _recover_files(self) -> None:
        from specrag.indexing.retention import reconcile_current, sweep_temporaries

        sweep_temporaries(self.settings.collections_dir)
        for info in self.store.list_collections():
            try:
                reconcile_current(self.store, self.versions(info), info.name)
                self.prune(info.name)
            except Exception as exc:  # noqa: BLE001 - one broken collection must not stop the server
                log.warning("could not check the versions of %r: %s", info.name, exc)

    def prune(self, name: str) -> list[str]:
        """Remove the collection's old versions (``indexing/retention.py``): beyond
        ``keep_versions``, superseded for ``keep_versions_grace_s``, held by no search."""
        from specrag.indexing.retention import prune_versions

        info = self.store.get_collection(name)
        held = {vid for (folder, vid), n in self._held.items() if folder == info.folder and n}
        for cache in (self._versions, self._bases):
            opened = cache.get(info.folder)
            if opened is not None:
                held.add(opened.path.name)
        return prune_versions(
            self.versions(info),
            self.settings.keep_versions,
            self.settings.keep_versions_grace_s,
            held,
        )

    def prune_released(self, info: CollectionInfo) -> None:
        """Prune ``info``'s old versions if a search released one since the last look
        (called by the refresher thread; housekeeping off the request path)."""
        with self._held_guard:
            if info.folder not in self._prune_due:
                return
            self._prune_due.discard(info.folder)
        self.prune(info.name)

    @contextlib.contextmanager
    def _holding(self, folder: str, version: OpenVersion) -> Iterator[None]:
        key = (folder, version.path.name)
        with self._held_guard:
            self._held[key] = self._held.get(key, 0) + 1
        try:
            yield
        finally:
            with self._held_guard:
                self._held[key] -= 1
                if not self._held[key]:
                    del self._held[key]
                    served = self._bases.get(folder)
                    if served is None or served.path.name != key[1]:  # an older one
                        self._prune_due.add(folder)

    def start_refresher(self) -> None:
        """Refresh collections in the background by their ``refresh_interval`` (the
        server does this; the CLI does not)."""
        self.start()
        self.refresher.start()

    def close(self) -> None:
        self.refresher.stop()
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
        self.engine.dispose()

    def health(self) -> Health:
        return Health(version=specrag_version, collections=len(self.store.list_collections()))

    # -- collections -----------------------------------------------------------------
    def versions(self, name: str | CollectionInfo) -> VersionStore:
        """The index versions of the collection, in its own storage folder."""
        info = self.store.get_collection(name) if isinstance(name, str) else name
        return VersionStore(self.settings.collections_dir / info.folder)

    def create_collection(
        self,
        name: str,
        kinds: KindsSpec | None,
        shards: int = 1,
        live: LiveSettingsIn | None = None,
    ) -> CollectionOut:
        parsed = parse_kinds(kinds or ["bm25"])
        check_layout(shards, parsed)  # before the row exists; written once it does
        settings = LiveSettings(**(live or LiveSettingsIn()).model_dump(include=_LIVE_FIELDS))
        info = self.store.create_collection(name, _dump(parsed), settings)
        if shards != 1:
            write_shards(self.versions(name).root, shards, parsed)
        return self._collection_out(info)

    def get_collection(self, name: str) -> CollectionOut:
        return self._collection_out(self.store.get_collection(name), live=True)

    def update_collection(self, name: str, patch: CollectionPatch) -> CollectionOut:
        """Change the live settings named in ``patch`` (``refresh_interval`` null or 0:
        refresh on demand only)."""
        info = self.store.get_collection(name)
        changes = {f: getattr(patch, f) for f in patch.model_fields_set}
        for field in ("merge_max_share", "merge_max_docs"):
            if field in changes and changes[field] is None:
                raise UserError(f"{field} cannot be null")
        self.store.set_live_settings(name, LiveSettings(**{**vars(info.live), **changes}))
        self.refresher.wake()
        return self.get_collection(name)

    def list_collections(self) -> list[CollectionOut]:
        return [self._collection_out(info) for info in self.store.list_collections()]

    def delete_collection(self, name: str) -> None:
        """Delete the collection, fence its builds, then remove its index files.

        Its builds in this process are cancelled and waited for (one in another process
        stops at its next progress report: its job row is gone); the files go after the
        row, so a crash leaves orphan files, never a dangling row, and the folder is
        unique to this collection, so no later collection reads them. A failure to
        remove them is raised, not ignored."""
        info = self.store.get_collection(name)
        with self._builds_guard:
            self._cancelled.add(info.folder)
        try:
            self.store.delete_collection(name)
            self._wait_for_builds(info.folder)
        finally:
            with self._builds_guard:
                self._cancelled.discard(info.folder)
        self._versions.pop(info.folder, None)
        self._bases.pop(info.folder, None)
        remove_folder(self.settings.collections_dir / info.folder)

    def _wait_for_builds(self, folder: str, timeout: float = BUILD_STOP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        with self._builds_changed:
            while self._building.get(folder):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the build in {folder!r} did not stop in {timeout} s")
                self._builds_changed.wait(left)

    def _collection_out(self, info, live: bool = False) -> CollectionOut:
        """``live``: add where the collection stands (``live_status``; a few small reads
        of files and one count, so only for one collection)."""
        return CollectionOut(
            name=info.name,
            kinds=dict(info.kinds or {}),
            n_documents=info.n_documents,
            created_at=info.created_at,
            # the CURRENT file is the truth (indexing/retention.py); the row follows it
            current_version=self.versions(info).current() or info.current_version,
            generation=info.generation,
            shards=read_shards(self.versions(info).root),
            live=self.live_status(info) if live else None,
        )

    # -- live collections ------------------------------------------------------------
    def live_generation(self, versions: VersionStore) -> int | None:
        """The collection generation that the served files cover: the live delta's
        snapshot, else the current version's; None before the first build."""
        from specrag.indexing.delta import current_delta

        base = versions.current()
        if base is None:
            return None
        delta = current_delta(versions, base)
        manifest = delta[2] if delta is not None else versions.manifest(base)
        generation = manifest.get("generation")
        return generation if isinstance(generation, int) else -1

    def pending(self, info: CollectionInfo) -> bool:
        """True when writes were committed after the snapshot the served files cover
        (and there is a version a refresh can extend)."""
        covered = self.live_generation(self.versions(info))
        return covered is not None and info.generation > covered

    def live_status(self, info: CollectionInfo) -> LiveOut:
        from specrag.indexing.delta import current_delta

        versions = self.versions(info)
        status = LiveOut(**vars(info.live))
        base = versions.current()
        if base is None:
            return status
        status.last_merge_at = _mtime(versions.path(base) / "manifest.json")
        delta = current_delta(versions, base)
        if delta is not None:
            _, path, manifest = delta
            status.delta_documents = int(manifest.get("n_docs", 0))
            status.delta_superseded = int(manifest.get("n_superseded", 0))
            status.last_refresh_at = _mtime(path / "manifest.json")
        status.pending = self.pending(info)
        if status.pending:
            since = status.last_refresh_at or status.last_merge_at
            status.pending_documents = (
                self.store.count_updated_since(info.name, since) if since else info.n_documents
            )
        return status

    def _check_refreshable(self, name: str) -> None:
        """Before a write that asks ``?refresh=``: refused (409 without a version, else
        400) when no refresh could make it searchable before the next build."""
        from specrag.indexing.delta import unrefreshable

        why = unrefreshable(self.versions(name))
        if why is None:
            return
        message = f"?refresh cannot make writes to {name!r} searchable: {why}"
        if self.versions(name).current() is None:
            raise NotReady(message)
        raise UserError(message)

    def refresh_covering(self, name: str, generation: int) -> None:
        """Return once the served files cover ``generation``: refresh unless a refresh
        that covers it ran meanwhile (``?refresh=wait_for``)."""
        info = self.store.get_collection(name)
        versions = self.versions(info)
        with self._refresh_lock(info.folder):
            covered = self.live_generation(versions)
            if covered is None or covered < generation:
                self._refresh_locked(name, info)

    def maybe_merge(self, info: CollectionInfo) -> JobOut | None:
        """Start a background merge when the live delta exceeds the collection's merge
        policy (and no build of it is queued or running); returns its job."""
        from specrag.indexing.delta import current_delta

        versions = self.versions(info)
        base = versions.current()
        delta = current_delta(versions, base) if base is not None else None
        if delta is None:
            return None
        n_delta = int(delta[2].get("n_docs", 0))
        n_base = int(versions.manifest(base).get("n_docs", 0))
        policy = info.live
        if n_delta <= policy.merge_max_docs and n_delta <= policy.merge_max_share * n_base:
            return None
        if time.monotonic() - self._merged.get(info.folder, -1e18) < MERGE_RETRY_S:
            return None
        if any(job.status in ("queued", "running") for job in self.store.list_jobs(info.name)):
            return None
        self._merged[info.folder] = time.monotonic()
        log.info("merging %r: its delta holds %d documents over %d", info.name, n_delta, n_base)
        return self.merge(info.name)

    def merge_now(self, name: str, progress_bar: bool = False) -> str:
        """A merge run here, synchronously (the CLI's ``specrag merge``): the version id."""
        info = self.store.get_collection(name)
        job = self.store.create_job(name, list(info.kinds))
        version = self._build(name, job.id, progress_bar=progress_bar, full=True)
        self._catch_up(name)
        return version

    def merge(self, name: str) -> JobOut:
        """Queue a merge: a full build job over every kind of the collection (trained parts
        such as the colbert codebook trained anew, nothing kept from the current version),
        reading the encoding store (only documents never encoded are encoded), so the
        version it writes is a fresh full build by construction; the delta is then
        retired."""
        return self.start_build(name, full=True)

    # -- documents -------------------------------------------------------------------
    def upsert(self, name: str, docs: list[Document], refresh: str | None = None) -> int:
        """Write ``docs`` (durable before this returns); ``refresh`` (``REFRESH_MODES``):
        return only once they are searchable."""
        if len(docs) > self.settings.max_batch_documents:
            raise RequestTooLarge(
                f"{len(docs)} documents in one batch; the limit is {self.settings.max_batch_documents}"
            )
        return self._write(name, refresh, lambda: self.store.upsert(name, docs))

    def delete_documents(self, name: str, ids: list[str], refresh: str | None = None) -> int:
        return self._write(name, refresh, lambda: self.store.delete_documents(name, ids))

    def _write(self, name: str, refresh: str | None, write: Callable[[], int]) -> int:
        if refresh not in (None, "false", *REFRESH_MODES):
            raise UserError(f"refresh={refresh!r}: use one of false, {', '.join(REFRESH_MODES)}")
        if refresh in REFRESH_MODES:
            self._check_refreshable(name)
        n = write()
        if n and refresh in REFRESH_MODES:
            self.refresh_covering(name, self.store.get_collection(name).generation)
        return n

    def get_document(self, name: str, doc_id: str) -> DocumentOut:
        self.store.get_collection(name)
        doc = self.store.get_document(name, doc_id)
        if doc is None:
            raise NotFound(f"document {doc_id!r} not found in collection {name!r}")
        return DocumentOut.of(doc)

    # -- builds ----------------------------------------------------------------------
    def start_build(
        self, name: str, kinds: KindsSpec | None = None, *, full: bool = False
    ) -> JobOut:
        """Queue a build of every kind of the collection (``kinds`` adds kinds or changes
        their configs first) in the background worker; returns the job to poll.
        ``full``: retrain every kind's trained parts (``VersionStore.build``)."""
        kind_names = self._configure_kinds(name, kinds)
        if self._worker is None:
            self.start()
        job = self.store.create_job(name, kind_names)
        assert self._worker is not None
        future: Future = self._worker.submit(self._run_job, name, job.id, full)
        future.add_done_callback(_log_failure)
        return self.job_out(job)

    def _run_job(self, name: str, job_id: str, full: bool = False) -> str | None:
        from specrag.indexing.jobs import BuildCancelled

        try:
            ray = RayOptions.from_settings(self.settings) if self.settings.ray_address else None
            version_id = self._build(name, job_id, ray=ray, full=full)
        except (BuildCancelled, NotFound) as exc:
            log.info("build job %s of %r stopped: %s", job_id, name, exc)
            return None
        except BaseException as exc:
            # run_build records its own failures; this covers anything before it could.
            with contextlib.suppress(NotFound):
                if self.store.get_job(job_id).status not in ("succeeded", "failed"):
                    self.store.update_job(job_id, status="failed", stage="failed", error=str(exc))
            raise
        finally:
            self._build_ended(job_id)
        self._catch_up(name)
        self.version_for(name)  # warm the new version before the first query needs it
        try:
            self.prune(name)
        except Exception as exc:  # noqa: BLE001 - the build succeeded; pruning is housekeeping
            log.warning("could not prune the versions of %r: %s", name, exc)
        return version_id

    def _catch_up(self, name: str) -> None:
        """After a build (a merge): writes committed after its snapshot were in the old
        delta; refresh over the new version so they stay searchable (until then,
        ``version_for`` keeps serving the old version and delta)."""
        from specrag.indexing.delta import RefreshError

        try:
            info = self.store.get_collection(name)
            if self.pending(info):
                self.refresh(name)
        except (RefreshError, NotFound) as exc:
            log.info("no refresh after the build of %r: %s", name, exc)

    def _build_ended(self, job_id: str) -> None:
        if not self.build_listeners:
            return
        try:
            job = self.store.get_job(job_id)
        except NotFound:
            job = None
        for listener in self.build_listeners:
            try:
                listener(job)
            except Exception:  # noqa: BLE001 - metrics must not fail a build
                log.exception("build listener failed")

    def _build(
        self,
        name: str,
        job_id: str,
        progress_bar: bool = False,
        ray: RayOptions | None = None,
        full: bool = False,
    ) -> str:
        """run_build in the collection's folder, registered so that a delete can cancel it
        and wait for it. ``ray``: build on Ray (docs/scaling.md); ``full``: retrain every
        kind's trained parts."""
        from specrag.indexing.jobs import run_build

        info = self.store.get_collection(name)
        folder = info.folder
        with self._builds_guard:
            self._building[folder] = self._building.get(folder, 0) + 1
        try:
            return run_build(
                self.store,
                self.versions(info),
                name,
                job_id=job_id,
                progress_bar=progress_bar,
                cancelled=lambda: pause_point("build") or folder in self._cancelled,
                ray=ray,
                full=full,
            )
        finally:
            with self._builds_changed:
                self._building[folder] -= 1
                if not self._building[folder]:
                    del self._building[folder]
                self._builds_changed.notify_all()

    def get_job(self, job_id: str) -> JobOut:
        self._fail_stale_jobs()
        return self.job_out(self.store.get_job(job_id))

    def list_jobs(self, name: str) -> list[JobOut]:
        self.store.get_collection(name)
        self._fail_stale_jobs()
        return [self.job_out(job) for job in self.store.list_jobs(name)]

    def _fail_stale_jobs(self) -> None:
        """Fail jobs whose process died (a CLI build killed with -9) at most every few
        seconds, when someone looks at jobs: no job stays "running" forever."""
        now = time.monotonic()
        if now - self._stale_checked < STALE_CHECK_INTERVAL_S:
            return
        self._stale_checked = now
        self.store.fail_stale_jobs(self.settings.job_stale_after_s)

    @staticmethod
    def job_out(job) -> JobOut:
        fields = {f: getattr(job, f, None) for f in JobOut.model_fields}
        return JobOut(**fields)

    def _configure_kinds(self, name: str, kinds: KindsSpec | None) -> list[str]:
        """Merge ``kinds`` into the collection's configuration (registry.merge_kinds) and
        return the kinds a build will write: all of the collection's."""
        info = self.store.get_collection(name)
        merged = _dump(merge_kinds(info.kinds or {}, kinds))
        check_layout(read_shards(self.versions(name).root), merged)
        if merged != dict(info.kinds or {}):
            self.store.set_kinds(name, merged)
        return list(merged)

    def index(
        self,
        name: str,
        documents: Iterable[Document],
        kinds: KindsSpec | None = None,
        progress_bar: bool = False,
        shards: int | None = None,
        ray: RayOptions | None = None,
        full: bool = False,
    ) -> str:
        """Create the collection if needed, upsert ``documents`` and build synchronously
        (the CLI's path; the REST path is :meth:`start_build`). ``shards``: set the
        collection's shard count first; ``ray``: build on Ray; ``full``: retrain every
        kind's trained parts instead of reusing the current version's. Returns the
        version id."""
        try:
            configured = self.store.get_collection(name).kinds or {}
        except NotFound:
            configured = None
        if shards is not None:  # checked before anything changes
            check_layout(shards, merge_kinds(configured or {}, kinds or configured or ["bm25"]))
        if configured is None:
            self.store.create_collection(name, _dump(parse_kinds(kinds or ["bm25"])))
        if shards is not None:
            write_shards(self.versions(name).root, shards)
        kind_names = self._configure_kinds(name, kinds)
        for chunk in _chunks(documents, UPSERT_CHUNK):
            self.store.upsert(name, chunk)
        job = self.store.create_job(name, kind_names)
        version = self._build(name, job.id, progress_bar=progress_bar, ray=ray, full=full)
        self._catch_up(name)
        return version

    # -- search ----------------------------------------------------------------------
    def refresh(self, name: str) -> RefreshOut:
        """Make every document upserted since the current version searchable by the
        kinds a delta segment covers (``indexing/delta.py``), without a full build."""

        info = self.store.get_collection(name)
        with self._refresh_lock(info.folder):
            return self._refresh_locked(name, info)

    def _refresh_locked(self, name: str, info: CollectionInfo) -> RefreshOut:
        from specrag.indexing.delta import build_delta

        def progress(done: int, total: int, stage: str, unit: str = "doc") -> None:
            pause_point("refresh")  # crash tests: a kill -9 with the segment half written

        with self.store.corpus(name) as corpus:
            manifest = build_delta(corpus, self.versions(info), corpus.generation, progress)
        return RefreshOut(**{k: manifest[k] for k in RefreshOut.model_fields})

    def _refresh_lock(self, folder: str) -> threading.Lock:
        """One refresh of a collection at a time in this process (the background
        refresher, ``POST .../refresh`` and ``?refresh=`` writes share it)."""
        with self._locks_guard:
            return self._refresh_locks.setdefault(folder, threading.Lock())

    def version_for(self, name: str, info: CollectionInfo | None = None) -> OpenVersion:
        """The open CURRENT version of ``name`` with its live delta segment
        (``retrieval/live.py``), loading it when CURRENT or DELTA changed. While a new one
        loads, other requests keep getting the old one. Cached per storage folder, so a
        collection created again under the same name starts empty."""
        info = info or self.store.get_collection(name)
        versions = self.versions(info)
        key = info.folder
        base = versions.current()
        current = live_id(versions, base) if base is not None else None
        cached = self._versions.get(key)
        if current is None:
            if cached is not None:
                return cached
            raise NotReady(
                f"collection {name!r} has no index yet; start a build (POST /collections/{name}/builds)"
            )
        if cached is not None and cached.id == current:
            return cached
        lock = self._lock_for(key)
        if cached is not None and not lock.acquire(blocking=False):
            return cached  # another thread is loading the new version
        if cached is None:
            lock.acquire()
        try:
            cached = self._versions.get(key)
            if cached is None or cached.id != current:
                opened = self._bases.get(key)
                if opened is None or opened.id != base:
                    opened = open_version(versions, base)
                    self._bases[key] = opened
                fresh = with_delta(versions, opened)
                if cached is not None and _covers(fresh) < _covers(cached):
                    # A merge switched CURRENT: writes after its snapshot are in the old
                    # delta only. Keep serving old version + delta until a refresh over
                    # the new version covers them (never drop an acknowledged write).
                    self.refresher.wake()
                    return cached
                dropped = cached is not None and cached.path != fresh.path
                first = cached is None
                self._versions[key] = cached = fresh
                if dropped or first:
                    # The old version is dropped only now (its view held it): a collection
                    # can free it, and what is kept leaves the collector's walks.
                    freeze_after_load()
                if dropped:  # no longer held by this cache: the refresher may prune it
                    with self._held_guard:
                        self._prune_due.add(key)
            return cached
        finally:
            lock.release()

    def _lock_for(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._load_locks.setdefault(name, threading.Lock())

    def allowed_mask(
        self, name: str, version: OpenVersion, generation: int, filter_
    ) -> DocMask | None:
        """The rows a search may return (None: every row): documents that still exist
        (deletes since the version are tombstones until the next build) and match
        ``filter_``. A filter selects existing documents only, so its mask is also the
        tombstone mask. See ``mask_bitmap`` for how it is built and cached."""
        manifest = version.manifest
        if filter_ is None and manifest.get("generation") == generation and "delta" not in manifest:
            return None  # built from this very generation: no tombstones
        return self.mask_bitmap(name, version, generation, filter_)

    def mask_bitmap(
        self, name: str, version: OpenVersion, generation: int, filter_=None
    ) -> DocMask:
        """The bitmap over ``version``'s rows of the documents now in the collection that
        match ``filter_`` (all of them when None): one SQL query for their ids, mapped to
        rows by ``OpenVersion.mask_for`` (vectorized). Cached, read-only, per (collection,
        version, generation, filter): every write bumps the generation, so a cached mask
        is never stale, and the cache is bounded in count and bytes (docs/design.md)."""
        key = (name, version.id, generation, filter_key(filter_))
        mask = self._masks.get(key)
        if mask is None:
            mask = version.mask_for(self.store.matching_ids(name, filter_, ordered=False))
            mask.setflags(write=False)
            self._masks.put(key, mask)
        return mask

    def check_limits(self, request: SearchRequest) -> None:
        if request.k > self.settings.max_k:
            raise RequestTooLarge(f"k={request.k} is over the limit max_k={self.settings.max_k}")
        if len(request.query) > self.settings.max_query_chars:
            raise RequestTooLarge(
                f"query has {len(request.query)} characters; the limit is "
                f"{self.settings.max_query_chars}"
            )
        for spec in request.retrievers or []:
            if spec.k is not None and spec.k > self.settings.max_k:
                raise RequestTooLarge(
                    f"retriever {spec.kind!r} k={spec.k} is over the limit max_k={self.settings.max_k}"
                )

    def allowed_models(self, version: OpenVersion | None = None) -> set[str]:
        """Models a request may name: the configured generator and draft model, the
        settings' allow-list, the default MaxSim model and every model the version's kinds
        were built with."""
        from specrag.rerank import DEFAULT_MAXSIM_MODEL

        allowed = {"extractive", DEFAULT_MAXSIM_MODEL, *self.settings.allowed_models}
        allowed |= {m for m in (self.settings.generator, self.settings.draft_model) if m}
        if version is not None:
            for entry in version.manifest.get("kinds", {}).values():
                config = entry.get("config", {}) if isinstance(entry, dict) else {}
                allowed |= {
                    config[key]
                    for key in ("model", "tokenizer")
                    if isinstance(config.get(key), str)
                }
        return allowed

    def check_model(self, field: str, model: str | None, version: OpenVersion | None) -> None:
        if model is None:
            return
        allowed = self.allowed_models(version)
        if model not in allowed:
            raise ModelNotAllowed(
                f"{field} {model!r} is not one of the configured models: "
                f"{', '.join(sorted(allowed))} (add it to SPECRAG_ALLOWED_MODELS)"
            )

    def search(self, name: str, request: SearchRequest) -> SearchResponse:
        started = time.perf_counter()
        self.check_limits(request)
        info = self.store.get_collection(name)
        version = self.version_for(name, info)
        if request.rerank is not None:
            self.check_model("rerank.model", request.rerank.model, version)
        t0 = time.perf_counter()
        allowed = self.allowed_mask(name, version, info.generation, request.filter)
        filter_ms = _ms(t0)
        stages = self.stages.for_request(version, request)
        calibrators = self.stages.fusion_calibrators(version, request)
        with self._holding(info.folder, version):
            outcome = pipeline.search(
                version, request, allowed, stages, texts=self.stages.texts, calibrators=calibrators
            )
        t0 = time.perf_counter()
        hits = self._hits_out(name, outcome.hits[0], request.include)
        timings = {"filter": filter_ms, **outcome.timings_ms, "fetch": _ms(t0)}
        timings["total"] = _ms(started)
        return SearchResponse(collection=name, version=version.id, hits=hits, timings_ms=timings)

    def search_batch(
        self, name: str, queries: list[str], request: SearchRequest
    ) -> tuple[OpenVersion, list[list[Hit]]]:
        """Every query with ``request``'s settings (its ``query`` is ignored), batched per
        kind: what evaluation and calibration run. Returns the version searched."""
        self.check_limits(request)
        info = self.store.get_collection(name)
        version = self.version_for(name, info)
        if request.rerank is not None:
            self.check_model("rerank.model", request.rerank.model, version)
        allowed = self.allowed_mask(name, version, info.generation, request.filter)
        stages = self.stages.for_request(version, request)
        calibrators = self.stages.fusion_calibrators(version, request)
        with self._holding(info.folder, version):
            outcome = pipeline.search_batch(
                version, queries, request, allowed, stages,
                texts=self.stages.texts, calibrators=calibrators,
            )  # fmt: skip
        return version, outcome.hits

    def calibrate(
        self,
        name: str,
        queries: dict[str, str],
        qrels: dict[str, dict[str, int]],
        request: SearchRequest,
    ) -> tuple[str, int]:
        """Fit the calibrator that ``min_relevance`` (and ``fusion="calibrated"``) reads on
        training ``queries`` (qid -> text) with ``qrels``, over the top ``request.k`` hits
        of ``request``'s pipeline (its depth), and store it in the version searched under
        that pipeline's key, with its record. Returns (the file written, queries used)."""
        if request.min_relevance is not None:
            raise pipeline.SearchError("calibrate the scores themselves: leave min_relevance out")
        qids = list(queries)
        version, hits = self.search_batch(name, [queries[q] for q in qids], request)
        run = {q: [(h.doc_id, h.score) for h in hs] for q, hs in zip(qids, hits, strict=True)}
        record = pipeline.scores_record(version, request, self.stages.recipe)
        calibrator = fit_calibration(run, qrels, top_n=request.k, pipeline=record)
        path = calibration_path(version.path, pipeline.calibration_key(record))
        calibrator.save(path)
        return str(path), len(qids)

    # -- answers ---------------------------------------------------------------------
    def ask(self, name: str, body: AskRequest) -> Iterator[tuple[str, Any]]:
        """Retrieve with the request's search options, then answer from the hits with the
        configured generator. Yields ("delta", text) as the answer grows, then ("done",
        AskResponse). Raises GeneratorUnavailable (HTTP 503) before any retrieval."""
        from specrag.generation.prompt import Passage
        from specrag.generation.service import get_generator

        version = self.version_for(name) if body.model or body.draft_model else None
        self.check_model("model", body.model, version)
        self.check_model("draft_model", body.draft_model, version)
        generator = get_generator(body.model or self.settings.generator, self.settings.device)
        started = time.perf_counter()
        found = self.search(name, body.search_request())
        retrieval_ms = _ms(started)
        passages = [Passage(h.doc_id, h.text or "", h.title) for h in found.hits]
        options = body.options(self.settings.draft_model)
        datastore = (
            self._datastore_for(name, generator) if "datastore" in options.drafters else None
        )
        for event, value in generator.stream(body.question, passages, options, datastore):
            if event == "delta":
                yield event, value
            else:
                yield (
                    event,
                    AskResponse(
                        collection=name,
                        version=found.version,
                        answer=value.text,
                        citations=[CitationOut(**vars(c)) for c in value.citations],
                        stats={**value.stats, "retrieval_ms": retrieval_ms},
                    ),
                )

    def _datastore_for(self, name: str, generator) -> Any:
        """The collection's datastore searcher when it was built with the generator's
        tokenizer (drafting is an optimization: without it, answers are the same)."""
        loaded = getattr(generator, "loaded", None)
        if loaded is None:
            return None
        searcher = self.version_for(name).searchers.get("datastore")
        if searcher is None:
            return None
        tokenizers = {generator.name, getattr(loaded.tokenizer, "name_or_path", None)}
        return searcher if searcher.config.tokenizer in tokenizers else None

    def _hits_out(self, name: str, hits, include: list[str]) -> list[SearchHit]:
        want_doc = {"text", "title", "metadata"} & set(include)
        docs = self.store.get_documents(name, [h.doc_id for h in hits]) if want_doc else {}
        out = []
        for hit in hits:
            item = SearchHit(doc_id=hit.doc_id, score=hit.score)
            if "scores" in include:
                item.scores = dict(hit.scores)
            if want_doc:
                doc = docs.get(hit.doc_id)
                if doc is not None:
                    item.title = doc.title if "title" in include else None
                    item.text = doc.text if "text" in include else None
                    item.metadata = dict(doc.metadata) if "metadata" in include else None
            out.append(item)
        return out


_LIVE_FIELDS = {"refresh_interval", "merge_max_share", "merge_max_docs"}


def _covers(version: OpenVersion) -> int:
    """The collection generation an open version (with its delta) was built from."""
    manifest = version.manifest.get("delta") or version.manifest
    generation = manifest.get("generation")
    return generation if isinstance(generation, int) else -1


def _mtime(path: Path) -> datetime | None:
    """When a manifest was written: a delta's is its refresh, a version's its build or
    merge (sub-second, unlike the manifest's own ``created_at``)."""
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def _dump(kinds) -> dict[str, dict[str, Any]]:
    return {name: config.model_dump() for name, config in kinds.items()}


def _chunks(items: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def remove_folder(path) -> None:
    """Remove a deleted collection's folder: renamed aside first (one atomic step, so no
    half-removed folder is ever read as a collection), then removed; errors raise."""
    if not path.exists():
        return
    trash = path.with_name(f".deleted-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    os.replace(path, trash)
    shutil.rmtree(trash)


def _log_failure(future: Future) -> None:
    exc = future.exception()
    if exc is None:
        return
    if isinstance(exc, UserError):
        log.error("build failed: %s", exc)
    else:  # a defect: keep where it happened
        log.error("build failed: %s", exc, exc_info=exc)


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
