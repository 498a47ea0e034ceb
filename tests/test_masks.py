"""Filter and tombstone masks (``CollectionService.allowed_mask``, ``OpenVersion.mask_for``)
against a straightforward reference: row by row, the row is allowed when it is its id's
last row, the document still exists, and the Python filter evaluator accepts its metadata.
Random filters, deletes and updates since the version, ids the database never had, and
repeated ids (a delta's rows over superseded base rows)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from specrag.api.service import CollectionService
from specrag.cache import LRUCache
from specrag.retrieval.version import OpenVersion
from specrag.settings import Settings
from specrag.storage.filters import FilterError, matches
from specrag.types import Document
from tests.test_filters import random_filter, random_metadata


def reference_mask(doc_ids: list[str], live: dict[str, dict], filt) -> np.ndarray:
    last = {d: i for i, d in enumerate(doc_ids)}
    return np.array(
        [
            last[d] == i and d in live and (filt is None or matches(filt, live[d]))
            for i, d in enumerate(doc_ids)
        ],
        dtype=bool,
    )


@pytest.fixture
def service(tmp_path):
    service = CollectionService(Settings(home=tmp_path / "home"))
    service.store.create_collection("c")
    yield service
    service.engine.dispose()


def test_masks_equal_the_reference_on_random_filters(service, tmp_path):
    rng = random.Random(7)
    docs = [Document(f"d{i}", "text", None, random_metadata(rng)) for i in range(400)]
    service.store.upsert("c", docs)
    # The version: most documents in shuffled row order, ids never stored, and a delta
    # that repeats some ids after the base rows.
    base = [d.id for d in docs[:350]] + [f"ghost{i}" for i in range(20)]
    rng.shuffle(base)
    doc_ids = base + rng.sample(base, 30) + [d.id for d in docs[350:360]]
    version = OpenVersion("v1", tmp_path, {"generation": -1, "delta": {}}, np.array(doc_ids))
    # Since the version: deletes, then updates (some re-create deleted documents).
    gone = rng.sample([d.id for d in docs], 60)
    service.store.delete_documents("c", gone)
    updated = [Document(d.id, "text", None, random_metadata(rng)) for d in docs[:40]]
    service.store.upsert("c", updated)
    live = {d.id: d.metadata for d in docs if d.id not in gone}
    live.update({d.id: d.metadata for d in updated})
    generation = service.store.get_collection("c").generation

    tombstones = service.allowed_mask("c", version, generation, None)
    expected_live = reference_mask(doc_ids, live, None)
    assert np.array_equal(tombstones, expected_live)
    assert 0 < tombstones.sum() < len(doc_ids)
    nontrivial = 0
    for _ in range(150):
        filt = random_filter(rng)
        got = service.allowed_mask("c", version, generation, filt)
        expected = reference_mask(doc_ids, live, filt)
        assert np.array_equal(got, expected), f"filter {filt}"
        assert np.array_equal(got, got & expected_live)  # a filter never revives a tombstone
        nontrivial += 0 < expected.sum() < expected_live.sum()
    assert nontrivial > 50


def test_a_cached_mask_follows_writes(service, tmp_path):
    docs = [Document(f"d{i}", "t", None, {"x": i % 2}) for i in range(10)]
    service.store.upsert("c", docs)
    generation = service.store.get_collection("c").generation
    version = OpenVersion(
        "v1", tmp_path, {"generation": generation}, np.array([d.id for d in docs])
    )
    filt = {"x": 1}
    assert service.allowed_mask("c", version, generation, None) is None  # nothing changed
    first = service.allowed_mask("c", version, generation, filt)
    assert first.tolist() == [i % 2 == 1 for i in range(10)]
    assert service.allowed_mask("c", version, generation, {"x": 1}) is first  # cached
    with pytest.raises(ValueError):
        first[0] = True  # shared between requests: read-only

    service.store.upsert("c", [Document("d0", "t", None, {"x": 1})])
    service.store.delete_documents("c", ["d1"])
    generation = service.store.get_collection("c").generation
    after = service.allowed_mask("c", version, generation, filt)
    assert after.tolist() == [i == 0 or (i % 2 == 1 and i != 1) for i in range(10)]
    live = service.allowed_mask("c", version, generation, None)
    assert live.tolist() == [i != 1 for i in range(10)]


def test_a_bad_filter_is_a_user_error(service, tmp_path):
    service.store.upsert("c", [Document("d0", "t", None, {})])
    version = OpenVersion("v1", tmp_path, {}, np.array(["d0"]))
    with pytest.raises(FilterError, match=r"\$bogus"):
        service.allowed_mask("c", version, 1, {"x": {"$bogus": 1}})


def test_the_mask_cache_is_bounded_in_bytes():
    cache = LRUCache(10, "test-masks", max_bytes=250, size_of=lambda m: m.nbytes)
    for i in range(3):
        cache.put(i, np.zeros(100, dtype=bool))
    assert 0 not in cache and 1 in cache and 2 in cache  # 300 bytes > 250: oldest out
    assert cache.get(1) is not None  # now the newest
    cache.put(3, np.zeros(100, dtype=bool))
    assert 2 not in cache and 1 in cache and 3 in cache
    cache.put(4, np.zeros(1000, dtype=bool))  # alone over the bound: kept, the rest out
    assert len(cache) == 1 and 4 in cache
