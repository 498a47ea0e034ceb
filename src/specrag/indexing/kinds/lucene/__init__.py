"""The ``lucene`` kind (extra ``lucene``): Lucene BM25 through Pyserini, a reference and an option."""

from specrag.indexing.kinds.base import IndexKind
from specrag.indexing.kinds.lucene.build import build_lucene
from specrag.indexing.kinds.lucene.config import LuceneConfig
from specrag.indexing.kinds.lucene.search import LuceneSearcher

KIND = IndexKind(
    name="lucene",
    config=LuceneConfig,
    build=build_lucene,
    searcher=LuceneSearcher,
    description="Lucene BM25 through Pyserini (extra `lucene`): a reference and an option.",
)
