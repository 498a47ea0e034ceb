"""Where one speculative step's time goes: wall-clock per phase (drafting, tree merge,
verify forward, acceptance, cache compaction, the rest of the loop) on the prompts of
scripts/bench_generation.py, one thread, best of ``--repeats``. Phases are timed by wrapping
the functions ``generation/decode.py`` calls, so the loop itself is the one the benchmark
runs; a plain one-token forward on the same cache gives the scale. Writes
``benchmarks/results/generation_profile.json``.

    nice -n 5 taskset -c 0 .venv/bin/python scripts/profile_generation_step.py --n-prompts 5

Check on a slice (the reader of bench_generation.py's check): ``--data /tmp/sf --model
/tmp/reader-lm/reader --n-prompts 2 --max-new-tokens 16 --repeats 1 --results-dir
/tmp/results``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_results  # noqa: E402
from bench_generation import CACHE, SCENARIOS, corpus_datastore, scenario_prompts  # noqa: E402
from scifact_cache import add_data_argument  # noqa: E402

from specrag.generation import decode, runner  # noqa: E402
from specrag.generation.decode import DecodeConfig, generate  # noqa: E402
from specrag.generation.drafters import ContextDrafter, DatastoreDrafter  # noqa: E402

TIMES: dict[str, float] = defaultdict(float)
#: (owner, attribute, label): the loop's module functions and the dynamic runner's calls.
PHASES = [
    (decode, "merge_trees", "merge_trees"),
    (decode, "accept_greedy", "accept_greedy"),
    (runner.DynamicRunner, "forward", "tree_forward"),
    (runner.DynamicRunner, "keep", "keep_in_cache"),
    (runner.DynamicRunner, "prefill", "_prefill"),
]
COLUMNS = [
    "draft:context",
    "draft:datastore",
    "merge_trees",
    "tree_forward",
    "accept_greedy",
    "keep_in_cache",
    "rest of loop",
]


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

    @property
    def last_match_len(self) -> int:  # the decoder ranks drafters by it
        return getattr(self.inner, "last_match_len", 0)

    def propose(self, context, n_prompt, max_depth):
        t = time.perf_counter()
        try:
            return self.inner.propose(context, n_prompt, max_depth)
        finally:
            TIMES[f"draft:{self.name}"] += time.perf_counter() - t


def profile(model, prompts, cfg, setups, repeats) -> list[dict]:
    """One entry per (scenario, drafters): the best repeat's totals and phase times."""
    for make in setups.values():  # warm-up: JIT compiles, first-call allocations
        generate(model, prompts["A"][0], cfg, drafters=make())
    out = []
    for scen in SCENARIOS:
        for label, make in setups.items():
            best = None
            for _ in range(repeats):
                TIMES.clear()
                steps = tokens = nodes = 0
                t = time.perf_counter()
                for prompt in prompts[scen]:
                    drafters = [TimedDrafter(d) for d in make()]
                    tokens_out, stats = generate(model, prompt, cfg, drafters=drafters)
                    steps += stats.verify_steps
                    tokens += len(tokens_out)
                    nodes += stats.drafted_tokens
                total = time.perf_counter() - t
                if best is None or total < best[0]:
                    best = (total, dict(TIMES), steps, tokens, nodes)
            total, times, steps, tokens, nodes = best
            prefill = times.pop("_prefill", 0.0)
            loop = total - prefill
            times["rest of loop"] = loop - sum(times.values())
            out.append(
                {
                    "scenario": scen,
                    "drafters": label,
                    "tokens": tokens,
                    "steps": steps,
                    "nodes_per_step": nodes / max(steps, 1),
                    "total_ms": total * 1000,
                    "prefill_ms": prefill * 1000,
                    "ms_per_step": loop / max(steps, 1) * 1000,
                    "phase_ms_per_step": {k: v / max(steps, 1) * 1000 for k, v in times.items()},
                }
            )
            print(f"{scen} {label}: {out[-1]}", file=sys.stderr, flush=True)
    return out


