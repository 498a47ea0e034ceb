"""Where one speculative step's time goes: wall-clock per phase (drafting, tree merge,
verify forward, acceptance, cache compaction, the rest of the loop) on the benchmark's
prompts, one thread. Phases are timed by wrapping the functions ``decode.py`` calls, so
the loop itself is the one the benchmark runs.

    nice -n 5 taskset -c 0 .venv/bin/python scripts/profile_generation_step.py --n-prompts 5
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch
from bench_generation import CACHE, corpus_datastore, scenario_prompts

from specrag.generation import decode, runner
from specrag.generation.decode import DecodeConfig, generate
from specrag.generation.drafters import ContextDrafter, DatastoreDrafter

TIMES: dict[str, float] = defaultdict(float)


def timed(name: str, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name] += time.perf_counter() - t

    return wrapper


class TimedDrafter:
    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def propose(self, context, n_prompt, max_depth):
        t = time.perf_counter()
        try:
            return self.inner.propose(context, n_prompt, max_depth)
        finally:
            TIMES[f"draft:{self.name}"] += time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    ap.add_argument("--model", default=str(CACHE / "reader-lm" / "reader"))
    ap.add_argument("--n-prompts", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok_path = str(CACHE / "reader-lm" / "tokenizer")
    tok = AutoTokenizer.from_pretrained(tok_path)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    store = corpus_datastore(args.data, tok_path)
    prompts = scenario_prompts(tok, args.data, args.n_prompts, 12, 12345)
    cfg = DecodeConfig(max_new_tokens=args.max_new_tokens, eos_token_ids=(tok.eos_token_id,))

    # (owner, attribute, label): the loop's module functions and the dynamic runner's calls
    phases = [
        (decode, "merge_trees", "merge_trees"),
        (decode, "accept_greedy", "accept_greedy"),
        (runner.DynamicRunner, "forward", "tree_forward"),
        (runner.DynamicRunner, "keep", "keep_in_cache"),
        (runner.DynamicRunner, "prefill", "_prefill"),
    ]
    originals = {(owner, attr): getattr(owner, attr) for owner, attr, _ in phases}
    for owner, attr, label in phases:
        setattr(owner, attr, timed(label, originals[owner, attr]))
    setups = {
        "context": lambda: [ContextDrafter()],
        "context+datastore": lambda: [ContextDrafter(), DatastoreDrafter(store)],
    }
    for scen in ("A", "B", "C"):
        for label, make in setups.items():
            best = None
            for _ in range(args.repeats):
                TIMES.clear()
                steps = tokens = nodes = 0
                t = time.perf_counter()
                for prompt in prompts[scen]:
                    drafters = [TimedDrafter(d) for d in make()]
                    out, stats = generate(model, prompt, cfg, drafters=drafters)
                    steps += stats.verify_steps
                    tokens += len(out)
                    nodes += stats.drafted_tokens
                total = time.perf_counter() - t
                if best is None or total < best[0]:
                    best = (total, dict(TIMES), steps, tokens, nodes)
            total, times, steps, tokens, nodes = best
            loop = total - times.get("_prefill", 0.0)
            accounted = sum(v for k, v in times.items() if k != "_prefill")
            times["rest of loop"] = loop - accounted
            print(
                f"\n{scen} {label}: {tokens} tokens, {steps} steps, {nodes / steps:.1f} nodes/step, "
                f"total {total * 1000:.1f} ms, prefill {times.get('_prefill', 0) * 1000:.1f} ms, "
                f"per step {loop / steps * 1000:.2f} ms"
            )
            for k, v in sorted(times.items(), key=lambda kv: -kv[1]):
                if k != "_prefill":
                    print(f"  {k:20s} {v / steps * 1000:6.3f} ms/step  ({v / loop * 100:4.1f}%)")
    for (owner, attr), fn in originals.items():
        setattr(owner, attr, fn)

    # plain one-token forward for scale
    from transformers import DynamicCache

    prompt = prompts["A"][0]
    with torch.inference_mode():
        cache = DynamicCache()
        model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True, logits_to_keep=1)
        ts = []
        for _ in range(50):
            t = time.perf_counter()
            model(input_ids=torch.tensor([[5]]), cache=cache, use_cache=True)
            ts.append(time.perf_counter() - t)
            cache.crop(-1)
    print(
        f"\nplain one-token forward on a {len(prompt)}-token cache: min {min(ts) * 1000:.2f} ms, "
        f"median {sorted(ts)[len(ts) // 2] * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
