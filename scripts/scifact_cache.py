"""SciFact for the benchmarks, and cached bi-encoder embeddings of it.

Encoding all 5,183 SciFact documents with MiniLM takes minutes on a shared CPU, so the
embeddings are computed once and kept under ``<repo>/.cache/embeddings/`` (gitignored),
keyed by model name + side (document/query) + normalization + a hash of the exact texts:
a different model, text or tokenization of the title never reuses a stale file.

Use from another benchmark in ``scripts/`` (the script's folder is on ``sys.path``)::

    from scifact_cache import add_data_argument, load_scifact, document_embeddings, evaluate

    data = load_scifact(args.data)              # docs, test queries, qrels
    doc_emb = document_embeddings(data)         # (5183, 384) float32, normalized
    q_emb = query_embeddings(data)              # (300, 384), row i = data.query_ids[i]
    metrics = evaluate({qid: {doc_id: score}}, data.qrels)   # nDCG@10, R@100, RR@10

As a command it fills the cache for the whole set, or writes a small slice of SciFact
that any benchmark here takes as ``--data`` (a check that the script runs, in seconds)::

    python scripts/scifact_cache.py [--data ../shared/data/scifact] [--model NAME]
    python scripts/scifact_cache.py --write-slice /tmp/scifact-tiny --slice-docs 300

Documents are encoded as ``Document.full_text()`` (title, newline, text), exactly as the
``dense`` and ``binary`` index kinds encode them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specrag.atomic import write_bytes_atomic
from specrag.types import Document

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"
CACHE_DIR = REPO / ".cache" / "embeddings"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
MEASURES = ("nDCG@10", "R@100", "RR@10")


@dataclass
class SciFact:
    docs: list[Document]  # corpus order: internal row i = docs[i]
    query_ids: list[str]  # the split's queries that have judgements, in file order
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> relevance

    @property
    def doc_ids(self) -> np.ndarray:
        return np.array([d.id for d in self.docs])


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"BEIR SciFact folder (default {DEFAULT_DATA})",
    )


def read_corpus(data_dir: Path) -> list[Document]:
    """The BEIR corpus, in file order."""
    data_dir = Path(data_dir)
    if not (data_dir / "corpus.jsonl").exists():
        raise FileNotFoundError(
            f"{data_dir}/corpus.jsonl not found; pass --data <BEIR scifact dir>"
        )
    docs = []
    with open(data_dir / "corpus.jsonl") as f:
        for line in f:
            row = json.loads(line)
            docs.append(
                Document(id=str(row["_id"]), text=row["text"], title=row.get("title") or None)
            )
    return docs


def read_queries(data_dir: Path) -> tuple[list[str], list[str]]:
    """Every query (ids, texts), in file order."""
    ids, texts = [], []
    with open(Path(data_dir) / "queries.jsonl") as f:
        for line in f:
            row = json.loads(line)
            ids.append(str(row["_id"]))
            texts.append(row["text"])
    return ids, texts


def read_qrels(data_dir: Path, split: str) -> dict[str, dict[str, int]]:
    """query id -> doc id -> relevance for ``split``."""
    qrels: dict[str, dict[str, int]] = {}
    with open(Path(data_dir) / "qrels" / f"{split}.tsv") as f:
        next(f)  # header: query-id corpus-id score
        for line in f:
            qid, doc_id, rel = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[doc_id] = int(rel)
    return qrels


def load_scifact(data_dir: Path = DEFAULT_DATA, split: str = "test") -> SciFact:
    """Corpus, the ``split``'s judged queries and its qrels from a BEIR folder."""
    docs = read_corpus(data_dir)
    qrels = read_qrels(data_dir, split)
    ids, texts = read_queries(data_dir)
    judged = [i for i, qid in enumerate(ids) if qid in qrels]
    return SciFact(docs, [ids[i] for i in judged], [texts[i] for i in judged], qrels)


def cached_embeddings(
    texts: list[str],
    model: str = DEFAULT_MODEL,
    side: str = "document",
    normalize: bool = True,
    batch_size: int = 64,
) -> np.ndarray:
    """float32 embeddings of ``texts`` (``side`` = document or query), from the cache when
    present, else encoded with progress on stderr and cached."""
    if side not in ("document", "query"):
        raise ValueError(f"side must be 'document' or 'query', got {side!r}")
    path = cache_path(texts, model, side, normalize)
    if path.exists():
        return np.load(path)
    from specrag.indexing.encoders.embedding import encode_corpus, encode_queries
    from specrag.indexing.encoders.models import load_model

    encoder = load_model(model)
    print(f"encoding {len(texts)} {side} texts with {model} -> {path}", file=sys.stderr)
    if side == "document":
        corpus = [Document(id=str(i), text=t) for i, t in enumerate(texts)]
        emb = encode_corpus(encoder, corpus, batch_size=batch_size, normalize=normalize)
    else:
        emb = encode_queries(encoder, texts, batch_size=batch_size, normalize=normalize)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, np.asarray(emb, dtype=np.float32))
    write_bytes_atomic(path, buf.getvalue())
    return np.asarray(emb, dtype=np.float32)


