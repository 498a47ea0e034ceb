"""What the encoding store saves on updates (issue #14): on a SciFact slice, the time of a
raw ``SentenceTransformer.encode`` pass, of a raw token-embedding pass (what the colbert
build spent on top before the store), of a full ``dense + binary + colbert`` build (one
forward per document for the three kinds), and of rebuilds after 1% of the documents
changed and after no change (only those 1% are encoded).

The machine may be shared: the load average before and after each step goes into the
notes, and every step runs once (no repetition), so read the figures as one sample.

Run: nice -n 10 /work/main/.venv/bin/python scripts/bench_updates.py [--limit 1000]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from itertools import islice  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import table, write_result  # noqa: E402

from specrag.indexing.encoders.models import load_model  # noqa: E402
from specrag.indexing.encoders.tokens import TokenEncoder  # noqa: E402
from specrag.indexing.readers import read_documents  # noqa: E402
from specrag.indexing.versions import VersionStore  # noqa: E402
from specrag.types import Document  # noqa: E402

KINDS = {"dense": {}, "binary": {}, "colbert": {}}
MODEL = "all-MiniLM-L6-v2"


def load(path: Path, limit: int) -> list[Document]:
    return list(islice(read_documents(path), limit))


def revise(docs: list[Document], fraction: float) -> tuple[list[Document], int]:
    """A copy with every (1/fraction)-th document's text changed."""
    step = max(1, round(1 / fraction))
    out = [
        Document(d.id, d.text + " (revised)", d.title, d.metadata) if i % step == 0 else d
        for i, d in enumerate(docs)
    ]
    return out, len(range(0, len(docs), step))


def timed(label: str, loads: list[str], fn):
    before = os.getloadavg()[0]
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    loads.append(f"{label}: load {before:.1f} → {os.getloadavg()[0]:.1f}")
    print(f"{label}: {seconds:.1f} s", flush=True)
    return seconds, result


def build_row(label: str, versions: VersionStore, docs, loads) -> list:
    seconds, vid = timed(label, loads, lambda: versions.build(docs, KINDS))
    manifest = versions.manifest(vid)
    (enc,) = manifest["encodings"].values()
    kinds_s = sum(k["build_seconds"] for k in manifest["kinds"].values())
    return [
        label,
        round(seconds, 2),
        enc["encoded"],
        enc["reused"],
        enc["seconds"],
        round(kinds_s, 2),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus", type=Path, default=Path("/work/shared/data/scifact/corpus.jsonl")
    )
    parser.add_argument("--limit", type=int, default=1000, help="documents (default 1000)")
    parser.add_argument("--changed", type=float, default=0.01, help="share of documents changed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    docs = load(args.corpus, args.limit)
    texts = [d.full_text() for d in docs]
    model = load_model(MODEL)
    model.encode(texts[:8])  # load and warm up outside the timings
    tokens = TokenEncoder(MODEL, batch_size=32)
    loads: list[str] = []
    rows: list[list] = []

    raw_s, _ = timed("raw encode", loads, lambda: model.encode(texts, batch_size=args.batch_size))
    rows.append(
        [
            "SentenceTransformer.encode (pooled only)",
            round(raw_s, 2),
            len(docs),
            0,
            round(raw_s, 2),
            0.0,
        ]
    )
    tok_s, _ = timed("raw tokens", loads, lambda: tokens.encode_documents(texts))
    rows.append(
        [
            "TokenEncoder.encode_documents (tokens only)",
            round(tok_s, 2),
            len(docs),
            0,
            round(tok_s, 2),
            0.0,
        ]
    )

    with tempfile.TemporaryDirectory(prefix="bench-updates-") as root:
        versions = VersionStore(Path(root))
        rows.append(build_row("full build, dense + binary + colbert", versions, docs, loads))
        revised, n_changed = revise(docs, args.changed)
        rows.append(
            build_row(f"rebuild after {n_changed} documents changed", versions, revised, loads)
        )
        rows.append(build_row("rebuild, nothing changed", versions, revised, loads))
        store_bytes = sum(
            p.stat().st_size for p in (Path(root) / "encodings").rglob("*") if p.is_file()
        )

    for row in rows:
        print(" | ".join(str(c) for c in row))
    if args.no_write:
        return 0
    write_result(
        "updates",
        "Updates: the encoding store",
        [
            table(
                f"SciFact, first {len(docs)} documents, MiniLM on CPU; each step run once",
                ["step", "seconds", "docs encoded", "docs reused", "encode s", "kinds' builders s"],
                rows,
            )
        ],
        notes=[
            "A full build of dense + binary + colbert runs one MiniLM forward per document: "
            "the pooled vector (dense, binary) and the token vectors (colbert) come from the "
            "same pass. Before the encoding store the build encoded twice (dense's pass, "
            "reused by binary, plus colbert's): about the sum of the two raw rows.",
            "A rebuild encodes only the documents whose text changed; the rest of its time "
            "is the kinds' builders (colbert's k-means and compression, faiss), which still "
            "rebuild over all documents (delta segments are the next step of issue #14).",
            f"Encoding store size after the three builds: {store_bytes / 1e6:.1f} MB "
            f"(pooled float32 + token float16).",
            "Shared machine (other jobs running): 1-minute load average before → after each "
            "step: " + "; ".join(loads) + f". CPU cores: {os.cpu_count()}.",
        ],
        order=45,
        data={"n_docs": len(docs), "changed": n_changed, "store_bytes": store_bytes},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
