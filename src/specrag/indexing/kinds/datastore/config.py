"""The ``datastore`` kind's settings: the generator's tokenizer and the match length."""

from __future__ import annotations

from pydantic import Field

from specrag.indexing.kinds.base import KindConfig


class DatastoreConfig(KindConfig):
    tokenizer: str = Field(description="The generator's tokenizer (name or path).")
    max_match: int = Field(
        16, ge=1, le=256, description="Longest context tail (tokens) matched against the corpus."
    )