def cache_path(texts: list[str], model: str, side: str, normalize: bool) -> Path:
    digest = hashlib.sha256()
    for part in (model, side, str(normalize), *texts):
        digest.update(part.encode())
        digest.update(b"\0")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-60:]
    return (
        CACHE_DIR / f"{slug}-{side}-{'norm' if normalize else 'raw'}-{digest.hexdigest()[:16]}.npy"
    )


def document_embeddings(
    data: SciFact, model: str = DEFAULT_MODEL, normalize: bool = True
) -> np.ndarray:
    """(n_docs, dim) embeddings of ``data.docs`` in corpus order."""
    return cached_embeddings([d.full_text() for d in data.docs], model, "document", normalize)


def query_embeddings(
    data: SciFact, model: str = DEFAULT_MODEL, normalize: bool = True
) -> np.ndarray:
    """(n_queries, dim) embeddings of ``data.query_texts``."""
    return cached_embeddings(data.query_texts, model, "query", normalize)


def evaluate(
    run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> dict[str, float]:
    """nDCG@10, R@100 and RR@10 (= MRR@10) averaged over the judged queries (ir-measures);
    a judged query missing from ``run`` counts as zero."""
    import ir_measures

    measures = [ir_measures.parse_measure(m) for m in MEASURES]
    totals = dict.fromkeys(map(str, measures), 0.0)
    for metric in ir_measures.iter_calc(measures, qrels, {q: r for q, r in run.items() if r}):
        if metric.query_id in qrels:
            totals[str(metric.measure)] += metric.value
    return {name: total / len(qrels) for name, total in totals.items()}


@dataclass
class Row:
    """One benchmark row (bench_dense.py's side-by-side table)."""

    name: str
    metrics: dict[str, float]  # evaluate()'s output
    qps_single: float | None = None  # one query per call, single thread
    qps_batch: float | None = None  # all queries in one call
    bytes_per_doc: float | None = None  # what the search keeps per document
    note: str = ""


def write_slice(data_dir: Path, out: Path, n_docs: int, n_queries: int, seed: int = 0) -> None:
    """A small BEIR folder cut from ``data_dir``, for checking a benchmark end to end in
    seconds (``--data OUT``): the first ``n_queries`` judged queries of each split with
    their judgements, every document they judge, and random other documents up to
    ``n_docs`` (corpus order kept). Figures measured on it mean nothing."""
    data_dir, out = Path(data_dir), Path(out)
    qrels = {split: read_qrels(data_dir, split) for split in ("train", "test")}
    ids, texts = read_queries(data_dir)
    kept_q = {
        split: [q for q in ids if q in rels][:n_queries] for split, rels in qrels.items()
    }  # fmt: skip
    judged = {d for split, qs in kept_q.items() for q in qs for d in qrels[split][q]}
    lines = (data_dir / "corpus.jsonl").read_text().splitlines()
    doc_ids = [str(json.loads(line)["_id"]) for line in lines]
    others = [i for i, d in enumerate(doc_ids) if d not in judged]
    rng = np.random.default_rng(seed)
    n_more = max(0, min(len(others), n_docs - len(judged)))
    picked = set(rng.choice(others, size=n_more, replace=False).tolist())
    picked |= {i for i, d in enumerate(doc_ids) if d in judged}
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(lines[i] + "\n" for i in sorted(picked)))
    wanted = {q for qs in kept_q.values() for q in qs}
    with open(out / "queries.jsonl", "w") as f:
        for qid, text in zip(ids, texts, strict=True):
            if qid in wanted:
                f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    for split, qs in kept_q.items():
        with open(out / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q in qs:
                for d, rel in qrels[split][q].items():
                    f.write(f"{q}\t{d}\t{rel}\n")
    print(f"wrote {len(picked)} documents, {len(wanted)} queries to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Fill the SciFact embedding cache; or, with --write-slice, write a small "
        "BEIR folder cut from SciFact for quick end-to-end checks of the benchmarks."
    )
    add_data_argument(parser)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--write-slice", type=Path, metavar="DIR", help="write a slice there")
    parser.add_argument("--slice-docs", type=int, default=300)
    parser.add_argument("--slice-queries", type=int, default=20, help="per split")
    args = parser.parse_args()
    if args.write_slice:
        write_slice(args.data, args.write_slice, args.slice_docs, args.slice_queries)
        return
    data = load_scifact(args.data)
    d = document_embeddings(data, args.model)
    q = query_embeddings(data, args.model)
    print(f"documents {d.shape}, queries {q.shape} cached under {CACHE_DIR}")


if __name__ == "__main__":
    main()
