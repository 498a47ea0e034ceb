"""Exact vector search on any torch device, for the ``dense`` and ``binary`` kinds (not a
kind itself): a GPU path that needs no faiss-gpu wheel (issue #17, point 2).

- ``config.py``: the ``backend`` / ``device`` knobs both kinds' configs inherit;
- ``device.py``: what ``auto`` resolves to on this machine;
- ``keys.py``: chunked top-k with the contract's tie rule (higher score, then lower row);
- ``flat.py``: exact inner product over float vectors;
- ``binary.py``: Hamming candidates over sign bits, rescored against the int8 store.
"""
