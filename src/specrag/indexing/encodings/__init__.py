"""The encoding store (issue #14): encoder outputs kept per (space, text hash) so that a
build encodes only changed documents, and kinds sharing a model share one forward pass.

- ``spaces.py``: what an encoding is keyed by (model fingerprint, settings, prompt);
- ``store.py``: append-only, memory-mapped chunks on disk, and the build/GC lock;
- ``encode.py``: one forward per document for every output asked of a space;
- ``session.py``: a build's plan, ``ensure`` (encode what is missing) and
  ``encodings_for`` (what builders call);
- ``gc.py``: deleting stored encodings that no version refers to.
"""
