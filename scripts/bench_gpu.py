"""The benchmarks of ``scripts/gpu_check.sh`` (issue #17): what the GPU paths buy, each
against its CPU baseline on the same machine, through specrag's own code paths.

    python scripts/bench_gpu.py twin  TOKENIZER_DIR OUT_DIR   # MiniLM-shaped, random weights
    python scripts/bench_gpu.py build  --device cuda --docs 5000 --out $OUT
    python scripts/bench_gpu.py search --device cuda --docs 200000 --out $OUT

- build: encoding docs/s of the ``dense`` kind's encoder at float32 / bfloat16 / float16
  (autocast; float16 only on cuda), and the colbert centroid k-means: torch on the device
  against faiss on the CPU, seconds and inertia (``2 - 2 * mean best inner product``).
- search: QPS at batch 1 and 256 of the ``dense`` kind (torch flat on the device vs faiss
  flat on the CPU) and the ``binary`` kind (torch Hamming + rescore vs faiss), both over
  random unit vectors, and whether each query's top-k rows are identical.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_results import table, write_result  # noqa: E402

K = 10


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def make_twin(tokenizer_dir: Path, out: Path) -> None:
    """A sentence-transformers folder shaped like MiniLM (its config, tokenizer, pooling)
    with random weights: what encoding speed depends on, without carrying the weights."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    shutil.copytree(tokenizer_dir, out, dirs_exist_ok=True)
    BertModel(BertConfig.from_pretrained(str(out))).save_pretrained(str(out))


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(n: int, dim: int, clusters: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def bench_build(args) -> None:
    import faiss

    from specrag.indexing.encoders.embedding import encode_corpus
    from specrag.indexing.encoders.models import load_model
    from specrag.indexing.encoders.precision import encode_precision
    from specrag.indexing.kinds.colbert.kmeans import spherical_kmeans
    from specrag.types import Document

    demo = Path(__file__).resolve().parent.parent / "src/specrag/demo/scifact-1k.jsonl"
    rows = [json.loads(line) for line in demo.read_text().splitlines()]
    docs = [
        Document(id=str(i), text=rows[i % len(rows)]["text"], title=rows[i % len(rows)]["title"])
        for i in range(args.docs)
    ]
    model = load_model(args.model, device=args.device)
    encode_rows = []
    reference = None
    for dtype in ("float32", "bfloat16", "float16"):
        if dtype == "float16" and args.device != "cuda":
            continue
        with encode_precision(args.device, dtype):
            encode_corpus(model, docs[: args.batch_size], batch_size=args.batch_size)  # warm-up
            sync(args.device)
            start = time.perf_counter()
            emb = encode_corpus(model, docs, batch_size=args.batch_size)
            sync(args.device)
            seconds = time.perf_counter() - start
        reference = emb if reference is None else reference
        cos = float((emb * reference).sum(axis=1).min())
        encode_rows.append([dtype, args.docs, round(args.docs / seconds, 1), round(cos, 7)])
        print(f"encode {dtype}: {args.docs / seconds:.1f} docs/s (min cos vs float32 {cos:.7f})")

    sample = clustered(args.tokens, 384, max(8, args.centroids // 2))
    kmeans_rows = []
    start = time.perf_counter()
    km = faiss.Kmeans(384, args.centroids, niter=8, spherical=True, seed=0, verbose=False)
    km.train(sample)
    faiss_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = spherical_kmeans(sample, args.centroids, 8, 0, args.device)
    sync(args.device)
    torch_s = time.perf_counter() - start
    for name, centroids, seconds in (
        ("faiss cpu", km.centroids, faiss_s),
        (f"torch {args.device}", ours, torch_s),
    ):
        inertia = 2 - 2 * float((sample @ centroids.T).max(axis=1).mean())
        kmeans_rows.append(
            [name, args.tokens, args.centroids, round(seconds, 2), round(inertia, 4)]
        )
        print(f"k-means {name}: {seconds:.2f}s inertia {inertia:.4f}")
    write_result(
        "gpu_check_build",
        f"GPU check: encoding and k-means ({args.device})",
        [
            table("encoding (dense kind's encoder)", ["dtype", "docs", "docs/s", "min cos vs fp32"], encode_rows),
            table("colbert centroid k-means (8 iterations, spherical)", ["engine", "points", "centroids", "seconds", "inertia"], kmeans_rows),
        ],
        notes=[f"model: {args.model}; batch {args.batch_size}"],
        out_dir=Path(args.out),
    )  # fmt: skip


def timed_qps(search, queries: np.ndarray, batch: int, budget_s: float, device: str) -> float:
    """Queries per second of ``search`` over ``queries`` in batches, within a time budget."""
    search(queries[:batch])  # warm-up
    sync(device)
    done, start = 0, time.perf_counter()
    while done < len(queries) and time.perf_counter() - start < budget_s:
        search(queries[done : done + batch])
        done += batch
    sync(device)
    return min(done, len(queries)) / (time.perf_counter() - start)


def bench_search(args) -> None:
    from specrag.indexing.kinds.binary.build import write_binary_index
    from specrag.indexing.kinds.binary.config import BinaryConfig
    from specrag.indexing.kinds.binary.search import BinarySearcher
    from specrag.indexing.kinds.dense.config import DenseConfig
    from specrag.indexing.kinds.dense.search import DenseSearcher

    emb = unit_vectors(args.docs, 384, 0)
    queries = unit_vectors(args.queries, 384, 1)
    ids = np.arange(args.docs).astype(str)
    rows, matches = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        write_binary_index(emb, Path(tmp), BinaryConfig())
        searchers = {
            "dense": {
                engine: DenseSearcher(emb, None, DenseConfig(backend=engine, device=dev), ids)
                for engine, dev in (("faiss", "cpu"), ("torch", args.device))
            },
            "binary": {
                engine: BinarySearcher.load(
                    Path(tmp), BinaryConfig(backend=engine, device=dev), ids
                )
                for engine, dev in (("faiss", "cpu"), ("torch", args.device))
            },
        }
        for kind, pair in searchers.items():
            answers = {e: s.search_rows(queries, K) for e, s in pair.items()}
            same = sum(
                a[0].tolist() == b[0].tolist()
                for a, b in zip(answers["faiss"], answers["torch"], strict=True)
            )
            matches[kind] = same
            for engine, searcher in pair.items():
                device = args.device if engine == "torch" else "cpu"
                for batch in (1, 256):
                    qps = timed_qps(
                        lambda q, s=searcher: s.search_rows(q, K),
                        queries,
                        batch,
                        args.budget,
                        device,
                    )
                    rows.append(
                        [
                            kind,
                            f"{engine} {device}",
                            batch,
                            args.docs,
                            round(qps, 1),
                            f"{same}/{len(queries)}",
                        ]
                    )
                    print(f"{kind} {engine} {device} batch {batch}: {qps:.1f} QPS")
    write_result(
        "gpu_check_search",
        f"GPU check: exact search QPS ({args.device})",
        [table("search, k=10, random unit vectors (dim 384)", ["kind", "engine", "batch", "docs", "QPS", "identical top-k"], rows)],
        data={"identical_topk": matches, "queries": args.queries},
        out_dir=Path(args.out),
    )  # fmt: skip
    if any(v != args.queries for v in matches.values()):
        raise SystemExit(f"torch and faiss top-k differ: {matches} of {args.queries}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    twin = sub.add_parser("twin")
    twin.add_argument("tokenizer_dir", type=Path)
    twin.add_argument("out", type=Path)
    for name in ("build", "search"):
        p = sub.add_parser(name)
        p.add_argument("--device", default="cuda")
        p.add_argument("--docs", type=int, default=5000)
        p.add_argument("--out", default=".")
    build = sub.choices["build"]
    build.add_argument("--model", default="all-MiniLM-L6-v2")
    build.add_argument("--batch-size", type=int, default=128)
    build.add_argument("--tokens", type=int, default=131072)
    build.add_argument("--centroids", type=int, default=1024)
    search = sub.choices["search"]
    search.add_argument("--queries", type=int, default=512)
    search.add_argument("--budget", type=float, default=8.0, help="seconds per QPS figure")
    args = parser.parse_args()
    if args.cmd == "twin":
        make_twin(args.tokenizer_dir, args.out)
    elif args.cmd == "build":
        bench_build(args)
    else:
        bench_search(args)


if __name__ == "__main__":
    main()
