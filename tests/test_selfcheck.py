"""The build's recall self-check (issue #17, point 3): an approximate index that loses
recall against exact search is recorded in the manifest and never activated; a sound one
is. Broken on purpose: IVF with many lists probed one at a time; a colbert centroid stage
with one probe per token over as many centroids as tokens, pruned to 10 candidates."""

from __future__ import annotations

import numpy as np
import pytest

from specrag.indexing.kinds.selfcheck import SelfCheckError, failed_checks, recall_at_k
from specrag.indexing.versions import VersionStore
from tests.conftest import demo_documents

N_DOCS = 80


@pytest.fixture(scope="module")
def docs():
    return demo_documents(N_DOCS)


def test_recall_at_k_counts_shared_rows():
    exact = [np.arange(10), np.arange(10, 20)]
    assert recall_at_k([np.arange(10)[::-1], np.arange(15, 25)], exact) == pytest.approx(0.75)
    assert recall_at_k([np.arange(3)], [np.arange(3)]) == 1.0  # fewer than k documents


def _refused(store: VersionStore, docs, kinds: dict) -> str:
    with pytest.raises(SelfCheckError, match="not activated") as err:
        store.build(docs, kinds)
    assert store.current() is None
    [vid] = store.list()  # built and kept, listed, not current
    assert vid in str(err.value)
    return vid


def test_a_broken_ivf_is_refused_and_a_sound_one_activated(tmp_path, docs):
    store = VersionStore(tmp_path / "broken")
    # Lists of ~13 documents, one probed: full (so no exact completion), missing neighbours.
    vid = _refused(store, docs, {"dense": {"index": "ivf", "ivf_nlist": 6, "ivf_nprobe": 1}})
    check = store.manifest(vid)["kinds"]["dense"]["stats"]["self_check"]
    assert check["recall_at_10"] < 0.9 and not check["passed"] and check["floor"] == 0.9
    assert check["queries"] == N_DOCS
    assert "dense: recall@10" in failed_checks(store.manifest(vid))[0]
    store.activate(vid, force=True)  # an operator may still force it
    assert store.current() == vid

    sound = VersionStore(tmp_path / "sound")
    vid = sound.build(docs, {"dense": {"index": "ivf", "ivf_nlist": 4, "ivf_nprobe": 4}})
    assert sound.current() == vid
    check = sound.manifest(vid)["kinds"]["dense"]["stats"]["self_check"]
    assert check["recall_at_10"] == 1.0 and check["passed"]


def test_flat_records_no_check(tmp_path, docs):
    store = VersionStore(tmp_path)
    vid = store.build(docs[:20], {"dense": {}})
    assert "self_check" not in store.manifest(vid)["kinds"]["dense"]["stats"]


def test_a_broken_colbert_centroid_stage_is_refused(tmp_path, docs):
    broken = {
        "exhaustive_max_docs": 0,
        "n_centroids": 4096,  # capped at the sampled tokens: about one token per centroid
        "nprobe": 1,
        "candidates": 10,
        "self_check_queries": 40,
    }
    store = VersionStore(tmp_path / "broken")
    vid = _refused(store, docs, {"colbert": broken})
    check = store.manifest(vid)["kinds"]["colbert"]["stats"]["self_check"]
    assert check["approximate"] == "centroid stage" and check["recall_at_10"] < 0.9

    sound = VersionStore(tmp_path / "sound")
    full_probe = {**broken, "n_centroids": 16, "nprobe": 16, "candidates": N_DOCS}
    vid = sound.build(docs, {"colbert": full_probe})
    check = sound.manifest(vid)["kinds"]["colbert"]["stats"]["self_check"]
    assert check["recall_at_10"] == 1.0 and sound.current() == vid
