"""A large BEIR folder made from SciFact, to run the whole product path at scale:
`specrag index` (upsert, analysis or encoding, BP reordering, write) and then
``bench_sparse.py --collection-dir`` on the collection it built.

Each passage is a random SciFact document's words (title and text), each kept with
probability ``--keep``; ``queries.jsonl`` holds SciFact's judged test queries. The
passages are near-copies of 5,183 seeds, so the figures say how the engine scales, not
how well it ranks.

    python scripts/make_scale_corpus.py --docs 1000000 --out /tmp/scale-1m
    SPECRAG_HOME=/tmp/scale-home specrag index --collection scale --corpus /tmp/scale-1m \
        --kinds bm25
    nice .venv/bin/python scripts/bench_sparse.py --collection-dir \
        /tmp/scale-home/collections/scale --kind bm25 --queries /tmp/scale-1m/queries.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scifact_cache import add_data_argument, load_scifact  # noqa: E402

from specrag.atomic import atomic_directory  # noqa: E402


def write_jsonl(path: Path, records) -> None:
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--keep", type=float, default=0.7, help="probability of keeping a word")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="the BEIR folder to write")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; name a new folder")
    data = load_scifact(args.data)
    words = [d.full_text().split() for d in data.docs]
    rng = np.random.default_rng(args.seed)

    def passages():
        for i, seed in enumerate(rng.integers(len(words), size=args.docs)):
            w = words[seed]
            kept = rng.random(len(w)) < args.keep
            kept[0] = True  # never an empty passage
            yield {"_id": f"p{i}", "text": " ".join(x for x, k in zip(w, kept, strict=True) if k)}

    with atomic_directory(args.out) as tmp:  # an interrupted run leaves no partial folder
        write_jsonl(tmp / "corpus.jsonl", passages())
        write_jsonl(
            tmp / "queries.jsonl",
            ({"_id": q, "text": t} for q, t in zip(data.query_ids, data.query_texts, strict=True)),
        )
    print(f"wrote {args.docs:,} passages and {len(data.query_ids)} queries to {args.out}")


if __name__ == "__main__":
    main()
