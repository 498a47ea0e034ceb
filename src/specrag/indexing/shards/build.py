"""Build a sharded version: route every document to its shard, gather the collection-wide
BM25 statistics, then build each shard in parallel as a version of its own.

```
versions/<id>/manifest.json        "shards": {count, routing, n_docs per shard, bm25 stats}
versions/<id>/ids.npy              every id in corpus order (the collection's rows)
versions/<id>/texts.npy            their text hashes (what a refresh compares with)
versions/<id>/encodings/<space>.npy  the stored encodings the version refers to, by row
versions/<id>/shards/<i>/          a complete version of the shard's documents:
                                   manifest.json  ids.npy  rows.npy  <kind>/...
```
``rows.npy`` holds the collection rows of the shard's documents (increasing), so row ``j``
of shard ``i`` is collection row ``rows[j]``. The whole tree is written in one temporary
folder and renamed into place at once, like an unsharded version: a crash leaves the
previous version serving, and ``CURRENT`` never names half of a sharded build.

Rounds (each one task per shard, on the runner of ``runners.py``): spill the shard's
documents into its work folder (driver), analyze (``bm25.analyze_shard``), largest weight
under the global statistics (``bm25.max_weight``), build every kind of the shard
(:func:`build_shard`). Kinds without collection statistics (``dense``) only take part in
the last round.

Encoders read and write the collection's encoding store, as a local build's do: each
shard task encodes only what the store lacks (in parallel, one chunk writer per task), so
a sharded build after any other build of the same texts encodes nothing. The driver holds
the store's lock shared for the whole build (garbage collection waits) and writes the
version's references in collection row order, as an unsharded version has them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from specrag.atomic import atomic_directory, write_json_atomic
from specrag.indexing.encodings.gc import STORE_DIR
from specrag.indexing.encodings.store import HASH_DTYPE, EncodingStore
from specrag.indexing.kinds.base import KindConfig
from specrag.indexing.registry import KindsSpec, get_kind, parse_kinds
from specrag.indexing.shards import bm25 as sharded_bm25
from specrag.indexing.shards.routing import ROUTING, ShardingError, check_shards, shard_of
from specrag.indexing.shards.runners import Runner, make_runner
from specrag.indexing.texts import write_rows
from specrag.indexing.versions import (
    MANIFEST_FORMAT,
    VersionStore,
    new_manifest,
    new_version_id,
    plan_encodings,
)
from specrag.types import Corpus, Document, Progress, no_progress

#: Kinds a sharded collection may hold: their scores do not depend on which other
#: documents share the index (dense), or their collection statistics are gathered first
#: (bm25). Others (splade's quantization scale, colbert's centroids and the MaxSim token
#: store read by row, lucene, datastore) are not sharded yet.
SHARDABLE = ("bm25", "dense")
SHARDS_DIR = "shards"
WORK_DIR = ".work"
ROWS_FILE = "rows.npy"


class FileCorpus:
    """A shard's documents spilled as JSON lines: sized, re-iterable, picklable (a path),
    so a worker process or a Ray task reads them without the driver's database."""

    def __init__(self, path: Path, n_docs: int):
        self.path = Path(path)
        self.n_docs = int(n_docs)

    def __len__(self) -> int:
        return self.n_docs

    def __iter__(self) -> Iterator[Document]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                yield Document(row["id"], row["text"], row["title"], row["metadata"])


def check_shardable(kinds: dict[str, KindConfig]) -> None:
    other = sorted(set(kinds) - set(SHARDABLE))
    if other:
        raise ShardingError(
            f"kinds {', '.join(other)} cannot be sharded yet; a sharded collection may hold "
            f"{', '.join(SHARDABLE)}"
        )


def shard_dir(version_dir: Path, shard: int) -> Path:
    return Path(version_dir) / SHARDS_DIR / f"{shard:04d}"


