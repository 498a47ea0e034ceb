"""A model test of a live collection (issue #14): random sequences of upsert, update,
delete, refresh, merge and restart, against a model that rebuilds from scratch.

The model is the list of documents in row order (an update keeps its row, a document
deleted and written again goes last, as in the database) and, when asked, a fresh full
build of it in another folder. Checked:
- after every step: no search returns a document the model does not hold (deletes and
  restarts included), and the collection's count matches;
- after every refresh: ``dense`` (flat) returns exactly what the fresh build returns;
- after every merge: the same for ``dense`` and ``bm25``, and the bm25 files are
  byte-identical to the fresh build's.

Bounded: MiniLM on short texts (demo titles), a handful of ids, two sequences of 8 to
10 steps, each ending with a refresh and a merge (so both checks run in every example).
"""

from __future__ import annotations

import filecmp
from itertools import count

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specrag.api.service import CollectionService
from specrag.indexing.versions import VersionStore
from specrag.retrieval.request import SearchRequest
from specrag.retrieval.version import open_version
from specrag.settings import Settings
from specrag.storage.store import LiveSettings
from specrag.types import Document
from tests.conftest import demo_documents

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # short texts: no thread pool

NAME = "model"
KINDS = {"dense": {}, "bm25": {}}
IDS = [f"d{i}" for i in range(7)]
TEXTS = [d.title for d in demo_documents(20)]
QUERIES = ["cancer cells", "vitamin D deficiency", "protein expression in mice"]
K = 10


OPS = st.one_of(
    st.tuples(st.just("upsert"), st.sampled_from(IDS), st.sampled_from(TEXTS)),
    st.tuples(st.just("update"), st.integers(0, 99), st.sampled_from(TEXTS)),
    st.tuples(st.just("delete"), st.integers(0, 99)),
    st.tuples(st.just("refresh")),
    st.tuples(st.just("merge")),
    st.tuples(st.just("restart")),
)


class LiveModel:
    """The collection under test, the model, and the checks."""

    def __init__(self, root, first: list[str]):
        self.settings = Settings(home=root / "home")
        self.truth_root = VersionStore(root / "truth")
        self.service = self._open()
        self.service.store.create_collection(NAME, KINDS, LiveSettings(None, 10.0, 10**6))
        self.model: dict[str, str] = {IDS[i]: text for i, text in enumerate(first)}
        self.service.index(NAME, self._docs(), None)

    def _open(self) -> CollectionService:
        service = CollectionService(self.settings)
        service.start()  # the build worker; refreshes are this test's steps
        return service

    def _docs(self) -> list[Document]:
        return [Document(i, text) for i, text in self.model.items()]

    def apply(self, op: tuple) -> None:
        name, *args = op
        if name == "upsert" or (name == "update" and self.model):
            doc_id, text = args
            if name == "update":
                doc_id = sorted(self.model)[doc_id % len(self.model)]
            self.service.upsert(NAME, [Document(doc_id, text)])
            self.model[doc_id] = text  # an update keeps its place; a new id goes last
        elif name == "delete" and self.model:
            doc_id = sorted(self.model)[args[0] % len(self.model)]
            assert self.service.delete_documents(NAME, [doc_id]) == 1
            del self.model[doc_id]
        elif name == "refresh":
            self.service.refresh(NAME)
            self.compare(["dense"])
        elif name == "merge" and self.model:
            version = self.service.merge_now(NAME)
            truth = self.compare(["dense", "bm25"])
            got, want = self.service.versions(NAME).path(version) / "bm25", truth.path / "bm25"
            files = sorted(p.name for p in want.iterdir())
            assert files and files == sorted(p.name for p in got.iterdir())
            _, mismatch, errors = filecmp.cmpfiles(got, want, files, shallow=False)
            assert not mismatch and not errors, mismatch
        elif name == "restart":
            self.service.close()
            self.service = self._open()
        self.never_a_deleted_document()

    def never_a_deleted_document(self) -> None:
        assert self.service.get_collection(NAME).n_documents == len(self.model)
        for retriever in ("dense", "bm25"):
            request = SearchRequest(query=QUERIES[0], k=K, retriever=retriever)
            found = {h.doc_id for h in self.service.search(NAME, request).hits}
            assert found <= set(self.model), (retriever, found - set(self.model))

    def compare(self, kinds: list[str]):
        """Search results equal to a fresh full build of the model (None when empty)."""
        if not self.model:
            for kind in kinds:
                request = SearchRequest(query=QUERIES[0], k=K, retriever=kind)
                assert self.service.search(NAME, request).hits == []
            return None
        truth = open_version(self.truth_root, self.truth_root.build(self._docs(), KINDS))
        for kind in kinds:
            want = truth.searchers[kind].search(QUERIES, K)
            for query, expected in zip(QUERIES, want, strict=True):
                got = self.service.search(NAME, SearchRequest(query=query, k=K, retriever=kind))
                assert [h.doc_id for h in got.hits] == [h.doc_id for h in expected], kind
                np.testing.assert_allclose(
                    [h.score for h in got.hits], [h.score for h in expected], rtol=1e-5, atol=1e-5
                )
        return truth


RUNS = count()


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    first=st.lists(st.sampled_from(TEXTS), min_size=3, max_size=5),
    ops=st.lists(OPS, min_size=8, max_size=10),
)
def test_live_collection_matches_a_rebuild_from_scratch(tmp_path_factory, first, ops):
    """Every sequence ends with a refresh and a merge, so each example checks both."""
    live = LiveModel(tmp_path_factory.mktemp(f"live-model-{next(RUNS)}"), first)
    try:
        for op in [*ops, ("refresh",), ("merge",)]:
            live.apply(op)
    finally:
        live.service.close()
