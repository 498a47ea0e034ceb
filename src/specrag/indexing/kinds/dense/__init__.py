"""The ``dense`` kind: bi-encoder embeddings (sentence-transformers) in a faiss index."""

from specrag.indexing.kinds.base import IndexKind
from specrag.indexing.kinds.dense.build import build_dense, dense_encodings
from specrag.indexing.kinds.dense.config import DenseConfig
from specrag.indexing.kinds.dense.search import DenseSearcher

KIND = IndexKind(
    name="dense",
    config=DenseConfig,
    build=build_dense,
    searcher=DenseSearcher,
    encodings=dense_encodings,
    description="Bi-encoder embeddings (sentence-transformers) in a faiss index.",
)
