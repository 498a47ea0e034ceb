"""The index kinds, one folder each (config, builder, searcher): see ``base.py`` for what a
kind is made of and ``specrag/indexing/registry.py`` for the list. ``impact/`` is not a
kind: it is the block-max engine that ``bm25`` and ``splade`` share."""
