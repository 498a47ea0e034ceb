"""Benchmark: retrieval-augmented speculative decoding vs plain greedy, HF prompt lookup
and HF assisted generation, on RAG prompts over SciFact, with a reader LM trained by
scripts/train_reader_lm.py. Same model, same prompts, one run, methods interleaved, min
over repeats. Every method's greedy output is checked token by token against plain greedy.
Times are end to end (prompt prefill included); the decode columns subtract one measured
prefill of the prompt (the same forward for every method) to show the generation phase alone.

    nice -n 5 .venv/bin/python scripts/bench_generation.py
    .venv/bin/python scripts/bench_generation.py --device cuda --cost-layers 24 --cost-dim 1024

Scenarios: (A) the answer quotes a passage in the prompt; (B) it continues a corpus document
that is not in the prompt (only the corpus datastore has it); (C) the document is in the
prompt but truncated, so the answer first quotes, then runs past it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from reader_tasks import continue_example, load_corpus, memorized_docs, quote_example

from specrag.generation.decode import DecodeConfig, generate
from specrag.generation.drafters import ContextDrafter, DatastoreDrafter, DraftModelDrafter
from specrag.indexing.kinds.datastore.build import build_datastore
from specrag.indexing.kinds.datastore.config import DatastoreConfig
from specrag.indexing.kinds.datastore.search import DatastoreSearcher
from specrag.types import Document, no_progress

CACHE = Path(__file__).resolve().parent.parent / ".cache"


class ForwardCounter:
    """Counts calls of a model's forward (HF methods report no forward counts)."""

    def __init__(self, model):
        self.n = 0
        model.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.n += 1


def scenario_examples(tokenizer, data: Path, n: int, memorize: int, seed: int) -> dict[str, list]:
    """The benchmark's examples (prompt + reference answer) per scenario."""
    docs = load_corpus(data)
    memorized = memorized_docs(docs, memorize)
    rng = random.Random(seed)
    out: dict[str, list] = {"A": [], "A-unseen": [], "B": [], "C": []}
    while len(out["A"]) < n:  # the quoted passage is one the reader memorized
        ex = quote_example(tokenizer, docs, rng, quoted_from=memorized)
        if ex is not None:
            out["A"].append(ex)
    while len(out["A-unseen"]) < n:  # any passage: the reader must copy from its prompt
        ex = quote_example(tokenizer, docs, rng)
        if ex is not None:
            out["A-unseen"].append(ex)
    for _ in range(n):
        out["B"].append(continue_example(tokenizer, docs, memorized, rng, truncated=False))
        out["C"].append(continue_example(tokenizer, docs, memorized, rng, truncated=True))
    return out


def scenario_prompts(
    tokenizer, data: Path, n: int, memorize: int, seed: int
) -> dict[str, list[list[int]]]:
    examples = scenario_examples(tokenizer, data, n, memorize, seed)
    return {scen: [ex.prompt_ids for ex in exs] for scen, exs in examples.items()}


def reader_agreement(model, tokenizer, examples: dict[str, list], max_new: int) -> None:
    """How well the reader reproduces the reference answers (the text it was trained to
    emit): teacher-forced top-1 agreement per answer token, and the length of the exact
    prefix its free-running greedy output shares with the reference. A quick check of
    memorization (B, C) and copying (A, A-unseen) before and after training."""
    eos = tokenizer.eos_token_id
    for scen, exs in examples.items():
        hits = total = prefix = ref_len = 0
        for ex in exs:
            ans = tokenizer(ex.answer_text, add_special_tokens=False)["input_ids"] + [eos]
            ids = torch.tensor([ex.prompt_ids + ans], device=model.device)
            with torch.inference_mode():
                pred = (
                    model(input_ids=ids).logits[0, len(ex.prompt_ids) - 1 : -1].argmax(-1).tolist()
                )
            hits += sum(p == a for p, a in zip(pred, ans, strict=True))
            total += len(ans)
            out = hf_generate(model, ex.prompt_ids, max_new, eos)
            prefix += next(
                (i for i, (o, a) in enumerate(zip(out, ans, strict=False)) if o != a),
                min(len(out), len(ans)),
            )
            ref_len += len(ans)
        print(
            f"{scen}: teacher-forced top-1 {hits / total:.3f} ({hits}/{total}); "
            f"greedy exact prefix {prefix / len(exs):.1f} of {ref_len / len(exs):.1f} tokens"
        )


def corpus_datastore(data: Path, tokenizer_path: str) -> DatastoreSearcher:
    docs = []
    with open(data / "corpus.jsonl") as f:
        for line in f:
            d = json.loads(line)
            docs.append(Document(d["_id"], d["text"], d.get("title")))
    vocab = (Path(tokenizer_path) / "tokenizer.json").read_bytes()  # key by content, not path
    key = hashlib.sha1(vocab + str(len(docs)).encode()).hexdigest()[:10]
    out = CACHE / "bench-generation" / f"datastore-{key}"
    cfg = DatastoreConfig(tokenizer=tokenizer_path)
    if not (out / "sa.npy").exists():
        out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        stats = build_datastore(docs, out, cfg, no_progress)
        print(f"datastore: {stats['n_tokens']} tokens built in {time.perf_counter() - t:.1f} s")
    return DatastoreSearcher.load(out, cfg, np.array([d.id for d in docs]))


