"""Benchmark: retrieval-augmented speculative decoding vs plain greedy, HF prompt lookup
and HF assisted generation, on RAG prompts over SciFact, with a reader LM trained by
scripts/train_reader_lm.py. Same model, same prompts, one run, methods interleaved, min
over repeats. Every method's greedy output is checked token by token against plain greedy
(HF ``generate``); on any mismatch the run writes no result and exits 1.
Times are end to end (prompt prefill included); the decode columns subtract one measured
prefill of the prompt (the same forward for every method) to show the generation phase alone.
Writes ``benchmarks/results/generation.json``: a summary (speed-up over greedy and over
prompt lookup, per scenario and method), one table per scenario, and the verify cost curve.

    nice -n 5 .venv/bin/python scripts/bench_generation.py
    .venv/bin/python scripts/bench_generation.py --device cuda --cost-layers 24 --cost-dim 1024

Scenarios: (A) the answer quotes a passage in the prompt, one the reader memorized in
training; (A-unseen) the same, from any passage: the reader must copy from its prompt;
(B) it continues a corpus document that is not in the prompt (only the corpus datastore has
it); (C) the document is in the prompt but truncated, so the answer first quotes, then
runs past it. ``--agreement`` only prints how well the reader reproduces the reference
answers (a check of the reader, no result file).

Check on a slice (scripts/scifact_cache.py --write-slice /tmp/sf; a reader and a draft from
train_reader_lm.py --out-dir /tmp/reader-lm): ``--data /tmp/sf --model /tmp/reader-lm/reader
--draft /tmp/reader-lm/draft --n-prompts 2 --max-new-tokens 16 --repeats 1 --cost-layers 1
--cost-dim 64 --cost-vocab 1000 --results-dir /tmp/results``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_results  # noqa: E402
from reader_tasks import (  # noqa: E402
    continue_example,
    load_corpus,
    memorized_docs,
    quote_example,
)
from scifact_cache import add_data_argument, read_corpus  # noqa: E402

from specrag.generation.decode import DecodeConfig, generate  # noqa: E402
from specrag.generation.drafters import (  # noqa: E402
    CombinedDrafter,
    ContextDrafter,
    DatastoreDrafter,
    DraftModelDrafter,
)
from specrag.indexing.kinds.datastore.build import build_datastore  # noqa: E402
from specrag.indexing.kinds.datastore.config import DatastoreConfig  # noqa: E402
from specrag.indexing.kinds.datastore.search import DatastoreSearcher  # noqa: E402
from specrag.types import no_progress  # noqa: E402

CACHE = Path(__file__).resolve().parent.parent / ".cache"
#: Scenarios in table order: A-unseen beside A.
SCENARIOS = ("A", "A-unseen", "B", "C")
GREEDY = "greedy (HF generate)"
LOOKUP = "HF prompt lookup"


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
    """The ``datastore`` kind over the whole corpus in the reader's tokenizer, built once
    under .cache (keyed by the tokenizer's and the corpus file's contents)."""
    docs = read_corpus(data)
    vocab = (Path(tokenizer_path) / "tokenizer.json").read_bytes()  # key by content, not path
    corpus = (Path(data) / "corpus.jsonl").read_bytes()
    key = hashlib.sha1(vocab + corpus).hexdigest()[:10]
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
        vocab_size=vocab,
        n_embd=dim,
        n_layer=layers,
        n_head=max(1, dim // 64),
        n_positions=2048,
        bos_token_id=0,
        eos_token_id=0,
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
    add_data_argument(ap)
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
    ap.add_argument("--results-dir", type=Path, default=bench_results.RESULTS)
    ap.add_argument(
        "--agreement",
        action="store_true",
        help="only report the reader's agreement with the reference answers, then exit",
    )
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    # train_reader_lm.py saves the tokenizer with each model and beside them.
    tok_path = (
        args.model
        if (Path(args.model) / "tokenizer.json").exists()
        else str(Path(args.model).parent / "tokenizer")
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
        GREEDY: hf(),
        "greedy (ours, plain loop)": plain,
        LOOKUP: hf(prompt_lookup_num_tokens=10),
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
        print(f"scenario {scen}: {len(plist)} prompts done", file=sys.stderr, flush=True)
    checked = sum(len(p) for p in prompts.values()) * len(methods) * args.repeats
    if mismatches:
        print(f"greedy-identity mismatches (scenario, prompt, method): {mismatches}")
        print("no result written: a method's output differs from HF greedy")
        sys.exit(1)
    print(f"greedy identity: all {checked} outputs equal HF greedy", file=sys.stderr)
    curve = None
    if not args.no_cost_curve:
        curve = verify_cost_curve(
            args.cost_layers, args.cost_dim, args.cost_vocab, 400, args.device, reps=5
        )
    setup = {
        "model": args.model,
        "params_millions": n_params,
        "draft": args.draft if draft is not None else None,
        "device": args.device,
        "threads": args.threads,
        "prompts_per_scenario": args.n_prompts,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
    }
    load = os.getloadavg()
    bench_results.write_result(
        "generation",
        "Generation: retrieval-augmented speculative decoding vs greedy and prompt lookup",
        result_tables(results, prompts, curve, args),
        notes=[
            f"Target: the reader LM trained by `scripts/train_reader_lm.py` ({n_params:.1f}M "
            f"parameters); draft model: {'the draft trained the same way' if draft else 'none'}"
            f". {args.n_prompts} prompts per scenario, at most {args.max_new_tokens} new "
            f"tokens, greedy, best of {args.repeats} interleaved repeats, {args.device}, "
            f"{args.threads} thread(s). Load average during the run: {load[0]:.1f}.",
            "Scenarios: A quotes a passage of the prompt that the reader memorized in "
            "training; A-unseen quotes any passage (the reader must copy from its prompt); "
            "B continues a memorized corpus document absent from the prompt (only the "
            "corpus datastore holds it); C continues a document that the prompt holds "
            "truncated.",
            f"Greedy identity: every method's output equals HF greedy token for token "
            f"({checked} outputs checked); a mismatch fails the run.",
        ],
        order=40,
        data={"setup": setup, "results": results, "verify_cost_s": curve},
        out_dir=args.results_dir,
    )


def _x(ratio: float) -> str:
    return f"{ratio:.2f}x"


def result_tables(results: dict, prompts: dict, curve: dict | None, args) -> list[dict]:
    """Summary (A-unseen beside A), one table per scenario, the verify cost curve."""
    table = bench_results.table
    scenarios = [s for s in SCENARIOS if s in results]
    methods = list(results[scenarios[0]])
    summary = []
    for m in methods:
        row: list = [m]
        for scen in scenarios:
            r = results[scen]
            row += [
                _x(r[GREEDY]["seconds"] / r[m]["seconds"]),
                _x(r[LOOKUP]["seconds"] / r[m]["seconds"]),
            ]
        summary.append(row)
    out = [
        table(
            "Speed-up in tokens/s (end to end, prefill included) over greedy and over HF "
            "prompt lookup, per scenario",
            ["method"] + [f"{s} vs {b}" for s in scenarios for b in ("greedy", "prompt lookup")],
            summary,
        )
    ]
    for scen in scenarios:
        rows = results[scen]
        greedy, lookup = rows[GREEDY], rows[LOOKUP]
        body = []
        for m, r in rows.items():
            body.append(
                [
                    m,
                    r["tokens"] / r["seconds"],
                    r["forwards"],
                    r["tokens"] / r["forwards"] if r["forwards"] else None,
                    r["accepted"] / r["steps"] if r["steps"] else None,
                    _x(greedy["seconds"] / r["seconds"]),
                    _x(lookup["seconds"] / r["seconds"]),
                    r["tokens"] / r["decode_seconds"],
                    _x(greedy["decode_seconds"] / r["decode_seconds"]),
                    _x(lookup["decode_seconds"] / r["decode_seconds"]),
                ]
            )
        out.append(
            table(
                f"Scenario {scen} ({len(prompts[scen])} prompts, {greedy['tokens']} tokens)",
                [
                    "method",
                    "tokens/s",
                    "target forwards",
                    "tokens/forward",
                    "accepted/step",
                    "vs greedy",
                    "vs prompt lookup",
                    "decode tokens/s",
                    "decode vs greedy",
                    "decode vs prompt lookup",
                ],
                body,
            )
        )
    if curve is not None:
        out.append(
            table(
                f"Verify cost: one forward over k new tokens on a 400-token cache, random-weight "
                f"GPT-2 with {args.cost_layers} layers of {args.cost_dim} dims, vocabulary "
                f"{args.cost_vocab} ({args.device})",
                ["k", "ms", "relative to k=1"],
                [[k, v * 1000, v / curve[1]] for k, v in curve.items()],
            )
        )
        implied = []
        for m in methods:
            row = [m]
            for scen in scenarios:
                r = results[scen][m]
                if not r["steps"]:
                    row.append(None)
                    continue
                tpf = (r["tokens"] - len(prompts[scen])) / r["steps"]
                nodes = 1 + r["nodes"] / r["steps"]
                row.append(_x(tpf * curve[1] / interp_cost(curve, nodes)))
            if any(v is not None for v in row[1:]):
                implied.append(row)
        out.append(
            table(
                "Implied speed-up over greedy at that model size: tokens/forward x cost(1) / "
                "cost(1 + nodes/step), with this run's acceptance",
                ["method", *scenarios],
                implied,
            )
        )
    return out


def _combined(store):
    return CombinedDrafter([ContextDrafter(), DatastoreDrafter(store)])


if __name__ == "__main__":
    main()
