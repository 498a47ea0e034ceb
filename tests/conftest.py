"""Shared fixtures: the demo corpus slice that every test may use (a fresh clone has
no ../shared, so tests read only files committed in the repo)."""

from __future__ import annotations

import json
import os
import tempfile
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
