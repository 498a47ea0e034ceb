"""A version built on Ray (issue #16 point 1): the corpus snapshot becomes a Ray Dataset,
the ``dense`` encoder runs with ``map_batches`` on an actor pool (one model per actor,
``RayOptions.batch_size`` documents per batch, ``concurrency`` actors, ``num_gpus`` each
when the cluster has GPUs), and the driver assembles the same version a local build writes:
the same ``manifest.json``, ``ids.npy`` and kind folders, the embeddings at their corpus
rows (each batch carries its rows, so the pool may finish batches in any order).

Only the encoder leaves the driver: it is where a build spends its time (5,000 SciFact
abstracts: 7-27 minutes of MiniLM on 2 shared cores, 2-15 s of bm25;
``scripts/bench_scale.py``). The other kinds run their local
builders in the driver, so their files are byte-identical to a local build's; ``binary``
reuses the embeddings the pool wrote, as it reuses a local ``dense`` build's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from specrag.atomic import atomic_directory, write_json_atomic
from specrag.indexing.encoders.embedding import document_text
from specrag.indexing.kinds.dense.build import EMBEDDINGS_FILE, write_dense_index
from specrag.indexing.kinds.dense.config import DenseConfig
from specrag.indexing.registry import KindsSpec, get_kind, parse_kinds
from specrag.indexing.scaleout import RayOptions
from specrag.indexing.texts import write_rows
from specrag.indexing.versions import VersionStore, new_manifest, new_version_id
from specrag.types import Corpus, Progress, no_progress

#: Documents per block of the Ray Dataset made from the snapshot.
BLOCK_DOCS = 2048
#: Kinds whose encoding runs on the Ray Data actor pool.
RAY_ENCODED = ("dense",)


class DenseEncoderActor:
    """One bi-encoder per actor, loaded once; ``__call__`` encodes one batch of
    ``{"row", "text"}`` (other columns are ignored) into ``{"row", "embedding"}``. ``threads``: torch's intra-op
    threads, the CPUs the actor reserved (Ray's default of one thread per reserved CPU is
    only applied when the driver has no ``OMP_NUM_THREADS``; this does not depend on it)."""

    def __init__(
        self,
        model: str,
        normalize: bool,
        max_seq_length: int | None,
        batch_size: int,
        threads: int | None = None,
    ):
        import torch

        from specrag.indexing.encoders.models import load_model

        if threads is not None:
            torch.set_num_threads(threads)
        self.model = load_model(model)
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.normalize = normalize
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        emb = self.model.encode_document(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return {"row": batch["row"], "embedding": np.asarray(emb, dtype=np.float32)}


def corpus_dataset(ray: Any, corpus: Corpus, block_docs: int = BLOCK_DOCS):
    """The snapshot as a Ray Dataset of ``{row, id, text}``, ``block_docs`` rows per block
    (read once, page by page, into the object store)."""
    import pyarrow as pa

    def blocks() -> Iterator[pa.Table]:
        rows, ids, texts = [], [], []
        for row, doc in enumerate(corpus):
            rows.append(row)
            ids.append(doc.id)
            texts.append(document_text(doc))
            if len(rows) == block_docs:
                yield pa.table({"row": rows, "id": ids, "text": texts})
                rows, ids, texts = [], [], []
        if rows:
            yield pa.table({"row": rows, "id": ids, "text": texts})

    return ray.data.from_arrow(list(blocks()))


def encode_on_ray(
    ray: Any,
    dataset: Any,
    n_docs: int,
    config: DenseConfig,
    options: RayOptions,
    out_path: Path,
    progress: Progress = no_progress,
) -> np.ndarray:
    """Encode every document of ``dataset`` on an actor pool into a memory-mapped
    ``(n_docs, dim)`` float32 ``.npy`` at ``out_path``; returns it."""
    num_gpus = options.num_gpus
    if num_gpus is None:
        num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    # The actor pool reads the blocks as they are (it ignores ``id``): a column selection
    # before it would be a task of its own, which needs a CPU that a pool reserving every
    # CPU never frees (Ray Data does not fuse it into the actors).
    encoded = dataset.map_batches(
        DenseEncoderActor,
        fn_constructor_kwargs={
            "model": config.model,
            "normalize": config.normalize,
            "max_seq_length": config.max_seq_length,
            "batch_size": config.batch_size,
            "threads": options.cpus_per_actor,
        },
        batch_size=options.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=options.concurrency),
        num_cpus=options.cpus_per_actor,
        num_gpus=num_gpus,
    )
    out = None
    seen = np.zeros(n_docs, dtype=bool)
    done = 0
    progress(0, n_docs, "dense: encode (ray)")
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        rows, emb = batch["row"].astype(np.int64), batch["embedding"]
        if out is None:
            out = np.lib.format.open_memmap(
                out_path, mode="w+", dtype=np.float32, shape=(n_docs, emb.shape[1])
            )
        out[rows] = emb
        seen[rows] = True
        done += len(rows)
        progress(done, n_docs, "dense: encode (ray)")
    if out is None or done != n_docs or not seen.all():
        raise RuntimeError(f"the Ray encoder returned {done} of {n_docs} documents")
    out.flush()
    return out


def build_with_ray(
    versions: VersionStore,
    corpus: Corpus,
    kinds: KindsSpec,
    progress: Progress = no_progress,
    options: RayOptions | None = None,
    *,
    activate: bool = True,
    extra_manifest: dict[str, Any] | None = None,
) -> str:
    """Build every kind over ``corpus`` into a new version, the encoders on Ray (module
    docstring); the version is laid out exactly as ``VersionStore.build`` lays it out."""
    from specrag.indexing.ray_support import ensure_ray

    options = options or RayOptions()
    parsed = parse_kinds(kinds)
    ray = ensure_ray(options.address)
    version_id = new_version_id()
    started = time.time()
    with atomic_directory(versions.path(version_id)) as tmp:
        n_docs = write_rows(tmp, corpus)
        if n_docs == 0:
            raise ValueError("cannot build an index over an empty collection")
        dataset = corpus_dataset(ray, corpus) if set(parsed) & set(RAY_ENCODED) else None
        manifest = new_manifest(version_id, n_docs, extra_manifest)
        for position, (name, cfg) in enumerate(parsed.items(), start=1):
            kind_started = time.time()
            out = tmp / name
            out.mkdir()
            label = f"{name} ({position}/{len(parsed)})"
            report = _labelled(progress, label)
            if name == "dense":
                emb = encode_on_ray(
                    ray, dataset, n_docs, cfg, options, out / EMBEDDINGS_FILE, report
                )
                stats = write_dense_index(emb, out, cfg, embeddings_written=True)
                del emb
            else:
                stats = get_kind(name).build(corpus, out, cfg, report)
            manifest["kinds"][name] = {
                "config": cfg.model_dump(),
                "stats": stats or {},
                "build_seconds": round(time.time() - kind_started, 3),
            }
        manifest["built_on"] = {
            "ray": True,
            "encoder_actors": options.concurrency,
            "batch_size": options.batch_size,
        }
        manifest["build_seconds"] = round(time.time() - started, 3)
        write_json_atomic(tmp / "manifest.json", manifest)
    if activate:
        versions.activate(version_id)
    return version_id


def _labelled(progress: Progress, label: str) -> Progress:
    def report(done: int, total: int, stage: str, unit: str = "doc") -> None:
        progress(done, total, stage if stage.startswith(label) else f"{label}: {stage}", unit)

    return report
