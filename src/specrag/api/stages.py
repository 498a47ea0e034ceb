"""The later stages a search request gets (rerank, calibrated relevance), built from the
request and the version, with the loaded rerankers and calibrators cached per version.

They are wired here, in the service layer, because a reranker may need documents' texts
from the store, which ``retrieval/`` must not reach.
"""

from __future__ import annotations

from specrag.cache import LRUCache
from specrag.rerank import Reranker, make_reranker
from specrag.rerank.stage import RerankStage
from specrag.retrieval import pipeline
from specrag.retrieval.calibration import Calibrator, RelevanceStage, calibration_path
from specrag.retrieval.pipeline import NotAvailable
from specrag.retrieval.recipe import HYBRID, Recipe
from specrag.retrieval.request import RerankSpec, SearchRequest
from specrag.retrieval.stages import Stage
from specrag.retrieval.version import OpenVersion
from specrag.storage.store import DocumentStore

#: The calibration file the relevance stage reads (``specrag calibrate`` writes it).
CALIBRATION_NAME = "search"


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
            stages.append(RerankStage(self._reranker(version, spec), spec.top_n, self._texts))
        if request.min_relevance is not None:
            stages.append(RelevanceStage(self.calibrator(version), request.min_relevance))
        return stages

    def _reranker(self, version: OpenVersion, spec: RerankSpec) -> Reranker:
        def load() -> Reranker:
            try:
                return make_reranker(spec.method, spec.model, version, self.recipe.maxsim_fusion)
            except (ValueError, OSError) as exc:
                raise NotAvailable(f"rerank {spec.method}: {exc}") from exc

        return self._rerankers.get_or_create((version.id, spec.method, spec.model), load)

    def _texts(self, version: OpenVersion, doc_ids: list[str]) -> list[str]:
        docs = self.store.get_documents(version.manifest.get("collection"), doc_ids)
        return [docs[d].full_text() if d in docs else "" for d in doc_ids]

    def calibrator(self, version: OpenVersion) -> Calibrator:
        def load() -> Calibrator:
            path = calibration_path(version.path, CALIBRATION_NAME)
            if not path.exists():
                raise NotAvailable(
                    "min_relevance needs a calibration of this index version: run "
                    "`specrag calibrate --collection NAME --queries FILE --qrels FILE`"
                )
            return Calibrator.load(path)

        return self._calibrators.get_or_create(version.id, load)
