"""The ``bm25`` kind: BM25 over a Snowball-stemmed analyzer, as a block-max impact index."""

from specrag.indexing.kinds.base import IndexKind
from specrag.indexing.kinds.bm25.build import build_bm25
from specrag.indexing.kinds.bm25.config import BM25Config
from specrag.indexing.kinds.bm25.search import BM25Searcher

KIND = IndexKind(
    name="bm25",
    config=BM25Config,
    build=build_bm25,
    searcher=BM25Searcher,
    description="BM25 over a Snowball-stemmed analyzer, stored as a block-max impact index.",
)
