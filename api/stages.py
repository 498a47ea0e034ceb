"""The late pipeline stages (rerank, calibrated relevance) bound to a document store.

They live here, not in ``retrieval/``, because they reach downstream packages (``rerank``)
and the store (texts for rerankers that need them). The service passes ``stage_hooks(store)``
to ``retrieval.pipeline``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from specrag.rerank import Reranker, make_reranker
from specrag.retrieval.calibration import Calibrator, calibration_path
from specrag.retrieval.pipeline import Hooks, NotAvailable
from specrag.retrieval.request import RerankSpec
from specrag.retrieval.version import OpenVersion
from specrag.storage.store import DocumentStore
from specrag.types import Hit

#: The calibration file the relevance stage reads (``specrag calibrate`` writes it).
CALIBRATION_NAME = "search"


class Stages:
    """Rerankers and calibrators are loaded once per (version, settings) and cached."""

    def __init__(self, store: DocumentStore):
        self.store = store
        self._rerankers: dict[tuple[str, str, str | None], Reranker] = {}
        self._calibrators: dict[str, Calibrator] = {}
        self._lock = threading.Lock()

    def hooks(self) -> Hooks:
        return Hooks(rerank=self.rerank, relevance=self.relevance)

    def rerank(self, version: OpenVersion, query: str, hits: list[Hit], spec: RerankSpec) -> list[Hit]:
        if not hits:
            return hits
        key = (version.id, spec.method, spec.model)
        with self._lock:
            if key not in self._rerankers:
                try:
                    self._rerankers[key] = make_reranker(spec.method, spec.model, version)
                except (ValueError, OSError) as exc:
                    raise NotAvailable(f"rerank {spec.method}: {exc}") from exc
            reranker = self._rerankers[key]
        head = hits[: spec.top_n]
        rows = np.array([version.row_of(h.doc_id) for h in head], dtype=np.int64)
        texts = None
        if reranker.needs_texts:
            collection = version.manifest.get("collection")
            docs = self.store.get_documents(collection, [h.doc_id for h in head])
            texts = [docs[h.doc_id].full_text() if h.doc_id in docs else "" for h in head]
        return reranker.rerank(query, head, texts=texts, rows=rows)

    def relevance(self, version: OpenVersion, query: str, hits: list[Hit]) -> Sequence[float]:
        calibrator = self._calibrator(version)
        if not hits:
            return []
        return calibrator.predict(np.array([h.score for h in hits], dtype=np.float64)).tolist()

    def _calibrator(self, version: OpenVersion) -> Calibrator:
        with self._lock:
            if version.id not in self._calibrators:
                path = calibration_path(version.path, CALIBRATION_NAME)
                if not path.exists():
                    raise NotAvailable(
                        "min_relevance needs a calibration of this index version: run "
                        "`specrag calibrate --collection NAME --queries FILE --qrels FILE`"
                    )
                self._calibrators[version.id] = Calibrator.load(path)
            return self._calibrators[version.id]
