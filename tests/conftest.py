"""Shared fixtures: the demo corpus slice that every test may use (a fresh clone has
no ../shared, so tests read only files committed in the repo)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from specrag.types import Document

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never write into the user's real specrag home.
os.environ.setdefault("SPECRAG_HOME", tempfile.mkdtemp(prefix="specrag-tests-"))
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
DEMO_CORPUS = REPO / "src" / "specrag" / "demo" / "scifact-1k.jsonl"
DEMO_QUERIES = REPO / "src" / "specrag" / "demo" / "queries.jsonl"
DEMO_QRELS = REPO / "src" / "specrag" / "demo" / "qrels.tsv"


def load_script(name: str):
    """``scripts/<name>.py`` as a module (scripts are not a package; they import their
    siblings by name, hence ``scripts/`` on the path)."""
    import sys

    scripts = str(REPO / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: A PostgreSQL database the tests may create scratch databases next to (``.ci/run`` starts
#: a throwaway cluster and sets it); unset, the PostgreSQL cases skip with the reason.
POSTGRES_URL = os.environ.get("SPECRAG_TEST_POSTGRES_URL")


def _postgres_skip_reason() -> str | None:
    if not POSTGRES_URL:
        return os.environ.get("SPECRAG_TEST_POSTGRES_SKIP") or (
            "SPECRAG_TEST_POSTGRES_URL is not set (.ci/run starts a throwaway PostgreSQL)"
        )
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed: pip install -e '.[postgres]'"
    return None


POSTGRES_SKIP_REASON = _postgres_skip_reason()
#: Parametrize a fixture with these to run its tests on SQLite and on PostgreSQL.
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            POSTGRES_SKIP_REASON is not None, reason=str(POSTGRES_SKIP_REASON)
        ),
    ),
]


@contextlib.contextmanager
def database_url(backend: str, folder: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file in ``folder``, or a new database on the
    test PostgreSQL server (dropped afterwards), so tests never see each other's rows."""
    if backend == "sqlite":
        folder.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{folder / 'specrag.db'}"
        return
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from specrag.storage.db import create_engine_for

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine_for(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


#: BMP block by block on every query, however small the index, with no fallback (the
#: contract and shard tests force the pruned path with it).
BMP_FORCED = {
    "block_size": 4,
    "bmp_min_blocks": 0,
    "probe_blocks": 10**6,
    "fallback_fraction": 2.0,
    "term_block_cost": 0.0,
    "early_probe_blocks": None,
    "blocks_per_hit": 0.0,
}


def demo_documents(n: int | None = None) -> list[Document]:
    """The first ``n`` demo documents, with a small synthetic metadata record each
    (year, topic, flag) so that filters have something to bite on."""
    docs = []
    with open(DEMO_CORPUS) as f:
        for i, line in enumerate(f):
            if n is not None and i >= n:
                break
            row = json.loads(line)
            meta = {
                "year": 2000 + i % 20,
                "topic": ["bio", "med", "chem"][i % 3],
                "even": i % 2 == 0,
            }
            docs.append(
                Document(id=row["_id"], text=row["text"], title=row.get("title"), metadata=meta)
            )
    return docs


def demo_queries(n: int | None = None) -> list[str]:
    with open(DEMO_QUERIES) as f:
        rows = [json.loads(line)["text"] for line in f]
    return rows[:n] if n is not None else rows


@pytest.fixture(scope="session")
def small_docs() -> list[Document]:
    return demo_documents(150)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared CPU: thread pools only add contention (30x slower). Modules
    of tiny-model tests use it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
