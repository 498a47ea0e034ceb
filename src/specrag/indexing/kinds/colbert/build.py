"""Build the ``colbert`` kind: a small PLAID-style late-interaction index of our own.

Files in the kind's directory::

    tokens/              the compressed token store (indexing/token_store.py)
    centroids.npy        float32 (n_centroids, dim): spherical k-means (faiss) of tokens
    token_centroids.npy  uint16/int32 (n_tokens,): each token's nearest centroid
    ivf_offsets.npy      int64 (n_centroids + 1) } centroid c -> the docs having a token
    ivf_docs.npy         int32                   } in c: ivf_docs[ivf_offsets[c]:...[c+1]]

Why our own: PyLate 1.6 needs fast-plaid, whose wheels pin one torch and crash on ours.
The build encodes once, spilling fp16 tokens to a scratch file inside ``out_dir`` (memory
stays bounded), fits the codec and the centroids on a random sample of all tokens, then
compresses the spill chunk by chunk and deletes it.

Rebuilds keep the codebook (issue #14), as PLAID-style systems do for incremental adds:
a build that replaces a version (``VersionStore.build``, not ``full``) whose colbert
index has the same config (up to search-time knobs) over the same encoding space (same
model), with a share of changed documents below ``reuse_codebook_below`` (default 0.1),
keeps that version's centroids and codec, copies the codes and centroid ids of every
document whose encoding (content hash, the store's key) it already had -- the same token
vectors under the same codec give the same codes -- and compresses only the changed
documents; the manifest's ``stats.codebook`` says so (``reused``, ``docs_copied``,
``docs_compressed``). The centroids then drift from a retrained k-means as changes
accumulate; a full build (``VersionStore.build(..., full=True)``: every merge,
``specrag index --full``, ``{"full": true}``) or ``reuse_codebook_below: 0`` retrains them,
and a change at or above the threshold does too.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specrag.indexing.encoders.tokens import detect_encoder_type
from specrag.indexing.encodings.gc import STORE_DIR
from specrag.indexing.encodings.session import Encoded, EncodingNeed, encodings_for
from specrag.indexing.encodings.spaces import EncodingSpace, bi_encoder_space, model_fingerprint
from specrag.indexing.kinds.colbert.config import ColbertConfig
from specrag.indexing.kinds.colbert.token_store import TokenStore, TokenStoreWriter, make_codec
from specrag.indexing.previous import previous_version
from specrag.types import Corpus, Progress, no_progress

ENCODE_BATCH_DOCS = 256
CHUNK_ROWS = 65536


def build_colbert(corpus: Corpus, out_dir: Path, config: ColbertConfig, progress: Progress) -> dict:
    """Read the documents' token vectors from the encoding store (encoding the ones it
    lacks; on a bi-encoder, the same forward as ``dense``) and index them."""
    (need,) = colbert_encodings(config)
    total = len(corpus)
    with encodings_for(corpus, need, Path(out_dir), progress) as encoded:
        book = reusable_codebook(config, need.space.key, encoded.hashes)
        stats = None
        if book is not None:
            try:
                stats = index_with_codebook(encoded, book, Path(out_dir), config, progress)
            except FileNotFoundError:  # the previous version was pruned meanwhile: retrain
                shutil.rmtree(Path(out_dir) / "tokens", ignore_errors=True)
        if stats is not None:
            stats["encoder"] = (
                "multi_vector" if need.space.encoder == "multi_vector" else "token_embeddings"
            )
            return stats

        def batches() -> Iterator[list[np.ndarray]]:
            done = 0
            for batch in encoded.batches("tokens", ENCODE_BATCH_DOCS):
                yield batch
                done += len(batch)
                progress(done, total, "colbert: reading stored tokens")

        stats = build_token_index(batches(), Path(out_dir), config, progress)
    stats["encoder"] = (
        "multi_vector" if need.space.encoder == "multi_vector" else "token_embeddings"
    )
    return stats


def colbert_encodings(config: ColbertConfig) -> list[EncodingNeed]:
    """Token vectors: a bi-encoder's contextual token embeddings (what ``encode`` sees,
    no prompt), or a ColBERT checkpoint's ``encode_document`` output."""
    encoder = detect_encoder_type(config.model) if config.encoder == "auto" else config.encoder
    if encoder == "multi_vector":
        space = EncodingSpace(
            "multi_vector", config.model, model_fingerprint(config.model), dtype=config.dtype
        )
    else:
        space = bi_encoder_space(config.model, None, "plain", config.dtype)
    return [EncodingNeed(space, ("tokens",), config.batch_size)]


