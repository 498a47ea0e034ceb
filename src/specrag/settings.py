"""One settings object for the service, the CLI and the workers (env prefix SPECRAG_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPECRAG_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("specrag"),
        description="Where the database and index files live (SPECRAG_HOME); default: the "
        "platform's user data folder, e.g. ~/.local/share/specrag on Linux.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file under `home`."
    )
    device: str | None = Field(
        default=None, description="torch device; default cuda when present, else cpu."
    )
    generator: str = Field(
        default="extractive",
        description="Generator for /ask: a transformers causal LM name or path, or `extractive` (no LLM).",
    )
    draft_model: str | None = Field(
        default=None, description="Optional small draft model for /ask."
    )
    max_k: int = Field(default=1000, ge=1)
    max_query_chars: int = Field(default=2000, ge=1)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_batch_documents: int = Field(default=10_000, ge=1)
    # Ray (extra `ray`, docs/scaling.md): builds run on Ray when ray_address is set.
    ray_address: str | None = Field(
        default=None, description="Ray cluster for builds (`auto`, `host:6379`, `local`)."
    )
    ray_batch_size: int = Field(default=256, ge=1, description="Documents per encoder batch.")
    ray_concurrency: int = Field(default=2, ge=1, description="Encoder actors in the pool.")
    ray_num_gpus: float | None = Field(
        default=None,
        ge=0,
        description="GPUs per encoder actor; default 1 when the cluster has GPUs.",
    )

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'specrag.db').resolve()}"

    @property
    def collections_dir(self) -> Path:
        return self.home / "collections"


@lru_cache
def get_settings() -> Settings:
    return Settings()