def plain_forward_ms(model, prompt: list[int], n: int = 50) -> tuple[float, float]:
    """Min and median ms of a one-token forward on a cache holding ``prompt``."""
    from transformers import DynamicCache

    with torch.inference_mode():
        cache = DynamicCache()
        model(input_ids=torch.tensor([prompt]), cache=cache, use_cache=True, logits_to_keep=1)
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            model(input_ids=torch.tensor([[5]]), cache=cache, use_cache=True)
            ts.append(time.perf_counter() - t)
            cache.crop(-1)
    return min(ts) * 1000, sorted(ts)[len(ts) // 2] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_argument(ap)
    ap.add_argument("--model", default=str(CACHE / "reader-lm" / "reader"))
    ap.add_argument("--n-prompts", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memorize", type=int, default=12, help="as in training")
    ap.add_argument("--seed", type=int, default=12345, help="prompt sampling, as the benchmark")
    ap.add_argument("--results-dir", type=Path, default=bench_results.RESULTS)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok_path = (
        args.model
        if (Path(args.model) / "tokenizer.json").exists()
        else str(Path(args.model).parent / "tokenizer")
    )
    tok = AutoTokenizer.from_pretrained(tok_path)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    store = corpus_datastore(args.data, tok_path)
    prompts = scenario_prompts(tok, args.data, args.n_prompts, args.memorize, args.seed)
    cfg = DecodeConfig(max_new_tokens=args.max_new_tokens, eos_token_ids=(tok.eos_token_id,))
    setups = {
        "context": lambda: [ContextDrafter()],
        "context+datastore": lambda: [ContextDrafter(), DatastoreDrafter(store)],
    }
    originals = {(owner, attr): getattr(owner, attr) for owner, attr, _ in PHASES}
    for owner, attr, label in PHASES:
        setattr(owner, attr, timed(label, originals[owner, attr]))
    try:
        rows = profile(model, prompts, cfg, setups, args.repeats)
    finally:
        for (owner, attr), fn in originals.items():
            setattr(owner, attr, fn)
    prompt = prompts["A"][0]
    fwd_min, fwd_median = plain_forward_ms(model, prompt)

    table = bench_results.table
    tables = [
        table(
            f"Per verify step, ms (best of {args.repeats}; {args.n_prompts} prompts per "
            f"scenario, at most {args.max_new_tokens} new tokens, one thread)",
            [
                "scenario",
                "drafters",
                "tokens",
                "steps",
                "nodes/step",
                "prefill ms",
                "ms/step",
                *[f"{c} ms" for c in COLUMNS],
            ],
            [
                [
                    r["scenario"],
                    r["drafters"],
                    r["tokens"],
                    r["steps"],
                    r["nodes_per_step"],
                    r["prefill_ms"],
                    r["ms_per_step"],
                    *[r["phase_ms_per_step"].get(c) for c in COLUMNS],
                ]
                for r in rows
            ],
        ),  # fmt: skip
        table(
            "For scale: a plain one-token forward of the same model",
            ["cache tokens", "min ms", "median ms"],
            [[len(prompt), fwd_min, fwd_median]],
        ),
    ]
    load = os.getloadavg()
    bench_results.write_result(
        "generation_profile",
        "Generation: where a speculative step's time goes",
        tables,
        notes=[
            f"The reader LM of the generation benchmark ({n_params:.1f}M parameters, CPU, "
            "one thread), greedy. Phases are timed by wrapping the functions the decode loop "
            "calls; `rest of loop` is the step's time outside them (Python bookkeeping, "
            "stopping rule, context writes). The prefill is not part of any step.",
            f"Load average during the run: {load[0]:.1f}.",
        ],
        order=45,
        data={"rows": rows, "plain_forward_ms": {"min": fwd_min, "median": fwd_median}},
        out_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
