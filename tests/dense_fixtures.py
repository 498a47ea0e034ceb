"""One demo version holding ``dense`` and ``binary`` (the binary builder reuses the dense
embeddings, so the corpus is encoded once), built once per test process and shared by
tests/test_dense.py and tests/test_binary.py."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from specrag.indexing.versions import VersionStore
from tests.conftest import demo_documents

N_DOCS = 120


@lru_cache(maxsize=1)
def dense_and_binary_store() -> VersionStore:
    root = Path(tempfile.mkdtemp(prefix="specrag-dense-test-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    store = VersionStore(root)
    store.build(demo_documents(N_DOCS), {"dense": {}, "binary": {}})
    return store
