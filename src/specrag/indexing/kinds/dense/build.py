"""Build the ``dense`` kind: bi-encoder embeddings in a faiss inner-product index.

Files in the kind's directory:

- ``embeddings.npy``: float32 (n_docs, dim), memory-mapped by the searcher; it is the
  flat index's data, the reference scorer's input and what rerankers reuse.
- ``index.faiss``: only for ``hnsw`` / ``ivf`` (a flat index is rebuilt from
  ``embeddings.npy`` at load, so the vectors are not stored twice).
- ``meta.json``: model, dimension, normalization, index type.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from specrag.atomic import write_json_atomic
from specrag.indexing.encodings.session import EncodingNeed, encodings_for
from specrag.indexing.encodings.spaces import bi_encoder_space
from specrag.indexing.kinds.dense.check import dense_self_check
from specrag.indexing.kinds.dense.config import DenseConfig
from specrag.types import Corpus, Progress, no_progress

EMBEDDINGS_FILE = "embeddings.npy"
INDEX_FILE = "index.faiss"
META_FILE = "meta.json"


def build_dense(
    corpus: Corpus, out_dir: Path, config: DenseConfig, progress: Progress = no_progress
) -> dict:
    """Read ``corpus``'s embeddings by ``config.model`` from the encoding store (encoding
    the documents it lacks) and write the index files into ``out_dir``."""
    out_dir = Path(out_dir)
    (need,) = dense_encodings(config)
    with encodings_for(corpus, need, out_dir, progress) as encoded:
        first = next(encoded.rows("pooled"))
        emb = np.lib.format.open_memmap(
            out_dir / EMBEDDINGS_FILE,
            mode="w+",
            dtype=np.float32,
            shape=(len(encoded), first.shape[1]),
        )
        encoded.pooled(config.normalize, out=emb)
        emb.flush()
    return write_dense_index(emb, out_dir, config, embeddings_written=True)


def dense_encodings(config: DenseConfig) -> list[EncodingNeed]:
    """The pooled vectors of the model's document encodings (``encode_document``)."""
    space = bi_encoder_space(config.model, config.max_seq_length, "document", config.dtype)
    return [EncodingNeed(space, ("pooled",), config.batch_size)]


def write_dense_index(
    embeddings: np.ndarray, out_dir: Path, config: DenseConfig, *, embeddings_written: bool = False
) -> dict:
    """Write the index files for precomputed ``embeddings`` (benchmarks reuse cached ones).
    Returns the manifest statistics."""
    out_dir = Path(out_dir)
    emb = _check_embeddings(embeddings)
    n, dim = emb.shape
    if not embeddings_written:
        np.save(out_dir / EMBEDDINGS_FILE, emb)
    index_bytes = 0
    self_check = None
    if config.index != "flat":
        import faiss

        index = make_faiss_index(emb, config)
        faiss.write_index(index, str(out_dir / INDEX_FILE))
        index_bytes = (out_dir / INDEX_FILE).stat().st_size
        self_check = dense_self_check(emb, index, config)
    write_json_atomic(
        out_dir / META_FILE,
        {
            "model": config.model,
            "dim": dim,
            "n_docs": n,
            "normalize": config.normalize,
            "max_seq_length": config.max_seq_length,
            "dtype": config.dtype,
            "index": config.index,
            "metric": "inner_product",
        },
    )
    return {
        "n_docs": n,
        "dim": dim,
        "index": config.index,
        "embedding_bytes_per_doc": 4 * dim,
        "index_bytes_per_doc": round(index_bytes / n, 1),
        **({"self_check": self_check} if self_check else {}),
    }


def ivf_nlist(n_docs: int, configured: int | None) -> int:
    """The configured nlist, or about 4*sqrt(n) capped so that every list gets >= 39
    training points (faiss's own rule of thumb). Shared by the dense and binary kinds."""
    if configured is not None:
        if configured > n_docs:
            raise ValueError(f"ivf_nlist={configured} exceeds the {n_docs} documents")
        return configured
    return max(1, min(int(4 * math.sqrt(n_docs)), n_docs // 39))


def make_faiss_index(emb: np.ndarray, config: DenseConfig):
    """A CPU faiss inner-product index of the configured type holding ``emb``."""
    import faiss

    n, dim = emb.shape
    if config.index == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.index == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        index.hnsw.efSearch = config.hnsw_ef_search
    elif config.index == "ivf":
        nlist = ivf_nlist(n, config.ivf_nlist)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(np.ascontiguousarray(emb))
        index.nprobe = min(config.ivf_nprobe, nlist)
    else:  # the config's Literal forbids it; guard against a bypassed validation
        raise ValueError(f"unknown dense index type {config.index!r}")
    _add_in_chunks(index, emb)
    return index


def _add_in_chunks(index, emb: np.ndarray, chunk: int = 65536) -> None:
    """Add a (possibly memory-mapped) matrix without copying all of it at once."""
    for start in range(0, len(emb), chunk):
        index.add(np.ascontiguousarray(emb[start : start + chunk], dtype=np.float32))


def _check_embeddings(emb: np.ndarray) -> np.ndarray:
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array, got shape {emb.shape}")
    if emb.dtype != np.float32:
        raise ValueError(f"embeddings must be float32, got {emb.dtype}")
    return emb