def default_n_centroids(n_tokens: int) -> int:
    """A power of two near 2*sqrt(n_tokens), at most n_tokens (at least 1)."""
    if n_tokens <= 1:
        return 1
    return int(min(n_tokens, 2 ** round(math.log2(2 * math.sqrt(n_tokens)))))


def build_token_index(
    batches: Iterable[list[np.ndarray]],
    out_dir: Path,
    config: ColbertConfig,
    progress: Progress = no_progress,
) -> dict:
    """The index over already-encoded documents (batches of per-doc token matrices, in
    row order); benchmarks call it with cached encodings."""
    out_dir = Path(out_dir)
    spill_path = out_dir / ".spill-fp16.bin"
    lengths: list[int] = []
    dim = None
    try:
        with open(spill_path, "wb") as spill_file:
            for batch in batches:
                for tokens in batch:
                    tokens = np.asarray(tokens)
                    if tokens.ndim != 2 or (dim is not None and tokens.shape[1] != dim):
                        raise ValueError(f"token matrix of shape {tokens.shape} (dim {dim})")
                    dim = tokens.shape[1]
                    lengths.append(len(tokens))
                    spill_file.write(np.ascontiguousarray(tokens, dtype=np.float16).tobytes())
        n_tokens = int(sum(lengths))
        if dim is None or n_tokens == 0:
            raise ValueError("colbert: the corpus has no document with any token to index")
        spill = np.memmap(spill_path, dtype=np.float16, mode="r", shape=(n_tokens, dim))
        return _index_spill(spill, np.asarray(lengths, np.int64), out_dir, config, progress)
    finally:
        spill_path.unlink(missing_ok=True)


def _index_spill(
    spill: np.ndarray, lengths: np.ndarray, out_dir: Path, config: ColbertConfig, progress: Progress
) -> dict:
    n_tokens, dim = spill.shape
    rng = np.random.default_rng(config.seed)
    n_sample = min(n_tokens, config.sample_tokens)
    sample_rows = np.sort(rng.choice(n_tokens, size=n_sample, replace=False))
    sample = np.asarray(spill[sample_rows], dtype=np.float32)

    codec = make_codec(config.compression, dim).fit(sample)
    n_centroids = min(config.n_centroids or default_n_centroids(n_tokens), n_sample)
    progress(0, n_sample, f"colbert: k-means, {n_centroids} centroids", "token")
    centroids = _kmeans(sample, n_centroids, config)
    nearest = nearest_centroid(centroids, *kmeans_engine(config.kmeans_backend))

    writer = TokenStoreWriter(out_dir / "tokens", codec)
    cdtype = np.uint16 if n_centroids <= np.iinfo(np.uint16).max + 1 else np.int32
    token_centroids = np.empty(n_tokens, cdtype)
    for start in range(0, n_tokens, CHUNK_ROWS):
        chunk = np.asarray(spill[start : start + CHUNK_ROWS], dtype=np.float32)
        token_centroids[start : start + len(chunk)] = nearest(chunk)
        writer.append_rows(chunk)
        progress(start + len(chunk), n_tokens, "colbert: compressing tokens", "token")
    store = writer.close(lengths)
    return _finish(out_dir, config, store, centroids, token_centroids, lengths, {"reused": False})


def _finish(
    out_dir: Path,
    config: ColbertConfig,
    store: TokenStore,
    centroids: np.ndarray,
    token_centroids: np.ndarray,
    lengths: np.ndarray,
    codebook: dict,
) -> dict:
    n_centroids = len(centroids)
    n_docs, n_tokens, dim = len(lengths), len(token_centroids), centroids.shape[1]
    ivf_offsets, ivf_docs = _inverted_lists(token_centroids, lengths, n_centroids)
    np.save(out_dir / "centroids.npy", centroids)
    np.save(out_dir / "token_centroids.npy", token_centroids)
    np.save(out_dir / "ivf_offsets.npy", ivf_offsets)
    np.save(out_dir / "ivf_docs.npy", ivf_docs)
    from specrag.indexing.kinds.colbert.check import colbert_self_check

    self_check = colbert_self_check(out_dir, config)
    index_bytes = (
        store.nbytes()
        + token_centroids.nbytes
        + ivf_offsets.nbytes
        + ivf_docs.nbytes
        + centroids.nbytes
    )
    return {
        "n_docs": n_docs,
        "n_tokens": int(n_tokens),
        "dim": int(dim),
        "n_centroids": int(n_centroids),
        "compression": store.codec.name,
        "kmeans": "/".join(kmeans_engine(config.kmeans_backend)),
        "bytes_per_token": store.codec.bytes_per_token,
        "bytes": int(index_bytes),
        "bytes_per_doc": round(index_bytes / max(n_docs, 1), 1),
        "codebook": codebook,
        **({"self_check": self_check} if self_check else {}),
    }


