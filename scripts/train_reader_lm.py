"""Train a small GPT-2 that behaves like a RAG reader (quotes and continues passages).

No LM can be downloaded here, so the benchmark needs one trained on CPU. Copy-from-context
objective on windows as long as prompt + answer (loss on answer tokens only), plus a few
memorized documents for the corpus-datastore scenario. Resumable: checkpoints every few
minutes under --out; run it again to continue.

    nice -n 5 .venv/bin/python scripts/train_reader_lm.py --minutes 35
    nice -n 5 .venv/bin/python scripts/train_reader_lm.py --name draft --n-layer 1 --n-embd 128 --n-head 2 --minutes 6

A memorization phase, resumed on the trained reader (more continue examples, cheap
passage-less "recite" batches, no dropout, a fresh warmup + cosine schedule):

    nice -n 5 taskset -c 0 .venv/bin/python scripts/train_reader_lm.py --minutes 19 \
        --p-continue 0.6 --p-recite 0.5 --dropout 0 --lr 1e-3 --restart-schedule

Models and the tokenizer go under ``--out-dir`` (default ``.cache/reader-lm``, where
bench_generation.py and profile_generation_step.py look). Check on a slice
(scripts/scifact_cache.py --write-slice /tmp/sf): ``--data /tmp/sf --out-dir /tmp/reader-lm
--minutes 0.2 --n-layer 1 --n-embd 64 --n-head 2``.

A >= 100M-parameter reader for GPU benchmarks (``--preset 110m``: GPT-2 14 x 768, 12 heads,
106M parameters with the 8k tokenizer; bf16 autocast on cuda, fp32 master weights), within
minutes on one GPU; the same command resumes it:

    .venv/bin/python scripts/train_reader_lm.py --preset 110m --device cuda --dtype bf16 \
        --minutes 15 --name reader-110m

Check that a preset builds and steps (CPU, seconds): ``--preset 110m --max-steps 2 --batch 1``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reader_tasks import (  # noqa: E402
    MAX_PROMPT_TOKENS,
    load_corpus,
    memorized_docs,
    recite_example,
    sample_example,
)
from scifact_cache import add_data_argument  # noqa: E402

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "reader-lm"
EOS = "<|endoftext|>"

#: Named model sizes: GPT-2 shape and training defaults (flags given explicitly win).
#: 110m: 12 x 768 (GPT-2 small's shape) holds only 92M parameters with our 8k vocabulary
#: (GPT-2 small's 124M count 39M of 50k-vocabulary embeddings), so two more layers.
PRESETS = {
    "small": {"n_layer": 4, "n_embd": 192, "n_head": 4, "batch": 8, "lr": 2e-3},
    "110m": {"n_layer": 14, "n_embd": 768, "n_head": 12, "batch": 32, "lr": 6e-4},
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # fp16 would need a grad scaler


def train_tokenizer(data_dir: Path, out: Path, vocab_size: int = 8192):
    """Byte-level BPE over the SciFact corpus and queries (seconds)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    if (out / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(out)

    def texts():
        for name in ("corpus.jsonl", "queries.jsonl"):
            with open(data_dir / name) as f:
                for line in f:
                    d = json.loads(line)
                    yield (d.get("title") or "") + "\n" + d["text"]

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts(), vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, pad_token=EOS
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(tmp)
    os.replace(tmp, out)
    return tok


def make_batch(examples, tokenizer, device, offsets: list[int] | None = None):
    """Right-padded ids, labels (answer tokens only), attention mask and position ids;
    ``offsets`` shifts each row's positions (recite rows sit where a full prompt's answer
    would, since GPT-2's position embeddings are absolute)."""
    rows, labels = [], []
    for ex in examples:
        ans = tokenizer(ex.answer_text, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
        rows.append(ex.prompt_ids + ans)
        labels.append([-100] * len(ex.prompt_ids) + ans)
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.eos_token_id, dtype=torch.long)
    lab = torch.full((len(rows), width), -100, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.arange(width).repeat(len(rows), 1)
    for i, (r, lb) in enumerate(zip(rows, labels, strict=True)):
        ids[i, : len(r)] = torch.tensor(r)
        lab[i, : len(lb)] = torch.tensor(lb)
        att[i, : len(r)] = 1
        if offsets:
            pos[i] += offsets[i]
    return ids.to(device), lab.to(device), att.to(device), pos.to(device), int(att.sum())


def answer_loss(model, ids, att, labels, pos=None):
    """Cross-entropy on answer positions only, with the LM head applied only there (the
    head over an 8k vocabulary costs as much as the blocks; answers are ~10% of tokens)."""
    hidden = model.transformer(
        input_ids=ids, attention_mask=att, position_ids=pos
    ).last_hidden_state
    target = labels[:, 1:]
    sel = target != -100
    logits = model.lm_head(hidden[:, :-1][sel])
    return torch.nn.functional.cross_entropy(logits.float(), target[sel])


def save(model, tokenizer, opt, state, out: Path):
    """Model + tokenizer (a complete HF model directory, usable as SPECRAG_GENERATOR) +
    optimizer state, swapped in by rename."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    # optimizer state last: ``state`` carries the stale "opt" it was loaded with (was None)
    torch.save({**state, "opt": opt.state_dict()}, tmp / "train_state.pt")
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_argument(ap)
    ap.add_argument("--out-dir", type=Path, default=CACHE, help="models and tokenizer go here")
    ap.add_argument("--name", default="reader")
    ap.add_argument("--minutes", type=float, default=30.0, help="training time budget (this run)")
    ap.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="small",
        help="model size and training defaults: "
        + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()),
    )
    ap.add_argument("--n-layer", type=int, default=None)
    ap.add_argument("--n-embd", type=int, default=None)
    ap.add_argument("--n-head", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="fp32",
        help="autocast compute dtype (cuda: bf16); weights and optimizer stay fp32",
    )
    ap.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many steps (this run)"
    )
    ap.add_argument("--save-every", type=float, default=180.0, help="checkpoint period, seconds")
    ap.add_argument("--memorize", type=int, default=12, help="documents learned by heart")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--p-continue", type=float, default=0.4, help="share of continue examples in full batches"
    )
    ap.add_argument(
        "--p-recite",
        type=float,
        default=0.0,
        help="share of steps that train a batch of passage-less recite examples",
    )
    ap.add_argument("--recite-batch", type=int, default=32)
    ap.add_argument(
        "--dropout", type=float, default=None, help="override the model's dropout (resume)"
    )
    ap.add_argument(
        "--restart-schedule",
        action="store_true",
        help="warmup + cosine over this run's budget only (a new phase, fresh optimizer)",
    )
    args = ap.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(args.data, args.out_dir / "tokenizer")
    out = args.out_dir / args.name
    docs = load_corpus(args.data)
    memorized = memorized_docs(docs, args.memorize)
    if (out / "train_state.pt").exists():
        drop = (
            {}
            if args.dropout is None
            else {
                "resid_pdrop": args.dropout,
                "embd_pdrop": args.dropout,
                "attn_pdrop": args.dropout,
            }
        )
        model = GPT2LMHeadModel.from_pretrained(out, **drop).to(args.device)
        state = torch.load(out / "train_state.pt", weights_only=False)
        print(f"resuming {out} at step {state['step']}")
    else:
        cfg = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=640,
            n_embd=args.n_embd,
            n_layer=args.n_layer,
            n_head=args.n_head,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        torch.manual_seed(args.seed)
        model = GPT2LMHeadModel(cfg).to(args.device)
        state = {"step": 0, "seconds": 0.0, "tokens": 0, "opt": None}
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{args.name}: {n_params / 1e6:.1f}M parameters ({model.config.n_layer} x "
        f"{model.config.n_embd}), device {args.device}, {args.dtype} autocast",
        flush=True,
    )
    autocast = torch.autocast(
        device_type=torch.device(args.device).type,
        dtype=DTYPES[args.dtype],
        enabled=args.dtype != "fp32",
    )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    if state.get("opt") and not args.restart_schedule:
        opt.load_state_dict(state["opt"])
    rng = random.Random(args.seed * 1000 + state["step"])
    budget = args.minutes * 60
    started, last_save = time.time(), time.time()
    # A restarted schedule warms up and decays over this run alone.
    restart = args.restart_schedule
    first_step = state["step"] if restart else 0
    seconds_before = 0.0 if restart else state["seconds"]
    total_budget = seconds_before + budget
    warmup_steps = 30 if restart else 100
    model.train()
    steps_this_run = 0
    while time.time() - started < budget:
        if args.max_steps is not None and steps_this_run >= args.max_steps:
            break
        if rng.random() < args.p_recite:
            batch = [recite_example(tokenizer, memorized, rng) for _ in range(args.recite_batch)]
            offsets = [
                rng.randrange(MAX_PROMPT_TOKENS - 90, MAX_PROMPT_TOKENS - len(ex.prompt_ids))
                for ex in batch
            ]
        else:
            batch = [
                sample_example(tokenizer, docs, memorized, rng, args.p_continue)
                for _ in range(args.batch)
            ]
            offsets = None
        ids, labels, att, pos, n_tok = make_batch(batch, tokenizer, args.device, offsets)
        elapsed = seconds_before + time.time() - started
        warm = min(1.0, (state["step"] - first_step + 1) / warmup_steps)
        lr = args.lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / total_budget)))
        for g in opt.param_groups:
            g["lr"] = max(lr, args.lr * 0.05)
        with autocast:
            loss = answer_loss(model, ids, att, labels, pos)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        steps_this_run += 1
        state["tokens"] += n_tok
        if state["step"] % 20 == 0 or args.max_steps is not None:
            rate = state["tokens"] / max(1e-9, state["seconds"] + time.time() - started)
            print(
                f"step {state['step']} loss {loss.item():.3f} lr {lr:.2e} {rate:.0f} tok/s",
                flush=True,
            )
        if time.time() - last_save > args.save_every:
            save(
                model,
                tokenizer,
                opt,
                {**state, "seconds": state["seconds"] + time.time() - started},
                out,
            )
            last_save = time.time()
    state["seconds"] += time.time() - started
    save(model, tokenizer, opt, state, out)
    print(f"saved {out} after {state['step']} steps, {state['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