def build_sharded(
    versions: VersionStore,
    corpus: Corpus,
    kinds: KindsSpec,
    n_shards: int,
    progress: Progress = no_progress,
    *,
    runner: str | Runner = "processes",
    ray_address: str | None = None,
    activate: bool = True,
    extra_manifest: dict[str, Any] | None = None,
) -> str:
    """Build every kind over ``corpus`` split into ``n_shards`` shards; returns the version
    id. ``runner``: ``processes`` (one local process per shard, at most the CPU count),
    ``ray`` (Ray tasks; ``ray_address`` as ``ray.init``'s), ``inline``, or a Runner."""
    n_shards = check_shards(n_shards)
    parsed = parse_kinds(kinds)
    check_shardable(parsed)
    version_id = new_version_id()
    started = time.time()
    own_runner = isinstance(runner, str)
    run: Runner = make_runner(runner, n_shards, ray_address) if own_runner else runner
    encodings = EncodingStore(versions.root / STORE_DIR)
    try:
        with encodings.lock(), atomic_directory(versions.path(version_id)) as tmp:
            work = tmp / WORK_DIR
            ids, rows, corpora = _spill(corpus, n_shards, work, progress)
            write_rows(tmp, corpus)  # the collection's rows, in the order _spill read
            live = [s for s in range(n_shards) if len(corpora[s]) > 0]
            stats_of_bm25: dict[str, Any] | None = None
            bm25_args: dict[int, tuple] = {}
            if "bm25" in parsed:
                stats_of_bm25, bm25_args = _bm25_statistics(
                    run, parsed["bm25"], corpora, live, work, progress
                )
            tasks = [
                (s, shard_dir(tmp, s), corpora[s], parsed, work / f"{s}", bm25_args.get(s),
                 encodings.root)
                for s in range(n_shards)
            ]  # fmt: skip
            progress(0, n_shards, "shards: build", "shard")
            results = run.map(build_shard, tasks)
            for s in range(n_shards):
                np.save(shard_dir(tmp, s) / ROWS_FILE, rows[s])
            _write_references(tmp, rows, len(ids))
            progress(n_shards, n_shards, "shards: build", "shard")
            shutil.rmtree(work)
            manifest = _manifest(version_id, ids, parsed, results, stats_of_bm25, extra_manifest)
            manifest["shards"]["runner"] = getattr(run, "name", type(run).__name__)
            manifest["build_seconds"] = round(time.time() - started, 3)
            write_json_atomic(tmp / "manifest.json", manifest)
    finally:
        if own_runner:
            run.close()
    if activate:
        versions.activate(version_id)
    return version_id


def _spill(
    corpus: Corpus, n_shards: int, work: Path, progress: Progress
) -> tuple[list[str], list[np.ndarray], list[FileCorpus]]:
    """One pass over the snapshot: every document to its shard's JSON-lines file."""
    work.mkdir(parents=True)
    counts = [0] * n_shards
    ids: list[str] = []
    of: list[int] = []
    total = len(corpus)
    with contextlib.ExitStack() as stack:
        files = [
            stack.enter_context(open(work / f"{s}.jsonl", "w", encoding="utf-8"))
            for s in range(n_shards)
        ]
        for row, doc in enumerate(corpus):
            s = shard_of(doc.id, n_shards)
            record = {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}
            files[s].write(json.dumps(record, ensure_ascii=False) + "\n")
            counts[s] += 1
            ids.append(doc.id)
            of.append(s)
            if row % 1000 == 0:
                progress(row, total, "shards: route")
    if not ids:
        raise ValueError("cannot build an index over an empty collection")
    progress(total, total, "shards: route")
    shard = np.array(of, dtype=np.int64)
    rows = [np.flatnonzero(shard == s).astype(np.int64) for s in range(n_shards)]
    return ids, rows, [FileCorpus(work / f"{s}.jsonl", counts[s]) for s in range(n_shards)]


def _bm25_statistics(run, config, corpora, live, work, progress):
    """Rounds 1 and 2: per-shard counts -> global N, avgdl, df -> global scale. Returns
    the manifest's statistics and, per live shard, the arguments of its bm25 write."""
    progress(0, len(live), "shards: bm25 statistics", "shard")
    terms = run.map(sharded_bm25.analyze_shard, [(corpora[s], work / f"{s}") for s in live])
    stats = sharded_bm25.merge_stats(terms)
    dfs = {s: stats.df_of(t.vocab) for s, t in zip(live, terms, strict=True)}
    maxima = run.map(
        sharded_bm25.max_weight,
        [(work / f"{s}", dfs[s], stats.n_docs, stats.avgdl, config) for s in live],
    )
    scale = sharded_bm25.global_scale(maxima, config.impact_bits)
    progress(len(live), len(live), "shards: bm25 statistics", "shard")
    summary = {
        "scope": "collection",
        "n_docs": stats.n_docs,
        "avgdl": stats.avgdl,
        "n_terms": len(stats.df),
        "scale": scale,
    }
    return summary, {s: (dfs[s], stats.n_docs, stats.avgdl, scale) for s in live}


