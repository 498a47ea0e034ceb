"""The ``splade`` kind: learned sparse impacts (SparseEncoder), searched by the bm25 engine."""

from specrag.indexing.kinds.base import IndexKind
from specrag.indexing.kinds.splade.build import build_splade, splade_encodings
from specrag.indexing.kinds.splade.config import SpladeConfig
from specrag.indexing.kinds.splade.search import SpladeSearcher

KIND = IndexKind(
    name="splade",
    config=SpladeConfig,
    build=build_splade,
    searcher=SpladeSearcher,
    encodings=splade_encodings,
    description="Learned sparse (SparseEncoder) impacts, searched by the same block-max engine as bm25.",
)
