"""specrag: retrieval and RAG search service.

The stages live in top-level folders of the repository and are installed as
subpackages: ``specrag.storage``, ``specrag.indexing``, ``specrag.retrieval``,
``specrag.rerank``, ``specrag.generation`` and ``specrag.api``. This package holds what
every stage shares: core types, settings and the atomic file helpers.
"""

__version__ = "0.1.0"
