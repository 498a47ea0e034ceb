"""CollectionService: the one object behind the REST routes and the CLI.

It owns the database engine and the DocumentStore, opens index versions lazily and caches
one per collection (reloaded when ``CURRENT`` changes; the old one keeps serving while the
new one loads), caches tombstone masks per (version, collection generation), and runs
builds in one background worker thread so that no request waits for a build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

from specrag import __version__ as specrag_version
from specrag.api.schemas import (
    AskRequest,
    AskResponse,
    CitationOut,
    CollectionOut,
    DocumentOut,
    Health,
    JobOut,
    RefreshOut,
    SearchHit,
    SearchResponse,
)
from specrag.api.stages import StageBuilder
from specrag.errors import UserError
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
from specrag.storage.store import CollectionInfo, DocumentStore, MetadataLimits, NotFound
from specrag.types import DocMask, Document, Hit

log = logging.getLogger(__name__)

#: Documents per store.upsert call when indexing from a file.
UPSERT_CHUNK = 1000
#: Tombstone masks kept (one per collection and generation in practice).
MASK_CACHE_SIZE = 64
#: Least seconds between two looks for jobs whose process died.
STALE_CHECK_INTERVAL_S = 2.0
#: Seconds a collection delete waits for its running build to stop.
BUILD_STOP_TIMEOUT_S = 60.0


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
        self._masks: OrderedDict[tuple[str, str, int], DocMask] = OrderedDict()
        self._masks_guard = threading.Lock()
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
        #: Called with the job row (None when it is gone with its collection) when a build
        #: job of the worker ends: the metrics, the build admission count.
        self.build_listeners: list[Callable[[Any], None]] = []

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

    def close(self) -> None:
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
        self, name: str, kinds: KindsSpec | None, shards: int = 1
    ) -> CollectionOut:
        parsed = parse_kinds(kinds or ["bm25"])
        check_layout(shards, parsed)  # before the row exists; written once it does
        info = self.store.create_collection(name, _dump(parsed))
        if shards != 1:
            write_shards(self.versions(name).root, shards, parsed)
        return self._collection_out(info)

    def get_collection(self, name: str) -> CollectionOut:
        return self._collection_out(self.store.get_collection(name))

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

    def _collection_out(self, info) -> CollectionOut:
        return CollectionOut(
            name=info.name,
            kinds=dict(info.kinds or {}),
            n_documents=info.n_documents,
            created_at=info.created_at,
            # the CURRENT file is the truth (indexing/retention.py); the row follows it
            current_version=self.versions(info).current() or info.current_version,
            generation=info.generation,
            shards=read_shards(self.versions(info).root),
        )

    # -- documents -------------------------------------------------------------------
    def upsert(self, name: str, docs: list[Document]) -> int:
        if len(docs) > self.settings.max_batch_documents:
            raise RequestTooLarge(
                f"{len(docs)} documents in one batch; the limit is {self.settings.max_batch_documents}"
            )
        return self.store.upsert(name, docs)

    def delete_documents(self, name: str, ids: list[str]) -> int:
        return self.store.delete_documents(name, ids)

    def get_document(self, name: str, doc_id: str) -> DocumentOut:
        self.store.get_collection(name)
        doc = self.store.get_document(name, doc_id)
        if doc is None:
            raise NotFound(f"document {doc_id!r} not found in collection {name!r}")
        return DocumentOut.of(doc)

    # -- builds ----------------------------------------------------------------------
    def start_build(self, name: str, kinds: KindsSpec | None = None) -> JobOut:
        """Queue a build of every kind of the collection (``kinds`` adds kinds or changes
        their configs first) in the background worker; returns the job to poll."""
        kind_names = self._configure_kinds(name, kinds)
        if self._worker is None:
            self.start()
        job = self.store.create_job(name, kind_names)
        assert self._worker is not None
        future: Future = self._worker.submit(self._run_job, name, job.id)
        future.add_done_callback(_log_failure)
        return self.job_out(job)

    def _run_job(self, name: str, job_id: str) -> str | None:
        from specrag.indexing.jobs import BuildCancelled

        try:
            ray = RayOptions.from_settings(self.settings) if self.settings.ray_address else None
            version_id = self._build(name, job_id, ray=ray)
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
        self.version_for(name)  # warm the new version before the first query needs it
        try:
            self.prune(name)
        except Exception as exc:  # noqa: BLE001 - the build succeeded; pruning is housekeeping
            log.warning("could not prune the versions of %r: %s", name, exc)
        return version_id

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
        self, name: str, job_id: str, progress_bar: bool = False, ray: RayOptions | None = None
    ) -> str:
        """run_build in the collection's folder, registered so that a delete can cancel it
        and wait for it. ``ray``: build on Ray (docs/scaling.md)."""
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
                cancelled=lambda: folder in self._cancelled,
                ray=ray,
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
    ) -> str:
        """Create the collection if needed, upsert ``documents`` and build synchronously
        (the CLI's path; the REST path is :meth:`start_build`). ``shards``: set the
        collection's shard count first; ``ray``: build on Ray. Returns the version id."""
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
        return self._build(name, job.id, progress_bar=progress_bar, ray=ray)

    # -- search ----------------------------------------------------------------------
    def refresh(self, name: str) -> RefreshOut:
        """Make every document upserted since the current version searchable by the
        kinds a delta segment covers (``indexing/delta.py``), without a full build."""
        from specrag.indexing.delta import build_delta

        info = self.store.get_collection(name)
        with self._locks_guard:
            lock = self._refresh_locks.setdefault(info.folder, threading.Lock())
        with lock, self.store.corpus(name) as corpus:
            manifest = build_delta(corpus, self.versions(info), corpus.generation)
        return RefreshOut(**{k: manifest[k] for k in RefreshOut.model_fields})

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
                cached = with_delta(versions, opened)
                self._versions[key] = cached
            return cached
        finally:
            lock.release()

    def _lock_for(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._load_locks.setdefault(name, threading.Lock())

    def live_mask(self, name: str, version: OpenVersion, generation: int) -> DocMask:
        """Rows of ``version`` whose document still exists (deletes are tombstones until the
        next build), cached per (collection, version, generation)."""
        key = (name, version.id, generation)
        with self._masks_guard:
            mask = self._masks.get(key)
            if mask is not None:
                self._masks.move_to_end(key)
                return mask
        mask = version.mask_for(self.store.live_ids(name))
        mask.setflags(write=False)
        with self._masks_guard:
            self._masks[key] = mask
            while len(self._masks) > MASK_CACHE_SIZE:
                self._masks.popitem(last=False)
        return mask

    def allowed_mask(self, name: str, version: OpenVersion, generation: int, filter_) -> DocMask:
        mask = self.live_mask(name, version, generation)
        if filter_ is not None:
            mask = mask & version.mask_for(self.store.matching_ids(name, filter_))
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
