"""One check that two versions hold the same index: a merge or a ``full`` rebuild against
a fresh full build of the same documents in another home (issue #14 point 4)."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np


def assert_same_index(got: Path, want: Path) -> None:
    """The same row ids and, for every kind of ``want``, the same files, each
    byte-identical (bm25 postings, dense embeddings, binary codes, colbert centroids,
    codec and codes)."""
    np.testing.assert_array_equal(np.load(got / "ids.npy"), np.load(want / "ids.npy"))
    kinds = json.loads((want / "manifest.json").read_text())["kinds"]
    assert kinds and set(kinds) == set(json.loads((got / "manifest.json").read_text())["kinds"])
    for kind in kinds:
        files = sorted(p.relative_to(want) for p in (want / kind).rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(got) for p in (got / kind).rglob("*") if p.is_file())
        assert files, kind
        differ = [str(f) for f in files if not filecmp.cmp(got / f, want / f, shallow=False)]
        assert not differ, f"{kind}: {differ} differ from a fresh full build's"


def current_path(service, name: str) -> Path:
    """The directory of ``name``'s current version in ``service``'s home."""
    versions = service.versions(name)
    return versions.path(versions.current())