def hf_generate(model, prompt, max_new, eos, **kw) -> list[int]:
    ids = torch.tensor([prompt], device=model.device)
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos,
            **kw,
        )
    return out[0, len(prompt) :].tolist()


def verify_cost_curve(
    layers: int, dim: int, vocab: int, prefix: int, device: str, reps: int
) -> dict[int, float]:
    """Seconds of one target forward over k new tokens (a chain) on a cached prefix, for a
    random-weight GPT-2 of the given size: what a verification of k drafted tokens costs."""
    from transformers import DynamicCache, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=vocab, n_embd=dim, n_layer=layers, n_head=dim // 64, n_positions=2048
    )
    model = GPT2LMHeadModel(cfg).to(device).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"verify-cost model: {n_params / 1e6:.0f}M parameters ({layers} layers, {dim} dims)")
    curve = {}
    with torch.inference_mode():
        cache = DynamicCache()
        model(
            input_ids=torch.randint(0, vocab, (1, prefix), device=device),
            cache=cache,
            use_cache=True,
        )
        for k in (1, 2, 4, 8, 16, 32):
            times = []
            for _ in range(reps):
                ids = torch.randint(0, vocab, (1, k), device=device)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t = time.perf_counter()
                model(input_ids=ids, cache=cache, use_cache=True)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
                cache.crop(-k)
            curve[k] = min(times)
    return curve