# Settings that do not change the codebook nor the codes (search-time knobs, batching).
_CODE_NEUTRAL = {
    "nprobe",
    "candidates",
    "exhaustive_max_docs",
    "reuse_codebook_below",
    "batch_size",
}


@dataclass(frozen=True)
class Codebook:
    """A previous version's colbert index whose centroids and codec a build can keep."""

    dir: Path  # the previous version's colbert directory
    version: str
    hashes: np.ndarray  # its documents' encoding hashes, in its row order
    changed_share: float


def reusable_codebook(config: ColbertConfig, space_key: str, hashes: np.ndarray) -> Codebook | None:
    """The previous version's codebook when it fits this build: the build replaces a
    version (not ``full``), that version has a colbert index of the same config (up to
    search-time knobs) over the same encoding space (same model), and the share of changed
    documents -- max(documents whose encoding it lacks, its documents gone) over this
    build's count -- is below ``reuse_codebook_below``."""
    previous = previous_version()
    if config.reuse_codebook_below <= 0 or previous is None or len(hashes) == 0:
        return None
    try:
        kind = json.loads((previous / "manifest.json").read_text())["kinds"]["colbert"]
    except (OSError, KeyError, ValueError):
        return None
    old, new = dict(kind.get("config", {})), config.model_dump()
    for c in (old, new):
        for key in [k for k in c if k in _CODE_NEUTRAL or k.startswith("self_check")]:
            del c[key]
    ref = previous / STORE_DIR / f"{space_key}.npy"
    colbert_dir = previous / "colbert"
    if old != new or not ref.exists() or not (colbert_dir / "centroids.npy").exists():
        return None
    prev_hashes = np.load(ref)
    if len(prev_hashes) != kind.get("stats", {}).get("n_docs"):
        return None
    added = int(np.isin(hashes, prev_hashes, invert=True).sum())
    gone = int(np.isin(prev_hashes, hashes, invert=True).sum())
    share = max(added, gone) / len(hashes)
    if share >= config.reuse_codebook_below:
        return None
    return Codebook(colbert_dir, previous.name, prev_hashes, share)


def index_with_codebook(
    encoded: Encoded,
    book: Codebook,
    out_dir: Path,
    config: ColbertConfig,
    progress: Progress = no_progress,
    *,
    copy_unchanged: bool = True,
) -> dict:
    """The index with the previous version's centroids and codec: the codes and centroid
    ids of each document whose encoding (content hash) the previous version has are copied
    from it (same token vectors, same codec: the same codes); the other documents' stored
    tokens are compressed and assigned. ``copy_unchanged=False`` computes every document's
    codes with that codebook (the reference the tests compare against)."""
    out_dir = Path(out_dir)
    prev_store = TokenStore.open(book.dir / "tokens")
    prev_tc = np.load(book.dir / "token_centroids.npy", mmap_mode="r")
    centroids = np.load(book.dir / "centroids.npy")
    codec = prev_store.codec
    hashes = encoded.hashes
    row_of: dict[bytes, int] = {}
    for j, h in enumerate(book.hashes.tolist()):
        row_of.setdefault(h, j)
    src = np.array([row_of.get(h, -1) if copy_unchanged else -1 for h in hashes.tolist()], np.int64)
    changed = np.flatnonzero(src < 0)
    # Compress the changed documents first (in memory: a small share of the corpus).
    nearest = nearest_centroid(centroids, *kmeans_engine(config.kmeans_backend))
    fresh_lengths: list[int] = []
    fresh_rows: list[np.ndarray] = []
    for tokens in encoded.store.get(hashes[changed], "tokens"):
        tokens = np.asarray(tokens, dtype=np.float16)
        if tokens.ndim != 2 or tokens.shape[1] != codec.dim:
            raise ValueError(f"token matrix of shape {tokens.shape} (dim {codec.dim})")
        fresh_lengths.append(len(tokens))
        fresh_rows.append(tokens)
    n_fresh = int(sum(fresh_lengths))
    fresh_codes = np.empty((n_fresh, codec.bytes_per_token), np.uint8)
    fresh_tc = np.empty(n_fresh, prev_tc.dtype)
    if n_fresh:
        flat = np.concatenate(fresh_rows)
        for start in range(0, n_fresh, CHUNK_ROWS):
            chunk = np.asarray(flat[start : start + CHUNK_ROWS], dtype=np.float32)
            fresh_codes[start : start + len(chunk)] = codec.encode(chunk)
            fresh_tc[start : start + len(chunk)] = nearest(chunk)
            progress(start + len(chunk), n_fresh, "colbert: compressing changed tokens", "token")
    fresh_offsets = np.concatenate([[0], np.cumsum(fresh_lengths)]).astype(np.int64)
    del fresh_rows

    writer = TokenStoreWriter(out_dir / "tokens", codec)
    lengths = np.empty(len(hashes), np.int64)
    tc_parts: list[np.ndarray] = []
    k = 0
    for i, j in enumerate(src.tolist()):
        if j >= 0:
            a, b = int(prev_store.offsets[j]), int(prev_store.offsets[j + 1])
            writer.append_codes(np.asarray(prev_store.codes[a:b]))
            tc_parts.append(np.asarray(prev_tc[a:b]))
        else:
            a, b = int(fresh_offsets[k]), int(fresh_offsets[k + 1])
            writer.append_codes(fresh_codes[a:b])
            tc_parts.append(fresh_tc[a:b])
            k += 1
        lengths[i] = b - a
    store = writer.close(lengths)
    token_centroids = np.concatenate(tc_parts) if tc_parts else np.empty(0, prev_tc.dtype)
    codebook = {
        "reused": True,
        "from_version": book.version,
        "changed_share": round(book.changed_share, 6),
        "docs_copied": int(len(hashes) - len(changed)),
        "docs_compressed": int(len(changed)),
    }
    return _finish(out_dir, config, store, centroids, token_centroids, lengths, codebook)


