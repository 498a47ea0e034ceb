"""The ``datastore`` kind: a suffix array over corpus tokens, for the generator's drafts."""

from specrag.indexing.kinds.base import IndexKind
from specrag.indexing.kinds.datastore.build import build_datastore
from specrag.indexing.kinds.datastore.config import DatastoreConfig
from specrag.indexing.kinds.datastore.search import DatastoreSearcher

KIND = IndexKind(
    name="datastore",
    config=DatastoreConfig,
    build=build_datastore,
    searcher=DatastoreSearcher,
    description="Suffix array over corpus tokens (the generator's tokenizer), for speculative drafts.",
    searchable=False,
)