def build_shard(
    shard: int,
    out: Path,
    corpus: FileCorpus,
    kinds: dict[str, KindConfig],
    work: Path,
    bm25_args: tuple | None,
    encodings_root: Path | None = None,
) -> dict[str, Any]:
    """Round 3, one task: the shard's own version folder (every kind; bm25 with the global
    statistics; encoders through the encoding store at ``encodings_root`` when given,
    else a scratch store of the builder's). A shard with no documents holds no kind.
    Returns its manifest."""
    started = time.time()
    out = Path(out)
    out.mkdir(parents=True)
    ids = [doc.id for doc in corpus]
    np.save(out / "ids.npy", np.array(ids, dtype=str))
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "shard": shard,
        "n_docs": len(ids),
        "kinds": {},
    }
    session = None
    if ids and encodings_root is not None:
        session = plan_encodings(EncodingStore(Path(encodings_root)), corpus, kinds)
        session.prepare()
        manifest["encodings"] = session.stats()
    with session.active() if session is not None else contextlib.nullcontext():
        for name, config in kinds.items() if ids else ():
            kind_started = time.time()
            (out / name).mkdir()
            if name == "bm25":
                assert bm25_args is not None
                stats = sharded_bm25.write_bm25_shard(work, out / name, config, *bm25_args)
            else:
                stats = get_kind(name).build(corpus, out / name, config, no_progress)
            manifest["kinds"][name] = {
                "config": config.model_dump(),
                "stats": stats or {},
                "build_seconds": round(time.time() - kind_started, 3),
            }
    if session is not None:
        session.write_references(out / STORE_DIR)
    manifest["build_seconds"] = round(time.time() - started, 3)
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def _write_references(version_dir: Path, rows: list[np.ndarray], n_docs: int) -> None:
    """The version's references to stored encodings (``<space>.npy``, collection row
    order: what garbage collection keeps and a refresh compares against), from its
    shards' (shard row order)."""
    spaces = sorted(
        {
            p.name
            for s in range(len(rows))
            for p in (shard_dir(version_dir, s) / STORE_DIR).glob("*.npy")
        }
    )
    if not spaces:
        return
    (version_dir / STORE_DIR).mkdir()
    for name in spaces:
        hashes = np.zeros(n_docs, HASH_DTYPE)
        for s, shard_rows in enumerate(rows):
            path = shard_dir(version_dir, s) / STORE_DIR / name
            if path.exists():
                hashes[shard_rows] = np.load(path)
        np.save(version_dir / STORE_DIR / name, hashes)


def _manifest(version_id, ids, parsed, shard_manifests, bm25_stats, extra) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    for name, config in parsed.items():
        per_shard = [m["kinds"].get(name) for m in shard_manifests]
        kinds[name] = {
            "config": config.model_dump(),
            "stats": {
                "n_docs": len(ids),
                "shards": [entry["stats"] if entry else None for entry in per_shard],
            },
            "build_seconds": max((e["build_seconds"] for e in per_shard if e), default=0.0),
        }
    shards = {
        "count": len(shard_manifests),
        "routing": ROUTING,
        "dir": SHARDS_DIR,
        "n_docs": [m["n_docs"] for m in shard_manifests],
        **({"bm25": bm25_stats} if bm25_stats is not None else {}),
    }
    manifest = new_manifest(version_id, len(ids), {"shards": shards, **(extra or {})})
    manifest["kinds"] = kinds
    encoded: dict[str, Any] = {}
    for m in shard_manifests:
        for key, stats in m.get("encodings", {}).items():
            total = encoded.setdefault(key, {**stats, "encoded": 0, "reused": 0, "seconds": 0.0})
            total["encoded"] += stats["encoded"]
            total["reused"] += stats["reused"]
            total["seconds"] = max(total["seconds"], stats["seconds"])
    if encoded:
        manifest["encodings"] = encoded
    return manifest
