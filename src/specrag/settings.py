"""One settings object for the service, the CLI and the workers (env prefix SPECRAG_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    max_filter_nodes: int = Field(
        default=2_000,
        ge=1,
        description="Nodes (object keys, list items, values) in one search filter (422).",
    )
    max_rerank_top_n: int = Field(
        default=1_000, ge=1, description="Fused hits one search may send to a reranker (422)."
    )
    max_delete_ids: int = Field(default=10_000, ge=1, description="Ids in one delete (422).")
    max_prompt_tokens: int = Field(
        default=8_192, ge=64, description="The max_prompt_tokens an /ask may request (422)."
    )
    max_queued_builds: int = Field(
        default=16,
        ge=1,
        description="Builds queued or running in one server (one runs at a time); more: 429.",
    )
    max_concurrent_generations: int = Field(
        default=2,
        ge=1,
        description="Worker threads generating answers (/ask) in one server: answers "
        "generated at once.",
    )
    max_queued_generations: int = Field(
        default=4,
        ge=0,
        description="Answers waiting for a generation worker; past the workers and these: "
        "429 with Retry-After.",
    )
    search_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one /search may take; past it: 504 (its result is dropped).",
    )
    ask_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Seconds one /ask may take, waiting in the queue, retrieval and "
        "generation included; past it: 504 (or an SSE `error` event once streaming), and "
        "the generation stops at its next step.",
    )
    auth: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: API keys are required once one exists (with none, the server "
        "runs open on loopback only); off: no keys checked, on any address (logged loudly).",
    )
    public_read: bool = Field(
        default=False, description="Search, ask and reads need no key (writes still do)."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Browser origins allowed to call the API (JSON list, e.g. ["https://app.example"]); '
        "none by default: CORS off and cross-origin writes refused.",
    )
    allowed_models: list[str] = Field(
        default_factory=list,
        description="Models a request may name (/ask model and draft_model, rerank.model) "
        "besides the configured generator and draft model and the collection's kinds' "
        "models (JSON list). Anything else is refused: loading a model is expensive.",
    )
    job_stale_after_s: float = Field(
        default=120.0,
        ge=30.0,
        description="A running build in another process whose heartbeat (every 10 s) is "
        "older than this is marked failed (its process died, e.g. kill -9).",
    )
    keep_versions: int = Field(
        default=2,
        ge=1,
        description="Index versions kept per collection, the current one included; older "
        "ones are removed (after keep_versions_grace_s) at the next build or start.",
    )
    keep_versions_grace_s: float = Field(
        default=300.0,
        ge=0.0,
        description="Seconds a superseded version stays on disk before it may be pruned, "
        "so that requests that opened it finish; one a search holds is never pruned.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`specrag serve` logs: text lines, or one JSON object per line; both "
        "carry the request id.",
    )
    max_metadata_depth: int = Field(
        default=32, ge=1, le=256, description="Nesting levels one document's metadata may have."
    )
    max_metadata_bytes: int = Field(
        default=64 * 1024, ge=256, description="Bytes (as JSON) one document's metadata may take."
    )
    # Ray (extra `ray`, docs/scaling.md): builds run on Ray when ray_address is set.
    ray_address: str | None = Field(
        default=None, description="Ray cluster for builds (`auto`, `host:6379`, `local`)."
    )
    ray_batch_size: int = Field(default=256, ge=1, description="Documents per encoder batch.")
    ray_concurrency: int = Field(default=2, ge=1, description="Encoder actors in the pool.")
    ray_cpus_per_actor: int = Field(
        default=1, ge=1, description="CPUs each encoder actor reserves (and its torch threads)."
    )
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
