"""How a build runs past one process: the collection's shard count (kept beside its
versions) and the per-build choice of Ray. ``run_build`` calls :func:`build_version`,
which picks the layout and the runner:

- 1 shard, no Ray: ``VersionStore.build`` in this process (the plain layout);
- 1 shard, Ray: ``ray_build.build_with_ray`` (the dense encoder on a Ray Data actor
  pool; the same version a local build writes);
- S shards: ``shards.build.build_sharded``, shards in local processes, or Ray tasks with
  Ray.

The shard count is a property of the collection's index layout, so it lives in
``<collection_dir>/SHARDS`` next to ``CURRENT`` (no database column); each version's
manifest records the count it was built with, and serving reads only the manifest.
Changing it takes effect at the next build, which re-routes every document.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specrag.atomic import write_text_atomic
from specrag.indexing.registry import KindsSpec, parse_kinds
from specrag.indexing.shards.routing import check_shards
from specrag.indexing.versions import VersionStore
from specrag.types import Corpus, Progress, no_progress

SHARDS_FILE = "SHARDS"


@dataclass(frozen=True)
class RayOptions:
    """A build on Ray. ``address``: ``ray.init``'s (None: the cluster this process joined,
    else a new local one). ``batch_size``/``concurrency``: documents per encoder batch and
    encoder actors of the Ray Data pool; ``num_gpus``: GPUs per actor (None: 1 when the
    cluster has GPUs, else 0); ``cpus_per_actor``: CPUs each actor reserves, and the torch
    threads it encodes with (an encoder is compute-bound: actors x threads should not
    exceed the cores, or they only take turns)."""

    address: str | None = None
    batch_size: int = 256
    concurrency: int = 2
    num_gpus: float | None = None
    cpus_per_actor: int = 1

    @classmethod
    def from_settings(cls, settings: Any, address: str | None = None) -> RayOptions:
        return cls(
            address=address if address is not None else getattr(settings, "ray_address", None),
            batch_size=getattr(settings, "ray_batch_size", cls.batch_size),
            concurrency=getattr(settings, "ray_concurrency", cls.concurrency),
            num_gpus=getattr(settings, "ray_num_gpus", None),
            cpus_per_actor=getattr(settings, "ray_cpus_per_actor", cls.cpus_per_actor),
        )


def read_shards(collection_dir: Path) -> int:
    """The collection's shard count (1 when never set)."""
    try:
        raw = (Path(collection_dir) / SHARDS_FILE).read_text().strip()
    except FileNotFoundError:
        return 1
    return check_shards(int(raw))


def check_layout(n_shards: int, kinds: KindsSpec | None) -> int:
    """Raise ValueError unless ``n_shards`` is a valid count for a collection of ``kinds``
    (more than one shard: only the kinds that shard, ``shards.build.SHARDABLE``)."""
    n_shards = check_shards(n_shards)
    if n_shards > 1 and kinds:
        from specrag.indexing.shards.build import check_shardable

        check_shardable(parse_kinds(kinds))
    return n_shards


def write_shards(collection_dir: Path, n_shards: int, kinds: KindsSpec | None = None) -> None:
    """Set the shard count the next build uses (checked against ``kinds`` when given)."""
    n_shards = check_layout(n_shards, kinds)
    Path(collection_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(collection_dir) / SHARDS_FILE, f"{n_shards}\n")


def build_version(
    versions: VersionStore,
    corpus: Corpus,
    kinds: KindsSpec,
    progress: Progress = no_progress,
    *,
    shards: int | None = None,
    ray: RayOptions | None = None,
    activate: bool = True,
    extra_manifest: dict[str, Any] | None = None,
    full: bool = False,
) -> str:
    """Build a version of ``corpus`` with the layout and runner described above
    (``shards``: default the collection's count). Returns the version id. ``full``: retrain
    every kind's trained parts (``VersionStore.build``); sharded and Ray builds always do."""
    n_shards = read_shards(versions.root) if shards is None else check_shards(shards)
    options = {"activate": activate, "extra_manifest": extra_manifest}
    if n_shards > 1:
        from specrag.indexing.shards.build import build_sharded

        return build_sharded(
            versions,
            corpus,
            kinds,
            n_shards,
            progress,
            runner="ray" if ray is not None else "processes",
            ray_address=ray.address if ray is not None else None,
            **options,
        )
    if ray is not None:
        from specrag.indexing.ray_build import build_with_ray

        return build_with_ray(versions, corpus, kinds, progress, ray, **options)
    return versions.build(corpus, kinds, progress, full=full, **options)