def _kmeans(sample: np.ndarray, n_centroids: int, config: ColbertConfig) -> np.ndarray:
    import faiss

    if n_centroids >= len(sample):
        return np.ascontiguousarray(sample[:n_centroids], dtype=np.float32)
    engine, device = kmeans_engine(config.kmeans_backend)
    if engine == "torch":
        from specrag.indexing.kinds.colbert.kmeans import spherical_kmeans

        return spherical_kmeans(sample, n_centroids, config.kmeans_iters, config.seed, device)
    km = faiss.Kmeans(
        sample.shape[1],
        n_centroids,
        niter=config.kmeans_iters,
        spherical=True,
        seed=config.seed,
        max_points_per_centroid=10_000,
        verbose=False,
    )
    km.train(np.ascontiguousarray(sample, dtype=np.float32))
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def nearest_centroid(
    centroids: np.ndarray, engine: str, device: str
) -> Callable[[np.ndarray], np.ndarray]:
    """The token compression's assignment: ``f(chunk)`` is the id of the centroid of
    highest inner product with each row of a float32 chunk, ties to the lower centroid id.
    On the k-means engine and device: torch (the GPU, when the k-means ran there: the
    chunk's (rows x centroids) products are its bulk of compute) or a faiss flat IP index
    on the CPU. Both keep the first maximum, i.e. the lower id on exact ties."""
    if engine == "torch":
        import torch

        from specrag.indexing.kinds.colbert.kmeans import assign

        on_device = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32)).to(device)

        def by_torch(chunk: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(device)
                return assign(x, on_device)[0].cpu().numpy()

        return by_torch
    import faiss

    quantizer = faiss.IndexFlatIP(centroids.shape[1])
    quantizer.add(np.ascontiguousarray(centroids, dtype=np.float32))

    def by_faiss(chunk: np.ndarray) -> np.ndarray:
        return quantizer.search(np.ascontiguousarray(chunk, dtype=np.float32), 1)[1][:, 0]

    return by_faiss


def kmeans_engine(backend: str) -> tuple[str, str]:
    """(engine, device) of the centroid k-means: auto is torch on cuda when cuda is
    present (faiss-gpu does not install there), faiss on the CPU otherwise."""
    from specrag.indexing.kinds.torchsearch.device import cuda_available

    if backend == "faiss":
        return "faiss", "cpu"
    device = "cuda" if cuda_available() else "cpu"
    if backend == "auto" and device == "cpu":
        return "faiss", "cpu"
    return "torch", device


def _inverted_lists(
    token_centroids: np.ndarray, lengths: np.ndarray, n_centroids: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centroid -> sorted unique docs having at least one token assigned to it."""
    n_docs = len(lengths)
    token_docs = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    keys = np.unique(token_centroids.astype(np.int64) * n_docs + token_docs)
    cents, docs = keys // n_docs, keys % n_docs
    offsets = np.searchsorted(cents, np.arange(n_centroids + 1)).astype(np.int64)
    return offsets, docs.astype(np.int32)


def open_token_store(index_dir: Path) -> TokenStore:
    """The token store of a built ``colbert`` kind directory (used by the reranker)."""
    return TokenStore.open(Path(index_dir) / "tokens")
