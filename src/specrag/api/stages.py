"""The later stages a search request gets (rerank, calibrated relevance), built from the
request and the version, with the loaded rerankers and calibrators cached per version;
and what the pipeline borrows from the service for its options: documents' texts (bm25
PRF) and per-kind calibrators (``fusion="calibrated"``).

They are wired here, in the service layer, because a reranker may need documents' texts
from the store, which ``retrieval/`` must not reach.
"""

from __future__ import annotations

from specrag.cache import LRUCache
from specrag.rerank import Reranker, make_reranker
from specrag.rerank.stage import RerankStage
from specrag.retrieval import pipeline
from specrag.retrieval.calibration import (
    CalibrationError,
    Calibrator,
    RelevanceStage,
    calibration_path,
)
from specrag.retrieval.pipeline import NotAvailable
from specrag.retrieval.recipe import HYBRID, Recipe
from specrag.retrieval.request import RerankSpec, SearchRequest
from specrag.retrieval.stages import Stage
from specrag.retrieval.version import OpenVersion
from specrag.storage.store import DocumentStore

#: The one calibration file of versions calibrated before calibrations recorded their
#: pipeline (one per version, whatever retriever it was fitted on): refused when found.
LEGACY_CALIBRATION = "search"


#: Rerankers (a model and a version's token store each) and calibrators kept loaded; the
#: least recently used go, so old index versions and unused models are released.
RERANKER_CACHE_SIZE = 4
CALIBRATOR_CACHE_SIZE = 16


class StageBuilder:
    def __init__(self, store: DocumentStore, recipe: Recipe = HYBRID):
        self.store = store
        self.recipe = recipe
        self._rerankers: LRUCache[Reranker] = LRUCache(RERANKER_CACHE_SIZE, "rerankers")
        self._calibrators: LRUCache[Calibrator] = LRUCache(CALIBRATOR_CACHE_SIZE, "calibrators")

    def for_request(self, version: OpenVersion, request: SearchRequest) -> list[Stage]:
        stages: list[Stage] = []
        spec = pipeline.rerank_spec(version, request, self.recipe)
        if spec is not None:
            stages.append(RerankStage(self._reranker(version, spec), spec.top_n, self.texts))
        if request.min_relevance is not None:
            calibrator = self.checked_calibrator(version, request, request.k, "min_relevance")
            stages.append(RelevanceStage(calibrator, request.min_relevance))
        return stages

    def fusion_calibrators(
        self, version: OpenVersion, request: SearchRequest
    ) -> dict[str, Calibrator]:
        """For ``fusion="calibrated"``: each fused kind's calibration, fitted on that kind
        alone (with the request's PRF for bm25); none for other fusions."""
        the_plan = pipeline.plan(version, request, self.recipe)
        if the_plan.fusion != "calibrated":
            return {}
        return {
            s.kind: self.checked_calibrator(
                version, pipeline.kind_request(request, s.kind), None, "fusion calibrated"
            )
            for s in the_plan.specs
        }

    def checked_calibrator(
        self, version: OpenVersion, request: SearchRequest, k: int | None, purpose: str
    ) -> Calibrator:
        """The calibration of ``request``'s scoring pipeline, checked against it (and
        ``k`` against its depth): a 4xx naming the command to run when there is none."""
        record = pipeline.scores_record(version, request, self.recipe)
        key = pipeline.calibration_key(record)
        calibrator = self.calibrator(version, key, purpose)
        calibrator.check_pipeline(record, k)
        return calibrator

    def _reranker(self, version: OpenVersion, spec: RerankSpec) -> Reranker:
        def load() -> Reranker:
            try:
                return make_reranker(spec.method, spec.model, version, self.recipe.maxsim_fusion)
            except (ValueError, OSError) as exc:
                raise NotAvailable(f"rerank {spec.method}: {exc}") from exc

        return self._rerankers.get_or_create((version.id, spec.method, spec.model), load)

    def texts(self, version: OpenVersion, doc_ids: list[str]) -> list[str]:
        """The documents' texts from the store, in order ("" for a missing one)."""
        docs = self.store.get_documents(version.manifest.get("collection"), doc_ids)
        return [docs[d].full_text() if d in docs else "" for d in doc_ids]

    def calibrator(self, version: OpenVersion, key: str, purpose: str) -> Calibrator:
        """The version's calibration of the scoring pipeline named ``key`` (``purpose``:
        what needs it, for the error message)."""

        path = calibration_path(version.path, key)

        def load() -> Calibrator:
            if path.exists():
                return Calibrator.load(path)
            if calibration_path(version.path, LEGACY_CALIBRATION).exists():
                raise CalibrationError(
                    "this version's calibration was written without a record of the "
                    "retriever it was fitted on, so it cannot be applied: re-run `specrag "
                    f"calibrate` (for this search's scores: {key})"
                )
            fitted = sorted(p.stem for p in (version.path / "calibration").glob("*.json"))
            raise NotAvailable(
                f"{purpose} needs a calibration of this search's scores ({key}), and this "
                "index version has none"
                + (f" (it has: {', '.join(fitted)})" if fitted else "")
                + ": run `specrag calibrate --collection NAME --queries FILE --qrels FILE` "
                "with the same --retriever/--rerank settings"
            )

        # The file's time in the key: a calibration written again is read again.
        stamp = path.stat().st_mtime_ns if path.exists() else None
        return self._calibrators.get_or_create((version.id, key, stamp), load)
