"""The ``colbert`` kind: PLAID-style late interaction (centroids, compressed tokens, MaxSim)."""

from specrag.indexing.kinds.base import IndexKind
from specrag.indexing.kinds.colbert.build import build_colbert, colbert_encodings
from specrag.indexing.kinds.colbert.config import ColbertConfig
from specrag.indexing.kinds.colbert.search import ColbertSearcher

KIND = IndexKind(
    name="colbert",
    config=ColbertConfig,
    build=build_colbert,
    searcher=ColbertSearcher,
    encodings=colbert_encodings,
    description="Late interaction: centroid candidates, compressed token vectors, exact MaxSim.",
)
