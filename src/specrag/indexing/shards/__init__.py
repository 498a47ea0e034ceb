"""Sharded collections (issue #16): documents routed to shards by a stable hash of their
id (``routing.py``), each shard built in parallel as a version of its own with the
collection-wide BM25 statistics (``build.py``, ``bm25.py``, ``runners.py``), and searched
by scattering to every shard and merging (``search.py``). ``docs/scaling.md`` explains it.
"""
