"""One registry maps an index kind's name to its config model, builder and searcher.

Builders and searchers are named by dotted path and imported on first use, so that a
bm25-only process never imports torch. Contract (see tests/test_index_contract.py):

- ``builder(corpus, out_dir, config, progress) -> dict``: writes the kind's files into
  ``out_dir`` (a fresh directory inside a version being built) and returns statistics
  recorded in the version manifest.
- ``Searcher.load(index_dir, config, doc_ids) -> Searcher``: opens them read-only;
  ``doc_ids[i]`` is the external id of internal row ``i``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from specrag.indexing import configs


@dataclass(frozen=True)
class IndexKind:
    name: str
    config: type[BaseModel]
    builder: str  # "module:function"
    searcher: str  # "module:Class"
    description: str = ""
    #: False for kinds that are not document retrievers (the generator's datastore);
    #: the pipeline and the index contract test skip them.
    searchable: bool = True

    def load_builder(self):
        return _import(self.builder)

    def load_searcher_class(self):
        return _import(self.searcher)

    def parse_config(self, raw: dict[str, Any] | None) -> BaseModel:
        return self.config.model_validate(raw or {})


def _import(dotted: str):
    module, _, attr = dotted.partition(":")
    return getattr(importlib.import_module(module), attr)


KINDS: dict[str, IndexKind] = {}


def register(kind: IndexKind) -> None:
    KINDS[kind.name] = kind


def get_kind(name: str) -> IndexKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown index kind {name!r}; known: {', '.join(sorted(KINDS))}") from None


register(
    IndexKind(
        "bm25",
        configs.BM25Config,
        "specrag.indexing.bm25:build_bm25",
        "specrag.retrieval.sparse:ImpactSearcher",
        "BM25 over a Snowball-stemmed analyzer, stored as a block-max impact index.",
    )
)
register(
    IndexKind(
        "dense",
        configs.DenseConfig,
        "specrag.indexing.dense:build_dense",
        "specrag.retrieval.dense:DenseSearcher",
        "Bi-encoder embeddings (sentence-transformers) in a faiss index.",
    )
)
register(
    IndexKind(
        "splade",
        configs.SpladeConfig,
        "specrag.indexing.splade:build_splade",
        "specrag.retrieval.sparse:ImpactSearcher",
        "Learned sparse (SparseEncoder) impacts, searched by the same block-max engine as bm25.",
    )
)
register(
    IndexKind(
        "lucene",
        configs.LuceneConfig,
        "specrag.indexing.lucene:build_lucene",
        "specrag.retrieval.lucene:LuceneSearcher",
        "Lucene BM25 through Pyserini (extra `lucene`): a reference and an option.",
    )
)
register(
    IndexKind(
        "binary",
        configs.BinaryConfig,
        "specrag.indexing.binary:build_binary",
        "specrag.retrieval.binary:BinarySearcher",
        "Sign-binarized embeddings, Hamming search, int8 rescoring.",
    )
)
register(
    IndexKind(
        "colbert",
        configs.ColbertConfig,
        "specrag.indexing.colbert:build_colbert",
        "specrag.retrieval.colbert:ColbertSearcher",
        "Late interaction: centroid candidates, compressed token vectors, exact MaxSim.",
    )
)
register(
    IndexKind(
        "datastore",
        configs.DatastoreConfig,
        "specrag.generation.datastore:build_datastore",
        "specrag.generation.datastore:DatastoreSearcher",
        "Suffix array over corpus tokens (the generator's tokenizer), for speculative drafts.",
        searchable=False,
    )
)