def interp_cost(curve: dict[int, float], k: float) -> float:
    ks = sorted(curve)
    return float(np.interp(k, ks, [curve[x] for x in ks]))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    ap.add_argument("--model", default=str(CACHE / "reader-lm" / "reader"))
    ap.add_argument("--draft", default=str(CACHE / "reader-lm" / "draft"))
    ap.add_argument("--n-prompts", type=int, default=8, help="per scenario")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--memorize", type=int, default=12, help="as in training")
    ap.add_argument("--seed", type=int, default=12345, help="prompt sampling; training used others")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cost-layers", type=int, default=12)
    ap.add_argument("--cost-dim", type=int, default=768)
    ap.add_argument("--cost-vocab", type=int, default=32000)
    ap.add_argument("--no-cost-curve", action="store_true")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument(
        "--agreement",
        action="store_true",
        help="only report the reader's agreement with the reference answers, then exit",
    )
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    tok_path = (
        args.model
        if (Path(args.model) / "tokenizer.json").exists()
        else str(CACHE / "reader-lm" / "tokenizer")
    )
    tok = AutoTokenizer.from_pretrained(tok_path)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(args.device).eval()
    draft = None
    if Path(args.draft).exists():
        draft = AutoModelForCausalLM.from_pretrained(args.draft, dtype=dtype).to(args.device).eval()
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"target {args.model}: {n_params:.1f}M params; draft: {args.draft if draft else 'none'}; "
        f"device {args.device}, {args.threads} thread(s)"
    )
    eos = tok.eos_token_id
    if args.agreement:
        examples = scenario_examples(tok, args.data, args.n_prompts, args.memorize, args.seed)
        reader_agreement(model, tok, examples, args.max_new_tokens)
        return
    store = corpus_datastore(args.data, tok_path)
    prompts = scenario_prompts(tok, args.data, args.n_prompts, args.memorize, args.seed)
    # Trees of at most 16 nodes: on this CPU a verify pass costs ~1.6 ms + ~0.12 ms per node
    # (measured), so bigger trees cost more than their extra acceptance saves.
    cfg = DecodeConfig(
        max_new_tokens=args.max_new_tokens, eos_token_ids=(eos,)
    )  # defaults: 16 deep, 16 nodes
    counter = ForwardCounter(model)

    big = DecodeConfig(
        max_new_tokens=args.max_new_tokens, eos_token_ids=(eos,), max_depth=16, max_nodes=48
    )

    def ours(drafters_fn, config=cfg):
        def run(prompt):
            out, stats = generate(model, prompt, config, drafters=drafters_fn())
            return out, stats.target_forwards, stats

        return run

    def plain(prompt):
        out, stats = generate(model, prompt, cfg)
        return out, stats.target_forwards, stats

    def hf(**kw):
        def run(prompt):
            counter.n = 0
            out = hf_generate(model, prompt, args.max_new_tokens, eos, **kw)
            return out, counter.n, None

        return run

    methods = {
        "greedy (HF generate)": hf(),
        "greedy (ours, plain loop)": plain,
        "HF prompt lookup": hf(prompt_lookup_num_tokens=10),
        "ours: context": ours(lambda: [ContextDrafter()]),
        "ours: datastore": ours(lambda: [DatastoreDrafter(store)]),
        "ours: context+datastore": ours(lambda: [ContextDrafter(), DatastoreDrafter(store)]),
        "ours: context+datastore, 48-node trees, 4 paths each": ours(
            lambda: [ContextDrafter(max_paths=4), DatastoreDrafter(store, max_paths=4)], big
        ),
    }
    if draft is not None:
        methods["HF assisted (draft model)"] = hf(assistant_model=draft)
        methods["ours: draft model"] = ours(lambda: [DraftModelDrafter(draft)])
        methods["ours: RASD (context+datastore+draft)"] = ours(
            lambda: [DraftModelDrafter(draft, retrieval=_combined(store), min_prob=0.02)]
        )

    def prefill_only(prompt):
        """One forward over the prompt (last logits only): the part of every method's time
        that no drafting can shorten; subtracted for the decode-only columns."""
        ids = torch.tensor([prompt], device=model.device)
        with torch.inference_mode():
            model(input_ids=ids, logits_to_keep=1)

    results = {}
    mismatches = []
    for scen, plist in prompts.items():
        rows = {
            m: {"seconds": 0.0, "tokens": 0, "forwards": 0, "steps": 0, "accepted": 0, "nodes": 0}
            for m in methods
        }
        for pi, prompt in enumerate(plist):
            ref = None
            best = {m: float("inf") for m in methods}
            prefill = float("inf")
            for _rep in range(args.repeats):
                t = time.perf_counter()
                prefill_only(prompt)
                prefill = min(prefill, time.perf_counter() - t)
                for m, fn in methods.items():  # interleaved
                    t = time.perf_counter()
                    out, forwards, stats = fn(prompt)
                    best[m] = min(best[m], time.perf_counter() - t)
                    if ref is None:
                        ref = out
                    if out != ref:
                        mismatches.append((scen, pi, m))
                    if _rep == 0:
                        r = rows[m]
                        r["tokens"] += len(out)
                        r["forwards"] += forwards
                        if stats is not None:
                            r["steps"] += stats.verify_steps
                            r["accepted"] += stats.accepted_draft_tokens
                            r["nodes"] += stats.drafted_tokens
            for m in methods:
                rows[m]["seconds"] += best[m]
                rows[m]["decode_seconds"] = rows[m].get("decode_seconds", 0.0) + best[m] - prefill
        results[scen] = rows
        greedy, lookup = rows["greedy (HF generate)"], rows["HF prompt lookup"]
        print(f"\n### Scenario {scen} ({len(plist)} prompts, {greedy['tokens']} tokens)")
        print(
            "| method | tokens/s | target forwards | tokens/forward | accepted/step | vs greedy "
            "| vs prompt lookup | decode tokens/s | decode vs greedy | decode vs prompt lookup |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m, r in rows.items():
            tps = r["tokens"] / r["seconds"]
            dps = r["tokens"] / r["decode_seconds"]
            tpf = r["tokens"] / r["forwards"] if r["forwards"] else 0
            acc = f"{r['accepted'] / r['steps']:.2f}" if r["steps"] else "-"
            print(
                f"| {m} | {tps:.1f} | {r['forwards']} | {tpf:.2f} | {acc} "
                f"| {greedy['seconds'] / r['seconds']:.2f}x | {lookup['seconds'] / r['seconds']:.2f}x "
                f"| {dps:.1f} | {greedy['decode_seconds'] / r['decode_seconds']:.2f}x "
                f"| {lookup['decode_seconds'] / r['decode_seconds']:.2f}x |"
            )
    print(f"\ngreedy-identity mismatches (method output != HF greedy): {mismatches or 'none'}")
    if not args.no_cost_curve:
        curve = verify_cost_curve(
            args.cost_layers, args.cost_dim, args.cost_vocab, 400, args.device, reps=5
        )
        print("\nverify cost, k new tokens on a 400-token cache (relative to k=1):")
        print(" ".join(f"k={k}: {v * 1000:.1f} ms ({v / curve[1]:.2f}x)" for k, v in curve.items()))
        print(
            "\nimplied speedup over greedy at that size = tokens/forward * cost(1) / cost(1 + nodes/step):"
        )
        for scen, rows in results.items():
            for m, r in rows.items():
                if r["steps"]:
                    tpf = (r["tokens"] - len(prompts[scen])) / r["steps"]
                    nodes = 1 + r["nodes"] / r["steps"]
                    print(
                        f"  {scen} {m}: {tpf:.2f} tok/fwd, {nodes:.1f} nodes/fwd -> "
                        f"{tpf * curve[1] / interp_cost(curve, nodes):.2f}x"
                    )
        results["verify_cost_s"] = curve
    if args.json_out:
        args.json_out.write_text(
            json.dumps({"results": results, "mismatches": mismatches}, indent=2, default=str)
        )
    if mismatches:
        sys.exit(1)


def _combined(store):
    from specrag.generation.drafters import CombinedDrafter

    return CombinedDrafter([ContextDrafter(), DatastoreDrafter(store)])


if __name__ == "__main__":
    main()
